"""The metadata database: one engine, read and write transactions, migrations.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead of failing
half-way when a read transaction tries to upgrade. PostgreSQL uses its defaults.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DataError, OperationalError

from opsloop.errors import InvalidInput, Unavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration; start-up compares the database with it before loading Alembic.
HEAD_REVISION = "0008"

_WRITE = "opsloop_write"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN"
        conn.exec_driver_sql(mode)


@contextlib.contextmanager
def _refused_values() -> Iterator[None]:
    """A value the database itself refuses (PostgreSQL: a NUL character, a number out of
    range) is bad input, not a server fault; the transaction has rolled back."""
    try:
        yield
    except DataError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise InvalidInput(f"the database refused a value: {reason}") from exc


class Database:
    """The metadata store's connection to its database."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise InvalidInput(f"not a database URL: {url!r} ({exc})") from exc
        self.url = url
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
        elif self.dialect == "postgresql":
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)
        self._migrated = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        with _refused_values(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def reader(self) -> Iterator[Any]:
        """A raw DB-API connection for many small reads, each statement its own
        transaction (no BEGIN/COMMIT round trips around each): for a loop that reads
        once a turn, such as a pipeline's scheduler.

        Example::

            with db.reader() as raw:
                cur = raw.cursor(); cur.execute("SELECT 1"); cur.fetchall()
        """
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            if self.dialect == "postgresql":
                driver.autocommit = True  # type: ignore[union-attr]
            yield raw
        finally:
            if self.dialect == "postgresql":
                driver.autocommit = False  # type: ignore[union-attr]
            raw.close()  # back to the pool

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: all of it is stored, or none of it."""
        with (
            _refused_values(),
            self.engine.connect().execution_options(**{_WRITE: True}) as conn,
            conn.begin(),
        ):
            yield conn

    # -- migrations -------------------------------------------------------------

    def current_revision(self) -> str | None:
        try:
            with self.read() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError as exc:
            raise Unavailable(
                f"cannot reach the metadata database {make_url(self.url).render_as_string()}: "
                f"{exc.orig}"
            ) from exc

    def upgrade(self) -> str:
        """Apply every pending migration; returns the revision now in force.

        Several processes may start on one new store at once: a file lock (SQLite) or
        an advisory lock (PostgreSQL) makes one migrate while the others wait.
        """
        with self._lock:
            if self._migrated:
                return HEAD_REVISION
            if self.current_revision() == HEAD_REVISION:
                self._migrated = True
                return HEAD_REVISION
            with self._migration_lock():
                revision = self.current_revision()
                if revision is None and self._is_empty():
                    self._create_at_head()
                elif revision != HEAD_REVISION:
                    self._run_alembic_upgrade()
            self._migrated = True
            return HEAD_REVISION

    def _is_empty(self) -> bool:
        with self.read() as conn:
            return not sa.inspect(conn).get_table_names()

    def _create_at_head(self) -> None:
        """A new, empty database: create the schema of the newest revision directly and
        stamp it, in one transaction. The same result as running every migration (a test
        compares them), in a tenth of the time: loading Alembic alone took 0.25 s, on
        every first start of a store. Rows a migration inserts are inserted here too.
        """
        from opsloop.store.tables import experiments, metadata

        version = sa.Table(
            "alembic_version",
            sa.MetaData(),
            sa.Column("version_num", sa.String(32), nullable=False),
            sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
        )
        now = int(time.time() * 1000)
        with self.write() as conn:
            metadata.create_all(conn)
            version.create(conn)
            conn.execute(version.insert().values(version_num=HEAD_REVISION))
            # 0001: MLflow's clients expect experiment "0", named "Default", to exist.
            conn.execute(
                experiments.insert().values(
                    experiment_id=0,
                    name="Default",
                    artifact_location="mlflow-artifacts:/0",
                    lifecycle_stage="active",
                    creation_time=now,
                    last_update_time=now,
                )
            )

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            db_path = make_url(self.url).database
            if not db_path or db_path == ":memory:":
                yield
                return
            lock_path = f"{db_path}.migrate.lock"
            with open(lock_path, "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        elif self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(74217001)"))
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(74217001)"))
                    conn.commit()
        else:
            yield

    def _run_alembic_upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def retry_on_locked(fn: Any, attempts: int = 5) -> Any:
    """Retry ``fn`` when SQLite reports a lock past its busy timeout."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if "locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(0.05 * (2**i))
    return None


def process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
