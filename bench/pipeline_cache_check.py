"""How long a pipeline takes to decide that a step whose input is a large unchanged
file can be skipped. Goal (DataOps issue): ≤ 1 s for a 1 GB file.

The first run hashes the file by content (and runs the step); later runs find the
stored hash by the file's size, mtime and inode and serve the step from the cache.

Run: ``python bench/pipeline_cache_check.py [--gb 1]``. Prints each run's time, the
goal check last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from opsloop.pipelines import pipeline, run, step


@step
def size_of(path: Path) -> int:
    return path.stat().st_size


@pipeline
def big_input(path: Path) -> int:
    return size_of(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opsloop-bench-"))
    os.environ["OPSLOOP_HOME"] = str(work / "home")
    big = work / "big.bin"
    n = int(args.gb * (1 << 30))
    block = os.urandom(1 << 20)
    t = time.perf_counter()
    with open(big, "wb") as fh:
        for _ in range(n // len(block)):
            fh.write(block)
    print(f"wrote {n / (1 << 30):.2f} GiB in {time.perf_counter() - t:.2f} s")
    try:
        timings = []
        for i in range(3):
            t = time.perf_counter()
            result = run(big_input, {"path": big}, executor="inline")
            dt = time.perf_counter() - t
            hit = next(iter(result.steps.values())).cache_hit
            timings.append(dt)
            print(f"run {i + 1}: {dt:.3f} s ({'cache hit' if hit else 'hashed and ran'})")
    finally:
        big.unlink()
    best_skip = min(timings[1:])
    print(
        f"goal: decide to skip a {args.gb:g} GB unchanged input in <= 1 s: {best_skip:.3f} s "
        f"({'met' if best_skip <= 1 else 'NOT met'}); first run (hash by content) {timings[0]:.2f} s"
    )


if __name__ == "__main__":
    main()
