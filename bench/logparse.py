"""Log template mining speed: opsloop's miner against Drain3, on the same lines, same run.

The lines: every raw line of the Loghub-2k systems in ``--data`` (headers and all),
repeated until there are ``--lines`` of them, each copy with every run of digits
replaced by random digits (runs of three or more also change length by up to two), so
timestamps, ids, addresses and sizes vary as they do in a real log (one file repeated
would let a cache see each line before). They are written to one file, which both miners read whole before the clock
starts; each then mines every line in order, one call per line:

* opsloop: ``TemplateMiner().add(line)`` (and ``add_many``, the streaming form the CLI
  uses), in this process;
* Drain3 (``drain3`` on PyPI, ``TemplateMiner().add_log_message(line)``, its default
  configuration), in its own virtual environment, ``.bench-venvs/drain3``, made on
  first use: drain3 pins ``cachetools==4.2.1`` and opsloop's ``dev`` extra (MLflow) needs
  ``cachetools>=5``, so they cannot share one.

It prints lines per second for each and the ratio last; first, the same for one cold
pass over the 16,000 original lines (nearly every line new to the miner, so the
caches do not help: the worst case, not the steady state).

    python bench/logparse.py --data ../shared/data/loghub2k [--lines 1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opsloop.aiops.logs import TemplateMiner

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venvs" / "drain3"
DRAIN3 = "drain3==0.9.11"

DRAIN3_RUNNER = r"""
import sys, time
from drain3 import TemplateMiner
with open(sys.argv[1], encoding="utf-8") as fh:
    lines = fh.read().split("\n")[:-1]
miner = TemplateMiner()
add = miner.add_log_message
t0 = time.perf_counter()
for line in lines:
    add(line)
dt = time.perf_counter() - t0
print(len(lines), dt, len(miner.drain.clusters))
"""


def make_lines(data: Path, n: int, seed: int = 1) -> list[str]:
    base: list[str] = []
    for log in sorted(data.glob("*/*_2k.log")):
        base += log.read_bytes().decode("utf-8", "replace").splitlines()
    if not base:
        sys.exit(f"no */*_2k.log under {data}")
    rng = random.Random(seed)
    digits = re.compile(r"\d+")

    def fresh(m: re.Match[str]) -> str:
        # New digits; a run of three or more also changes its length by up to two (ids,
        # sizes, durations), so a key of digit positions alone would not repeat.
        n = len(m.group())
        if n >= 3:
            n = rng.randint(n - 2, n + 2)
        return "".join(rng.choice("0123456789") for _ in range(n))

    out: list[str] = []
    while len(out) < n:
        out += [digits.sub(fresh, line) for line in base[: n - len(out)]]
    return out


def drain3_python() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"making {VENV} with {DRAIN3} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", DRAIN3], check=True)
    return py


def run_opsloop(lines: list[str]) -> tuple[float, float, int]:
    miner = TemplateMiner()
    add = miner.add
    t0 = time.perf_counter()
    for line in lines:
        add(line)
    one = time.perf_counter() - t0
    miner = TemplateMiner()
    t0 = time.perf_counter()
    for _ in miner.add_many(lines):
        pass
    many = time.perf_counter() - t0
    return one, many, len(miner)


def run_drain3(path: str) -> tuple[float, int]:
    out = subprocess.run(
        [str(drain3_python()), "-c", DRAIN3_RUNNER, path],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stdout.split()
    return float(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of Loghub-2k system folders")
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    lines = make_lines(Path(args.data), args.lines)
    n = len(lines)
    with tempfile.NamedTemporaryFile("w", suffix=".log", encoding="utf-8", delete=False) as fh:
        fh.write("\n".join(lines) + "\n")
        path = fh.name
    first = lines[: min(n, 16000)]
    with tempfile.NamedTemporaryFile("w", suffix=".log", encoding="utf-8", delete=False) as fh:
        fh.write("\n".join(first) + "\n")
        first_path = fh.name
    try:
        # Cold: one pass over the 16,000 Loghub lines, nearly every one new to the miner.
        one, _, ours = run_opsloop(first)
        d3, theirs = run_drain3(first_path)
        print(
            f"first pass, {len(first):,} lines: opsloop {len(first) / one:,.0f} lines/s "
            f"({ours} templates), Drain3 {len(first) / d3:,.0f} lines/s ({theirs} clusters): "
            f"{d3 / one:.1f}x"
        )
        print(f"{n:,} lines ({sum(map(len, lines)) / n:.0f} characters on average)")
        one, many, ours = run_opsloop(lines)
        print(f"opsloop add():      {n / one:>10,.0f} lines/s  ({ours} templates)")
        print(f"opsloop add_many(): {n / many:>10,.0f} lines/s")
        d3, theirs = run_drain3(path)
        print(f"Drain3:             {n / d3:>10,.0f} lines/s  ({theirs} clusters)")
    finally:
        os.unlink(path)
        os.unlink(first_path)
    best = min(one, many)
    print(f"opsloop / Drain3: {d3 / best:.1f}x lines per second")


if __name__ == "__main__":
    main()
