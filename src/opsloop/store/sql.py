"""Portable SQL helpers for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upsert(
    conn: Connection, table: sa.Table, values: dict[str, Any], keys: list[str], update: list[str]
) -> None:
    """Insert a row, or on a clash of ``keys`` update the ``update`` columns (none: keep it)."""
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(**values)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values)
    if update:
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=keys, set_={k: stmt.excluded[k] for k in update}
            )
        )
    else:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=keys))
