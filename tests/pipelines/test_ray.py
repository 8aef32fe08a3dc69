"""The Ray executor, on a real Ray cluster of its own (a head node on loopback)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest

from opsloop.core.config import Settings
from opsloop.errors import InvalidInput
from opsloop.pipelines import pipeline, run, step, sweep
from opsloop.pipelines import ray_executor as ray_module
from opsloop.pipelines.executors import resolve
from opsloop.pipelines.ray_executor import RayExecutor
from opsloop.store import Store
from tests.conftest import free_port, missing_service
from tests.pipelines.helpers import artifacts, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Head(NamedTuple):
    address: str  # the GCS address, for a driver on the cluster's machine
    client: str  # the Ray Client address (ray://...)
    temp: Path  # the cluster's temp folder (its logs are under session_latest/logs)

    def client_logs(self) -> str:
        """The Ray Client servers' logs, for a failure message."""
        logs = self.temp / "session_latest" / "logs"
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}"
            for f in sorted(logs.glob("ray_client_server*"))
        )


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """A Ray head node (``ray start --head --block``) on free loopback ports, with its
    Ray Client server (on a port of its own: other clusters may run on this machine)."""
    try:
        import ray
    except ImportError:
        missing_service("ray (pip install 'opsloop[ray]')")
    exe = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    client_port = free_port()
    while client_port == port:
        client_port = free_port()
    # Short: Ray puts unix sockets under it.
    temp = tempfile.mkdtemp(prefix="olray", dir="/tmp")
    log = Path(temp) / "start.log"
    # A throwaway cluster on loopback: no usage stats, no auth token to share.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={temp}",
                f"--ray-client-server-port={client_port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: torn down as one
        )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # SIGTERM would drain for 30 s
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)

    deadline = time.monotonic() + 60
    while b"Ray runtime started" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            missing_service("a Ray head node (`ray start --head` did not come up)")
        time.sleep(0.2)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        yield Head(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", Path(temp))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def cluster(head: Head) -> str:
    return head.address


@pytest.fixture(scope="module")
def ray_ex(cluster: str) -> Iterator[RayExecutor]:
    with RayExecutor(address=cluster) as ex:
        yield ex


def test_ray_not_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setattr(ray_module, "_shared", {})
    with pytest.raises(InvalidInput, match=r"pip install 'opsloop\[ray\]'"):
        resolve("ray", None)
    with pytest.raises(InvalidInput, match=r"pip install 'opsloop\[ray\]'"):
        RayExecutor()


@step
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": range(n), "b": [x * 10 for x in range(n)]})


@step
def column_sum(df: pd.DataFrame, col: str) -> int:
    print(f"pid {os.getpid()} sums {col}")
    return int(df[col].sum())


@step
def scaled(df: pd.DataFrame, k: int) -> pd.DataFrame:
    return df * k


@step
def combine(x: int, y: int, df: pd.DataFrame) -> dict[str, int]:
    return {"a": x, "b": y, "rows": len(df), "total": int(df.to_numpy().sum())}


@pipeline
def fan(n: int):
    df = frame(n)
    combine(column_sum(df, "a"), column_sum(df, "b"), scaled(df, 2))


@sqlite_only
def test_pipeline_runs_on_ray_tracked_and_cached(store: Store, ray_ex: RayExecutor) -> None:
    assert ray_ex.capacity == 2  # the cluster's CPUs
    r = run(fan, {"n": 5}, store=store, executor=ray_ex)
    assert r.ok
    assert r.output("combine") == {"a": 10, "b": 100, "rows": 5, "total": 220}
    pd.testing.assert_frame_equal(
        r.output("scaled"), pd.DataFrame({"a": [0, 2, 4, 6, 8], "b": [0, 20, 40, 60, 80]})
    )
    runs = step_runs(store, r.run_id)
    names = {"frame", "column_sum", "column_sum_2", "scaled", "combine"}
    assert set(runs) == names
    assert all(run_.info.status == "FINISHED" for run_ in runs.values())
    files = artifacts(store, runs["column_sum_2"])
    assert b"sums b" in files["logs/stdout.txt"]
    assert [p for p in files if p.startswith("outputs/")]
    assert not any(s.cache_hit for s in r.steps.values())

    # "ray" names the shared executor, on the Ray this process is connected to
    assert isinstance(resolve("ray", None), RayExecutor)
    again = run(fan, {"n": 5}, store=store, executor="ray")
    assert all(s.cache_hit for s in again.steps.values())
    assert again.output("combine") == r.output("combine")


@step(retries=1, retry_backoff=0.0)
def crashes_once(marker: str) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)  # the Ray worker process dies under the step
    return 7


