"""Pipeline overhead per step: opsloop's local executor against Prefect 3, in one run.

Both run the same shapes of tiny no-op steps, every step tracked: 200 in a chain (each
step takes the previous one's output) and 200 in parallel (independent steps, then one
that gathers them). Prefect runs with its own local (ephemeral) server in a temporary
``PREFECT_HOME``, as a user's first ``python flow.py`` does, in a virtual environment
that this script creates (``.bench-venvs/prefect``: Prefect 3.8.8 with
``fastapi<0.155``; its pins clash with the project's, so it is not an extra).

Figures: the wall time of each whole pipeline/flow run divided by its number of steps
(the overhead per step, since the steps do nothing), for a cold run (a fresh process
and a fresh store: opsloop starts its worker processes and creates its database there,
Prefect starts its server) and warm runs (the same process again). Prints a table, the
ratios last.

Run: ``python bench/pipeline_overhead.py [--steps 200] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venvs" / "prefect"

OPSLOOP_SCRIPT = textwrap.dedent(
    """
    import json, os, statistics, sys, time
    import opsloop
    from opsloop.pipelines import LocalExecutor, run

    N, REPEATS = int(sys.argv[1]), int(sys.argv[2])

    @opsloop.step
    def noop(x=0):
        return x + 1

    @opsloop.step
    def gather(*xs):
        return len(xs)

    @opsloop.pipeline(name="chain")
    def chain(n: int, salt: int):
        x = noop(salt * 1_000_000)
        for _ in range(n - 1):
            x = noop(x)
        return x

    @opsloop.pipeline(name="fan")
    def fan(n: int, salt: int):
        return gather(*[noop(salt * 100000 + i) for i in range(n)])

    if __name__ == "__main__":
        # Not warmed: the first run pays for starting the worker processes, as Prefect's
        # first flow pays for starting its server.
        ex = LocalExecutor(max_workers=2)
        out = {}
        for name, p in (("chain", chain), ("parallel", fan)):
            times = []
            for r in range(REPEATS):
                t = time.perf_counter()
                # A new salt each time: every step runs (no cache hits), every step tracked.
                res = run(p, {"n": N, "salt": r + 1}, executor=ex)
                times.append(time.perf_counter() - t)
                assert res.ok and len(res.steps) >= N
                assert not any(s.cache_hit for s in res.steps.values())
            out[name] = times
        ex.close()
        print(json.dumps(out))
    """
)

PREFECT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from prefect import flow, task

    N, REPEATS = int(sys.argv[1]), int(sys.argv[2])

    @task
    def noop(x=0):
        return x + 1

    @task
    def gather(xs):
        return len(xs)

    @flow(name="chain")
    def chain(n: int, salt: int):
        x = noop(salt * 1_000_000)
        for _ in range(n - 1):
            x = noop(x)
        return x

    @flow(name="fan")
    def fan(n: int, salt: int):
        futures = [noop.submit(salt * 100000 + i) for i in range(n)]
        return gather([f.result() for f in futures])

    if __name__ == "__main__":
        out = {}
        for name, f in (("chain", chain), ("parallel", fan)):
            times = []
            for r in range(REPEATS):
                t = time.perf_counter()
                f(N, r + 1)
                times.append(time.perf_counter() - t)
            out[name] = times
        print(json.dumps(out))
    """
)


def ensure_prefect() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        print("creating the Prefect venv (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run(
        [str(py), "-c", "import prefect; print(prefect.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "prefect==3.8.8", "fastapi<0.155"], check=True
        )
    return py


def run_script(
    python: str, code: str, n: int, repeats: int, env: dict[str, str]
) -> tuple[dict[str, list[float]], float]:
    with tempfile.TemporaryDirectory(prefix="opsloop-bench-") as tmp:
        path = Path(tmp) / "bench_flow.py"
        path.write_text(code)
        t = time.perf_counter()
        proc = subprocess.run(
            [python, str(path), str(n), str(repeats)],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={
                **env,
                "OPSLOOP_HOME": str(Path(tmp) / "opsloop"),
                "PREFECT_HOME": str(Path(tmp) / "prefect"),
            },
            timeout=3600,
        )
        total = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), total


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSLOOP_", "PREFECT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DO_NOT_TRACK"] = "1"
    prefect_py = ensure_prefect()
    print("opsloop ...", flush=True)
    o, o_total = run_script(sys.executable, OPSLOOP_SCRIPT, args.steps, args.repeats, env)
    print("prefect ...", flush=True)
    p, p_total = run_script(str(prefect_py), PREFECT_SCRIPT, args.steps, args.repeats, env)
    n = args.steps
    rows = []
    for shape in ("chain", "parallel"):
        for label, pick in (
            ("first run", lambda xs: xs[0]),
            ("warm (median)", lambda xs: statistics.median(xs[1:] or xs)),
        ):
            ov = pick(o[shape]) / n * 1000
            pv = pick(p[shape]) / n * 1000
            rows.append((f"{n} {shape}, {label} (ms/step)", pv, ov))
    print()
    print(f"{'workload':<40} {'prefect':>10} {'opsloop':>10} {'ratio':>8}")
    for label, pv, ov in rows:
        print(f"{label:<40} {pv:>10.2f} {ov:>10.2f} {pv / ov:>7.1f}x")
    print(
        f"{'whole process, all runs (s)':<40} {p_total:>10.1f} {o_total:>10.1f} {p_total / o_total:>7.1f}x"
    )
    worst = max(ov for _, _, ov in rows)
    least_ratio = min(pv / ov for _, pv, ov in rows)
    print(
        f"goal: <= 3 ms per step and >= 20x less than Prefect: opsloop worst {worst:.2f} ms/step "
        f"({'met' if worst <= 3 else 'NOT met'}), least ratio {least_ratio:.1f}x "
        f"({'met' if least_ratio >= 20 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
