"""What the command faces share: the store they act on and how they read and print
times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    from opsloop.store import Store


def local_store() -> Store:
    """The store the environment names (``$OPSLOOP_HOME`` or ``$OPSLOOP_DATABASE_URL``)."""
    from opsloop.store import default_store

    return default_store()


def utc_time(ms: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """ms since the epoch as a UTC time (``-`` for None)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(fmt)


def parse_when(value: str | None, now: int) -> int | None:
    """A time given on the command line: ms since the epoch, an ISO date (UTC unless it
    says), or a span before ``now`` (``1h``, ``7d``)."""
    if value is None:
        return None
    from opsloop.aiops.signals.model import parse_duration_ms

    v = value.strip()
    if v.isdigit():
        return int(v)
    try:
        return now - parse_duration_ms(v, "the time")
    except InvalidInput:
        pass
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput(
            f"a time is ms since the epoch, an ISO date or a span before now (1h), got {value!r}"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return round(d.timestamp() * 1000)
