"""A real ``opsloop server`` for the tests: a subprocess on a free loopback port.

The server runs as ``python -m opsloop.server`` with its own ``OPSLOOP_HOME``, exactly
as a user would start it; the tests talk to it over HTTP (the stock ``mlflow`` client,
httpx, raw sockets). One server serves the whole session: each test makes its own
experiments and runs, so they do not see each other's data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class Server:
    url: str
    host: str
    port: int
    home: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], Server]:
    port = _free_port()
    log = home / "server.log"
    env = {**os.environ, "OPSLOOP_HOME": str(home)}
    env.pop("OPSLOOP_DATABASE_URL", None)
    env.pop("OPSLOOP_ARTIFACTS", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop.server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"opsloop server exited at start:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).text == "OK":
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"opsloop server did not answer /health:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, Server(url, "127.0.0.1", port, home, log)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("opsloop-server")
    proc, srv = start_server(home)
    try:
        yield srv
    finally:
        stop_server(proc)


@pytest.fixture(scope="session", autouse=True)
def _mlflow_env() -> Iterator[None]:
    """Keep the stock client quiet and quick: no telemetry, no minutes of retries."""
    env = {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, val in saved.items():
        if val is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = val


@pytest.fixture
def tracking_uri(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the stock ``mlflow`` client at the test server."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    yield server.url
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A name no other test uses."""
    return uuid.uuid4().hex[:10]
