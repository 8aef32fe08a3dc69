"""``opsloop server`` runs the inference servers of the deployments it manages (those
with a ``port`` setting): a real server, real children, real requests to their ports.
Created → serves; killed with SIGKILL → restarted and serves; deleted → stopped; the
server stopped → its children gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.server.conftest import start_server, stop_server

V1 = "/api/v1"


def _wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _serves(url: str) -> bool:
    try:
        r = httpx.post(
            f"{url}/invocations",
            json={"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}},
            timeout=5.0,
        )
    except httpx.TransportError:
        return False
    assert r.status_code == 200, r.text
    return True


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with ``tiny`` v1 (a LogisticRegression on two columns) at @prod."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import opsloop
    from opsloop.store import reset_default_store

    home = tmp_path_factory.mktemp("supervisor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSLOOP_HOME", str(home))
        mp.delenv("OPSLOOP_DATABASE_URL", raising=False)
        mp.delenv("OPSLOOP_ARTIFACTS", raising=False)
        reset_default_store()
        X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
        clf = LogisticRegression().fit(X, [0, 0, 1, 1])
        with opsloop.start_run(experiment="supervisor"):
            opsloop.log_model(clf, "tiny", input_example=X.head(2), alias="prod")
        reset_default_store()
    yield home


def test_server_runs_restarts_and_stops_deployment_servers(home: Path) -> None:
    proc, srv = start_server(home, env_extra={"OPSLOOP_SCHEDULER": "0"})
    pids: list[int] = []
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as http:
            port = free_port()

            def state(name: str) -> dict[str, Any]:
                r = http.get(f"{V1}/deployments/{name}/server")
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body

            # Not managed: no port, no server.
            r = http.post(f"{V1}/deployments", json={"name": "plain", "model": "models:/tiny@prod"})
            assert r.status_code == 201, r.text
            assert state("plain") == {**state("plain"), "managed": False, "status": "stopped"}

            # Two deployments cannot share a port.
            body = {"name": "tiny-api", "model": "models:/tiny@prod", "settings": {"port": port}}
            assert http.post(f"{V1}/deployments", json=body).status_code == 201
            r = http.patch(f"{V1}/deployments/plain", json={"settings": {"port": port}})
            assert r.status_code == 409 and "tiny-api" in r.json()["message"], r.text
            r = http.patch(f"{V1}/deployments/plain", json={"settings": {"port": 70000}})
            assert r.status_code == 400 and "port" in r.json()["message"], r.text

            # Created -> serves.
            first = _wait("running", lambda: (s := state("tiny-api"))["status"] == "running" and s)
            assert first["port"] == port and first["restarts"] == 0 and first["managed"]
            url = f"http://127.0.0.1:{port}"
            assert _serves(url)
            pids.append(first["pid"])

            # Killed -> restarted, serves again.
            os.kill(first["pid"], signal.SIGKILL)
            second = _wait(
                "a restart",
                lambda: (
                    (s := state("tiny-api"))["status"] == "running" and s["restarts"] == 1 and s
                ),
            )
            assert second["pid"] != first["pid"] and second["last_exit_code"] == -9
            exits = http.get(
                f"{V1}/events", params={"kind": "deployment.server_exited", "subject": "tiny-api"}
            ).json()["items"]
            assert len(exits) == 1 and exits[0]["payload"]["exit_code"] == -9, exits
            pids.append(second["pid"])
            assert _serves(url)

            # Another one, managed later: started too.
            port2 = free_port()
            r = http.patch(f"{V1}/deployments/plain", json={"settings": {"port": port2}})
            assert r.status_code == 200, r.text
            third = _wait(
                "plain running", lambda: (s := state("plain"))["status"] == "running" and s
            )
            pids.append(third["pid"])
            assert _serves(f"http://127.0.0.1:{port2}")

            # One whose server cannot start (its version's files do not exist): restarted
            # with a growing backoff, the exit code and the log in its state.
            r = http.post(f"{V1}/models/tiny/versions", json={"source": "mlflow-artifacts:/0/gone"})
            assert r.status_code == 201, r.text
            body = {
                "name": "broken",
                "model": "tiny",
                "version": int(r.json()["version"]),
                "settings": {"port": free_port()},
            }
            assert http.post(f"{V1}/deployments", json=body).status_code == 201
            failing = _wait(
                "a second failed start",
                lambda: (s := state("broken"))["status"] == "backoff" and s["restarts"] >= 1 and s,
            )
            assert failing["last_exit_code"] not in (0, None) and failing["pid"] is None
            assert failing["next_start_time"] - failing["last_exit_time"] >= 1000  # 0.5 s, 1 s
            assert "broken" in failing["log"] and Path(failing["log"]).read_text()
            assert http.delete(f"{V1}/deployments/broken").status_code == 204

            # Deleted -> stopped; the deletion recorded with who and why.
            r = http.delete(
                f"{V1}/deployments/tiny-api",
                params={"reason": "replaced"},
                headers={"X-Opsloop-User": "alice"},
            )
            assert r.status_code == 204, r.text
            _wait("the deleted one's server gone", lambda: not _alive(second["pid"]))
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{url}/v2/health/live", timeout=2.0)
            assert http.get(f"{V1}/deployments/tiny-api/server").status_code == 404
            events = http.get(f"{V1}/events", params={"kind": "deployment.deleted"}).json()
            ours = [e for e in events["items"] if e["subject"] == "tiny-api"]
            assert ours and ours[0]["payload"]["who"] == "alice", events
            assert ours[0]["payload"]["reason"] == "replaced"
            assert _alive(third["pid"])
    finally:
        stop_server(proc)
    # The server stopped -> every child gone (SIGTERM: they drained and exited).
    _wait("every child gone", lambda: not any(_alive(pid) for pid in pids), timeout=40)


def test_a_killed_server_takes_its_children_along(home: Path) -> None:
    """``opsloop server`` killed with SIGKILL (no shutdown runs): its children get
    SIGTERM from the kernel (PR_SET_PDEATHSIG), so no orphan keeps the port."""
    proc, srv = start_server(home, env_extra={"OPSLOOP_SCHEDULER": "0"})
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as http:
            port = free_port()
            body = {"name": "orphan", "model": "models:/tiny@prod", "settings": {"port": port}}
            r = http.post(f"{V1}/deployments", json=body)
            assert r.status_code == 201, r.text

            def running() -> dict[str, Any] | None:
                s: dict[str, Any] = http.get(f"{V1}/deployments/orphan/server").json()
                return s if s["status"] == "running" else None

            child = _wait("running", running)["pid"]
            assert _serves(f"http://127.0.0.1:{port}")
    finally:
        proc.kill()
        proc.wait(10)
    _wait("the orphan gone", lambda: not _alive(child), timeout=40)
