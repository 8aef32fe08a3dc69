"""The metadata database: migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from opsloop.store.db import HEAD_REVISION, Database


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
