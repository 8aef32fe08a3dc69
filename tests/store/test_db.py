"""The metadata database: migrations on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from opsloop.store.db import HEAD_REVISION, Database
from tests.conftest import missing_service, pg_schema_url


def _schema(db: Database) -> dict[str, Any]:
    """Tables, columns (name, type, nullability), primary keys, indexes, foreign keys
    and unique constraints, as the database reports them."""
    out: dict[str, Any] = {}
    with db.read() as conn:
        insp = sa.inspect(conn)
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in insp.get_indexes(table)
                ),
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(table)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in insp.get_unique_constraints(table)
                ),
            }
    return out


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_new_database_gets_the_schema_the_migrations_build(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new database is created at the newest revision directly (fast); it must be the
    very schema that running every migration builds, with the same rows."""
    if dialect == "postgres" and not request.getfixturevalue("pg_available"):
        missing_service("PostgreSQL")

    def check(fast_url: str, migrated_url: str) -> None:
        fast, migrated = Database(fast_url), Database(migrated_url)
        try:
            fast.upgrade()
            migrated._run_alembic_upgrade()  # every migration, as an old store gets them
            assert migrated.current_revision() == fast.current_revision() == HEAD_REVISION
            assert _schema(fast) == _schema(migrated)
            for db in (fast, migrated):
                with db.read() as conn:
                    rows = conn.execute(sa.text("SELECT experiment_id, name FROM experiments"))
                    assert [tuple(r) for r in rows] == [(0, "Default")]
        finally:
            fast.dispose()
            migrated.dispose()

    if dialect == "sqlite":
        check(f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        with pg_schema_url() as a, pg_schema_url() as b:
            check(a, b)


def test_upgrade_creates_schema_and_default_experiment(db_url: str) -> None:
    db = Database(db_url)
    assert db.current_revision() is None
    assert db.upgrade() == HEAD_REVISION
    assert db.current_revision() == HEAD_REVISION
    with db.read() as conn:
        row = conn.execute(sa.text("SELECT experiment_id, name FROM experiments")).one()
    assert (row[0], row[1]) == (0, "Default")
    # A second start finds the schema current and changes nothing.
    db2 = Database(db_url)
    assert db2.upgrade() == HEAD_REVISION
    with db2.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM experiments")).scalar() == 1
    db.dispose()
    db2.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_write_transaction_is_all_or_nothing(store) -> None:  # type: ignore[no-untyped-def]
    from opsloop.store.tables import experiments

    try:
        with store.db.write() as conn:
            conn.execute(
                experiments.insert().values(
                    name="half",
                    artifact_location="x",
                    lifecycle_stage="active",
                    creation_time=1,
                    last_update_time=1,
                )
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with store.db.read() as conn:
        assert (
            conn.execute(sa.select(experiments.c.name).where(experiments.c.name == "half")).first()
            is None
        )


def test_a_value_the_database_refuses_is_bad_input(store) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from opsloop.errors import InvalidInput, NotFound
    from opsloop.registry.service import RegistryService

    # PostgreSQL cannot hold a NUL character; SQLite can (and finds nothing).
    try:
        RegistryService(store).get_registered_model("a\x00b")
    except (InvalidInput, NotFound):
        pass
    else:
        pytest.fail("expected InvalidInput or NotFound")
