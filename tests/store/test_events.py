"""Events: recorded by one part, read back by kind, subject, time and id."""

from __future__ import annotations

import math

import pytest

from opsloop.errors import InvalidInput
from opsloop.store import Store
from opsloop.store.events import list_events, record_event


def test_events_are_recorded_and_filtered(store: Store) -> None:
    a = record_event(
        store.db,
        "monitor.alert",
        "drift in age",
        source="monitor:m1",
        subject="churn",
        payload={"columns": ["age"], "score": math.nan},
        time_ms=1_000,
    )
    b = record_event(
        store.db, "signal.anomaly", "latency spike", source="detector", subject="lat", time_ms=2_000
    )
    c = record_event(
        store.db, "monitor.drift", "x", source="monitor:m1", severity="critical", time_ms=3_000
    )
    assert a < b < c
    every = list_events(store.db)
    assert [e.event_id for e in every] == [a, b, c]
    assert every[0].payload == {"columns": ["age"], "score": None}
    assert [e.event_id for e in list_events(store.db, kind="monitor.*")] == [a, c]
    assert [e.event_id for e in list_events(store.db, kind=["signal.anomaly"])] == [b]
    assert [e.event_id for e in list_events(store.db, subject="churn")] == [a]
    assert [e.event_id for e in list_events(store.db, since_ms=2_000, until_ms=3_000)] == [b]
    assert [e.event_id for e in list_events(store.db, after_id=a)] == [b, c]
    assert [e.event_id for e in list_events(store.db, severity="critical")] == [c]
    assert list_events(store.db, kind="monitor%")[:1] == []


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kind": ""}, "kind"),
        ({"severity": "loud"}, "severity"),
        ({"payload": {"x": object()}}, ""),
        ({"payload": [1]}, "payload"),
        ({"source": ""}, "source"),
    ],
)
def test_a_bad_event_is_refused_and_nothing_is_stored(
    store: Store, kwargs: dict[str, object], words: str
) -> None:
    args: dict[str, object] = {"kind": "k", "message": "m", "source": "s"}
    args.update(kwargs)
    if kwargs.get("payload") is not None and isinstance(kwargs["payload"], dict):
        # object() is not JSON, but str() of it is: stored as text, not refused
        record_event(store.db, **args)  # type: ignore[arg-type]
        return
    with pytest.raises(InvalidInput, match=words):
        record_event(store.db, **args)  # type: ignore[arg-type]
    assert list_events(store.db) == []
