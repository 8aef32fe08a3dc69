"""``/api/v1/events``: what monitors, detectors and forecasts raised, newest last.

Read-only here: each part records its own events (``opsloop.store.events``); readers
follow new ones with ``after_id``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import Out, Page
from opsloop.store.events import Event as EventRecord
from opsloop.store.events import list_events

router = APIRouter(prefix="/events", tags=["events"])


class Event(Out):
    event_id: int
    time: int = Field(description="When it was raised, ms since the epoch.")
    kind: str = Field(examples=["monitor.alert", "signal.anomaly", "log.anomaly"])
    source: str = Field(description="What raised it (a monitor, a detector).")
    subject: str | None = Field(description="What it is about (a deployment, a signal).")
    severity: str = Field(description="info, warning or critical.")
    message: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, e: EventRecord) -> Event:
        return cls(**e.to_dict())


@router.get("")
def get_events(
    svc: Svc,
    kind: list[str] | None = Query(None, description="One or more kinds; 'monitor.*' a prefix."),
    source: str | None = None,
    subject: str | None = None,
    severity: str | None = None,
    since: int | None = Query(None, description="From this time (ms since the epoch)."),
    until: int | None = Query(None, description="Before this time (ms since the epoch)."),
    after_id: int | None = Query(None, description="Only events with a larger id."),
    limit: int = Query(1000, ge=1, le=100_000),
) -> Page[Event]:
    """Events, oldest first, filtered by kind, source, subject, severity, time and id."""
    found = list_events(
        svc.store.db,
        kind=kind,
        source=source,
        subject=subject,
        severity=severity,
        since_ms=since,
        until_ms=until,
        after_id=after_id,
        limit=limit,
    )
    return Page[Event](items=[Event.of(e) for e in found])
