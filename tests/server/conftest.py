"""A real ``opsloop server`` for the tests: a subprocess on a free loopback port.

The server runs as ``python -m opsloop.server`` with its own ``OPSLOOP_HOME``, exactly
as a user would start it; the tests talk to it over HTTP (the stock ``mlflow`` client,
httpx, raw sockets). One server serves the whole session: each test makes its own
experiments and runs, so they do not see each other's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_BASE, free_port, missing_service, pg_schema_url


@dataclass
class Server:
    url: str
    host: str
    port: int
    home: Path
    log: Path
    artifacts: str  # the artifact store's URL (a folder, or s3://…)
    spool: Path  # where the server spools uploads before publishing them


def start_server(
    home: Path, timeout: float = 60.0, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Server]:
    """``opsloop server`` as a user starts it, on a free loopback port."""
    port = free_port()
    log = home / "server.log"
    env = {**os.environ, "OPSLOOP_HOME": str(home)}
    env.pop("OPSLOOP_DATABASE_URL", None)
    env.pop("OPSLOOP_ARTIFACTS", None)
    env.update(env_extra or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opsloop.cli.main",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
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
    artifacts = env.get("OPSLOOP_ARTIFACTS") or str(home / "artifacts")
    from opsloop.store.artifacts import BlobStore

    spool = Path(BlobStore(artifacts).spool_dir)
    return proc, Server(url, "127.0.0.1", port, home, log, artifacts, spool)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session", params=["sqlite", "postgres+s3"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_available: bool
) -> Iterator[Server]:
    """The embedded configuration (SQLite, local artifacts) and a team's (PostgreSQL,
    artifacts on the S3 server the session starts): every server test runs on both."""
    home = tmp_path_factory.mktemp("opsloop-server")
    if request.param == "sqlite":
        proc, srv = start_server(home)
        try:
            yield srv
        finally:
            stop_server(proc)
        return
    if not pg_available:
        missing_service(f"PostgreSQL at {PG_BASE}")
    s3 = request.getfixturevalue("s3_server")
    with pg_schema_url() as db_url:
        env = {
            "OPSLOOP_DATABASE_URL": db_url,
            "OPSLOOP_ARTIFACTS": f"s3://{s3['bucket']}/server-{uuid.uuid4().hex[:8]}",
            **{k: v for k, v in s3.items() if k.startswith("AWS_")},
        }
        proc, srv = start_server(home, env_extra=env)
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
