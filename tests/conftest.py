"""Real services for the tests: SQLite always, PostgreSQL and an S3 server where present.

A test that needs a service skips when it is missing, unless
``OPSLOOP_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_BASE = os.environ.get("OPSLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("OPSLOOP_REQUIRE_SERVICES", "") not in ("", "0", "false")


def missing_service(what: str) -> None:
    """Skip (on a laptop) or fail (in CI) a test whose service is not there."""
    if REQUIRE:
        pytest.fail(f"{what} is required (OPSLOOP_REQUIRE_SERVICES is set) but not available")
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        eng = sa.create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(PG_BASE)
    with eng.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with eng.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        eng.dispose()


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A PostgreSQL database of the test's own (a fresh schema)."""
    if not pg_available:
        missing_service(f"PostgreSQL at {PG_BASE}")
    with pg_schema_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'opsloop.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[object]:
    from opsloop.core.config import Settings
    from opsloop.store import Store

    s = Store(
        Settings(home=tmp_path, database_url=db_url, artifacts_url=str(tmp_path / "artifacts"))
    )
    yield s
    s.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An embedded store of the test's own (``OPSLOOP_HOME``) for the fluent API."""
    from opsloop.store import reset_default_store

    h = tmp_path / "home"
    monkeypatch.setenv("OPSLOOP_HOME", str(h))
    monkeypatch.delenv("OPSLOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPSLOOP_ARTIFACTS", raising=False)
    reset_default_store()
    yield h
    import opsloop

    while opsloop.active_run() is not None:
        opsloop.end_run()
    reset_default_store()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3-compatible server (moto's standalone server) on a loopback port."""
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    try:
        import boto3
        import s3fs  # noqa: F401
    except ImportError:
        missing_service("the s3 extra (s3fs, boto3)")
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            missing_service("moto_server (it exited at start)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        missing_service("moto_server (it did not start listening)")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="opsloop-test")
    yield {"endpoint": endpoint, "bucket": "opsloop-test", **env}
    for k, val in saved.items():
        if val is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = val
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