@sqlite_only
def test_a_crashed_worker_fails_the_attempt_and_the_retry_succeeds(
    store: Store, ray_ex: RayExecutor, tmp_path: Path
) -> None:
    @pipeline
    def p(marker: str):
        crashes_once(marker)

    r = run(p, {"marker": str(tmp_path / "crashed")}, store=store, executor=ray_ex, cache=False)
    s = r.steps["crashes_once"]
    assert (s.status, s.attempts) == ("FINISHED", 2)
    assert r.output("crashes_once") == 7
    run_ = step_runs(store, r.run_id)["crashes_once"]
    files = artifacts(store, run_)
    assert len([p for p in files if p.startswith("outputs/")]) == 1  # stored once
    assert b"WorkerCrashedError" in files["logs/stderr.txt"]


@step(timeout=1.0, retries=0)
def sleeper(pidfile: str, seconds: float) -> int:
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(seconds)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@sqlite_only
def test_a_step_over_its_timeout_is_cancelled_on_ray(
    store: Store, ray_ex: RayExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"

    @pipeline
    def p(seconds: float):
        sleeper(str(pidfile), seconds)

    t0 = time.perf_counter()
    r = run(p, {"seconds": 60}, store=store, executor=ray_ex, raise_on_failure=False)
    assert time.perf_counter() - t0 < 20
    s = r.steps["sleeper"]
    assert s.status == "FAILED"
    assert "took longer than its timeout of 1 s and was killed" in (s.error or "")
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)  # ray.cancel(force=True) killed the worker

    # within its timeout, a timed step runs normally
    ok: Any = run(p, {"seconds": 0.01}, store=store, executor=ray_ex)
    assert ok.output("sleeper") == 1


@step(output_checks=[{"check": "in_range", "column": "a", "max": 3}])
def logged_frame(n: int) -> pd.DataFrame:
    import opsloop

    opsloop.log_param("rows", n)
    opsloop.log_metric("rows", float(n), step=1)
    opsloop.set_tag("node", "ray")
    return pd.DataFrame({"a": range(n)})


@sqlite_only
def test_checks_and_step_logging_on_ray(store: Store, ray_ex: RayExecutor) -> None:
    @pipeline
    def p(n: int):
        column_sum(logged_frame(n), "a")

    ok = run(p, {"n": 4}, store=store, executor=ray_ex, cache=False)
    run_ = step_runs(store, ok.run_id)["logged_frame"]
    assert run_.params["rows"] == "4" and run_.tags["node"] == "ray"
    assert [(m.key, m.value, m.step) for m in run_.metrics] == [("rows", 4.0, 1)]
    assert ok.check_reports("logged_frame")["outputs/output"].passed

    bad = run(p, {"n": 5}, store=store, executor=ray_ex, raise_on_failure=False)
    s = bad.steps["logged_frame"]
    assert s.status == "FAILED" and s.outputs == () and bad.skipped_steps == ["column_sum"]
    assert (s.error or "").startswith("ChecksFailed: step 'logged_frame': output 'output'")
    files = artifacts(store, step_runs(store, bad.run_id)["logged_frame"])
    assert "checks/outputs/output.json" in files
    assert not any(p.startswith("outputs/") for p in files)


# -- sweeps -------------------------------------------------------------------------------


@step
def weighted(df: pd.DataFrame, k: int, col: str) -> dict[str, float]:
    return {"score": float(df[col].sum()) / k, "k": float(k)}


@sqlite_only
def test_a_sweep_fans_out_on_ray(store: Store, ray_ex: RayExecutor) -> None:
    frame_ = frame.fn(4)  # a: 0..3, b: 0..30
    grid = {"k": [1, 2, 3], "col": ["a", "b"]}
    r = sweep(weighted, grid, metric="score", mode="min", executor=ray_ex, store=store, df=frame_)
    assert r.ok and len(r.trials) == 6
    assert r.best is not None and r.best.params == {"k": 3, "col": "a"}
    assert r.best.objective == pytest.approx(2.0)
    runs = step_runs(store, r.run_id)
    assert set(runs) == {t.name for t in r.trials}
    assert runs["weighted[k=2,col=b]"].metrics_dict == {"score": 30.0, "k": 2.0}
    again = sweep(
        weighted, grid, metric="score", mode="min", executor=ray_ex, store=store, df=frame_
    )
    assert all(t.cache_hit for t in again.trials)


