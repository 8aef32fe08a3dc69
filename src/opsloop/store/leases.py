"""Leases: one process per store acts for a singleton job (the pipeline scheduler, the
monitors, the signals service, the serving supervisor), however many servers share the
database.

A lease is a row of ``scheduler_leases`` (name, holder, acquired and expiry times). Its
holder renews it; another process takes it over only once it has expired, so a holder
that stops renewing (it died) is replaced within one ``ttl``; an orderly stop releases
it (expiry 0) so another takes over at once.

Example::

    lease = Lease(store.db, "monitors", ttl_ms=60_000)
    if lease.take(now_ms()):          # held (taken or renewed): act
        ...
    lease.release()
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from opsloop.store.db import Database
from opsloop.store.sql import upsert
from opsloop.store.tables import scheduler_leases as L


def new_holder(host: str | None = None) -> str:
    """A name for this process as a lease holder: host, pid and a random part."""
    return f"{(host or socket.gethostname())[:150]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease ``name`` on ``db``, held as ``holder`` for ``ttl_ms`` at a time."""

    def __init__(self, db: Database, name: str, ttl_ms: int, holder: str | None = None) -> None:
        self.db = db
        self.name = name
        self.ttl_ms = ttl_ms
        self.holder = holder or new_holder()

    def _row(self) -> Any:
        return _lease_row(self.db, self.name)

    def may_take(self, now: int) -> bool:
        """A cheap read: False while another holds it unexpired."""
        row = self._row()
        return row is None or row.holder == self.holder or row.expires_time <= now

    def take(self, now: int) -> bool:
        """Take or renew the lease; True if held. Renewed once half of it is used, not
        on every call: no write transaction on every tick."""
        row = self._row()
        if row is not None and row.holder != self.holder and row.expires_time > now:
            return False
        if (
            row is not None
            and row.holder == self.holder
            and row.expires_time - now > self.ttl_ms // 2
        ):
            return True
        with self.db.write() as conn:
            return self.hold(conn, now)

    def hold(self, conn: Connection, now: int) -> bool:
        """Take or renew the lease in the caller's write transaction (its other writes
        then stand only if the lease is held); True if held."""
        upsert(
            conn,
            L,
            {"name": self.name, "holder": "", "acquired_time": 0, "expires_time": 0},
            ["name"],
            [],
        )
        mine = L.c.holder == self.holder
        result = conn.execute(
            L.update()
            .where((L.c.name == self.name) & (mine | (L.c.expires_time <= now)))
            .values(
                holder=self.holder,
                expires_time=now + self.ttl_ms,
                acquired_time=sa.case((mine, L.c.acquired_time), else_=now),
            )
        )
        return bool(result.rowcount == 1)

    def release(self) -> None:
        """Give the lease up if this holder has it: another takes over at once."""
        with self.db.write() as conn:
            conn.execute(
                L.update()
                .where((L.c.name == self.name) & (L.c.holder == self.holder))
                .values(expires_time=0)
            )

    def current_holder(self, now: int) -> str | None:
        """Who holds the lease at ``now`` (None: nobody, or it expired)."""
        return lease_holder(self.db, self.name, now)


def _lease_row(db: Database, name: str) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(L.c.holder, L.c.expires_time).where(L.c.name == name)).first()


def lease_holder(db: Database, name: str, now: int) -> str | None:
    """Who holds the lease ``name`` at ``now`` (None: nobody, or it expired)."""
    row = _lease_row(db, name)
    if row is None or row.expires_time <= now:
        return None
    return str(row.holder)
