"""Events: what one part raises for another to act on.

A monitor's alert, a detector's anomaly, a forecast of a breach: each is one row with
a ``kind`` (dotted, owner first: ``monitor.alert``, ``signal.anomaly``,
``signal.breach_forecast``, ``log.anomaly``), the ``source`` that raised it (a monitor,
a detector), the ``subject`` it is about (a deployment, a signal), a severity, a
message for people and a JSON payload for programs. The automation part reads them
back by kind, subject and time and turns them into incidents and actions::

    record_event(store.db, "monitor.alert", "drift in 3 columns: age, income, city",
                 source="monitor:churn-inputs", subject="churn", payload={"columns": [...]})
    for e in list_events(store.db, kind="monitor.alert", since_ms=now_ms() - 3_600_000):
        ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select

from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput
from opsloop.store.tables import MAX_NAME_LENGTH, events

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from opsloop.store.db import Database

SEVERITIES = ("info", "warning", "critical")
MAX_KIND = 100
MAX_LIST = 100_000


@dataclass(frozen=True)
class Event:
    """One raised event, as stored."""

    event_id: int
    time_ms: int
    kind: str
    source: str
    subject: str | None
    severity: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "time": self.time_ms,
            "kind": self.kind,
            "source": self.source,
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "payload": self.payload,
        }


def _text(value: object, what: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"an event's {what} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise InvalidInput(f"an event's {what} is limited to {limit} characters, got {len(value)}")
    return value


def _json_safe(value: Any) -> Any:
    """JSON for the payload: NaN and ±inf become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _row(
    kind: object,
    message: object,
    source: object,
    subject: object,
    severity: object,
    payload: Mapping[str, Any] | None,
    time_ms: int | None,
) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise InvalidInput(
            f"an event's severity is one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    if payload is not None and not isinstance(payload, Mapping):
        raise InvalidInput(f"an event's payload must be a mapping, got {type(payload).__name__}")
    try:
        text = json.dumps(_json_safe(dict(payload or {})), default=str, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"an event's payload must be JSON-serialisable: {exc}") from None
    if not isinstance(message, str):
        raise InvalidInput(f"an event's message must be text, got {message!r}")
    return {
        "event_time": now_ms() if time_ms is None else int(time_ms),
        "kind": _text(kind, "kind", MAX_KIND),
        "source": _text(source, "source", MAX_NAME_LENGTH),
        "subject": _text(subject, "subject", MAX_NAME_LENGTH, optional=True),
        "severity": severity,
        "message": message,
        "payload": text,
    }


def record_event(
    db: Database,
    kind: str,
    message: str,
    *,
    source: str,
    subject: str | None = None,
    severity: str = "warning",
    payload: Mapping[str, Any] | None = None,
    time_ms: int | None = None,
) -> int:
    """Store one event (in its own transaction); its id."""
    row = _row(kind, message, source, subject, severity, payload, time_ms)
    with db.write() as conn:
        return record_event_in(conn, row)


def record_event_in(conn: Connection, row: Mapping[str, Any]) -> int:
    """Store a row made by :func:`event_row` inside the caller's transaction (so an
    event and what it is about are written together, or neither)."""
    result = conn.execute(insert(events).values(**row))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def event_row(
    kind: str,
    message: str,
    *,
    source: str,
    subject: str | None = None,
    severity: str = "warning",
    payload: Mapping[str, Any] | None = None,
    time_ms: int | None = None,
) -> dict[str, Any]:
    """A checked event row, for :func:`record_event_in`."""
    return _row(kind, message, source, subject, severity, payload, time_ms)


def list_events(
    db: Database,
    *,
    kind: str | Sequence[str] | None = None,
    source: str | None = None,
    subject: str | None = None,
    severity: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    after_id: int | None = None,
    limit: int = 1000,
) -> list[Event]:
    """Events, oldest first, filtered by kind (one or several; a kind ending in ``.*``
    matches its prefix), source, subject, severity, time (``since_ms <= t < until_ms``)
    and id (``after_id``: for a reader that follows new events)."""
    if not isinstance(limit, int) or not 0 < limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}, got {limit!r}")
    q = select(events)
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        conds = []
        for k in kinds:
            if k.endswith(".*"):
                conds.append(events.c.kind.startswith(k[:-1], autoescape=True))
            else:
                conds.append(events.c.kind == k)
        q = q.where(or_(*conds))
    if source is not None:
        q = q.where(events.c.source == source)
    if subject is not None:
        q = q.where(events.c.subject == subject)
    if severity is not None:
        if severity not in SEVERITIES:
            raise InvalidInput(f"severity is one of {', '.join(SEVERITIES)}, got {severity!r}")
        q = q.where(events.c.severity == severity)
    if since_ms is not None:
        q = q.where(events.c.event_time >= int(since_ms))
    if until_ms is not None:
        q = q.where(events.c.event_time < int(until_ms))
    if after_id is not None:
        q = q.where(events.c.event_id > int(after_id))
    q = q.order_by(events.c.event_time, events.c.event_id).limit(limit)
    with db.read() as conn:
        rows = conn.execute(q).all()
    return [
        Event(
            event_id=r.event_id,
            time_ms=r.event_time,
            kind=r.kind,
            source=r.source,
            subject=r.subject,
            severity=r.severity,
            message=r.message,
            payload=json.loads(r.payload) if r.payload else {},
        )
        for r in rows
    ]