# -- Ray Client (ray://) ----------------------------------------------------------------------


@pipeline
def sleepy(pidfile: str, seconds: float):
    sleeper(pidfile, seconds)


@pipeline
def crashy(marker: str):
    crashes_once(marker)


def _client_driver(address: str, home: str) -> None:
    """A pipeline driver that reaches the cluster through Ray Client: run in a process of
    its own by the test below, since this one is connected to the cluster directly."""
    root = Path(home)
    store = Store(
        Settings(
            home=root,
            database_url=f"sqlite:///{root / 'opsloop.db'}",
            artifacts_url=str(root / "artifacts"),
        )
    )
    report: dict[str, Any] = {}
    with RayExecutor(address=address) as ex:
        report["client"] = ex.client
        report["capacity"] = ex.capacity
        first = run(fan, {"n": 5}, store=store, executor=ex)
        report["first"] = first.run_id
        report["combine"] = first.output("combine")
        pidfile = str(root / "pid")
        slow = run(
            sleepy,
            {"pidfile": pidfile, "seconds": 60},
            store=store,
            executor=ex,
            raise_on_failure=False,
        )
        report["slow"] = [slow.steps["sleeper"].status, slow.steps["sleeper"].error]
        report["slow_pid"] = int(Path(pidfile).read_text())
        quick = run(sleepy, {"pidfile": pidfile, "seconds": 0.01}, store=store, executor=ex)
        report["quick"] = quick.output("sleeper")
        crash = run(crashy, {"marker": str(root / "crashed")}, store=store, executor=ex)
        report["crash"] = [crash.run_id, crash.steps["crashes_once"].attempts]
    # RAY_ADDRESS=ray://... for executor="ray"
    os.environ["RAY_ADDRESS"] = address
    shared = resolve("ray", None)
    assert isinstance(shared, RayExecutor)
    report["shared_client"] = shared.client
    again = run(fan, {"n": 5}, store=store, executor="ray")
    report["again"] = again.run_id
    report["again_cached"] = all(s.cache_hit for s in again.steps.values())
    store.close()
    print("REPORT " + json.dumps(report))


def _wait_listening(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@sqlite_only
def test_a_pipeline_runs_through_ray_client(
    head: Head, store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not _wait_listening(int(head.client.rpartition(":")[2]), 60):
        missing_service(f"the Ray Client server at {head.client}")
    home = tmp_path  # the same folder as the `store` fixture's: its database and artifacts
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    code = f"from tests.pipelines.test_ray import _client_driver; _client_driver({head.client!r}, {str(home)!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=request.config.rootpath,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, (
        proc.stdout[-3000:] + proc.stderr[-3000:] + "\n" + head.client_logs()
    )
    report = json.loads(lines[-1][len("REPORT ") :])
    assert report["client"] is True and report["shared_client"] is True
    assert report["capacity"] == 2
    assert report["combine"] == {"a": 10, "b": 100, "rows": 5, "total": 220}
    assert report["again_cached"] is True

    # what the client recorded is in the store like any run's
    runs = step_runs(store, report["first"])
    assert set(runs) == {"frame", "column_sum", "column_sum_2", "scaled", "combine"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert b"sums b" in artifacts(store, runs["column_sum_2"])["logs/stdout.txt"]
    assert set(step_runs(store, report["again"])) == set(runs)

    # a timed step, supervised on the cluster, was killed at its timeout
    status, error = report["slow"]
    assert status == "FAILED"
    assert "took longer than its timeout of 1 s and was killed" in error
    deadline = time.monotonic() + 10
    while _alive(report["slow_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(report["slow_pid"])
    assert report["quick"] == 1

    # a worker that died under its step is a failed attempt there too, retried
    crash_run, attempts = report["crash"]
    assert attempts == 2
    crashed = artifacts(store, step_runs(store, crash_run)["crashes_once"])
    assert b"WorkerCrashedError" in crashed["logs/stderr.txt"]

    # the shell: opsloop run --executor ray --address ray://..., from the cache
    cli = subprocess.run(
        [
            *(sys.executable, "-m", "opsloop", "run", "tests.pipelines.test_ray:fan", "-p", "n=5"),
            *("--executor", "ray", "--address", head.client),
        ],
        cwd=request.config.rootpath,
        env={**env, "OPSLOOP_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert "5 steps, 5 from the cache" in cli.stdout
