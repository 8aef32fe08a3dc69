"""The cost of ``log_metric`` inside a training loop: opsloop (embedded store, batched in
the background) against ``mlflow.log_metric`` (local SQLite store; synchronous, and
with ``synchronous=False``), in one run.

Run: ``python bench/log_metric_overhead.py [--calls N]``. Prints µs per call, the ratio last.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap


def _measure(code: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--mlflow-calls", type=int, default=2_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="opsloop-bench-")
    env = {**os.environ, "OPSLOOP_HOME": f"{tmp}/opsloop"}
    opsloop_code = textwrap.dedent(f"""
        import time, opsloop
        with opsloop.start_run(experiment="bench"):
            for i in range(1000):
                opsloop.log_metric("warm", 0.1, step=i)
            t = time.perf_counter()
            for i in range({args.calls}):
                opsloop.log_metric("loss", 0.5, step=i)
            dt = time.perf_counter() - t
        print(dt / {args.calls} * 1e6)
    """)
    mlflow_code = textwrap.dedent("""
        import time, mlflow
        mlflow.set_tracking_uri("sqlite:///{db}")
        with mlflow.start_run():
            t = time.perf_counter()
            for i in range({n}):
                mlflow.log_metric("loss", 0.5, step=i, synchronous={sync})
            dt = time.perf_counter() - t
        print(dt / {n} * 1e6)
    """)
    o = _measure(opsloop_code, env)
    m_sync = _measure(mlflow_code.format(db=f"{tmp}/m1.db", n=args.mlflow_calls, sync=True), env)
    m_async = _measure(
        mlflow_code.format(db=f"{tmp}/m2.db", n=args.mlflow_calls * 10, sync=False), env
    )
    print(f"{'client':<38} {'µs per log_metric':>18}")
    print(f"{'opsloop (batched in background)':<38} {o:>18.2f}")
    print(f"{'mlflow, synchronous':<38} {m_sync:>18.2f}")
    print(f"{'mlflow, synchronous=False':<38} {m_async:>18.2f}")
    print(
        f"ratio: opsloop is {m_sync / o:.0f}x cheaper than mlflow sync, {m_async / o:.1f}x than mlflow async; "
        f"goal <= 5 µs: {'met' if o <= 5 else 'NOT met'} ({o:.2f} µs)"
    )


if __name__ == "__main__":
    main()
