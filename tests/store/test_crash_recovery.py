"""A server killed with SIGKILL in the middle of log-batch calls restarts on the same
store without corruption: every acknowledged batch is whole, none is half-stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def _start(home: Path, db_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "OPSLOOP_HOME": str(home)}
    env.pop("OPSLOOP_ARTIFACTS", None)
    if db_url:
        env["OPSLOOP_DATABASE_URL"] = db_url
    else:
        env.pop("OPSLOOP_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsloop.cli.main", "server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited at start"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_during_log_batch(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    home = tmp_path / "home"
    proc, url = _start(home, db_url)
    api = f"{url}/api/2.0/mlflow"
    run_id = httpx.post(f"{api}/runs/create", json={"experiment_id": "0"}).json()["run"]["info"][
        "run_id"
    ]
    acked: list[int] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            b = worker
            while not stop.is_set():
                metrics = [
                    {"key": f"b{b}", "value": float(i), "timestamp": 1000 + i, "step": i}
                    for i in range(1000)
                ]
                try:
                    r = client.post(
                        f"{api}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(b)
                b += 4

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 20

    if backend == "sqlite":
        con = sqlite3.connect(home / "opsloop.db")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()

    proc, url = _start(home, db_url)
    try:
        api = f"{url}/api/2.0/mlflow"
        run = httpx.get(f"{api}/runs/get", params={"run_id": run_id}).json()["run"]
        keys = {m["key"] for m in run["data"].get("metrics", [])}
        for b in acked:
            assert f"b{b}" in keys
        # Every series is whole: a batch is stored entirely or not at all.
        for key in keys:
            hist = httpx.get(
                f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": key}
            ).json()
            assert len(hist["metrics"]) == 1000, key
        # And the store takes writes again.
        r = httpx.post(
            f"{api}/runs/log-metric",
            json={"run_id": run_id, "key": "after", "value": 1, "timestamp": 1},
        )
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
