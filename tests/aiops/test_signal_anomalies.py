"""Streaming detection on stored signals: new points from any ingest reach their
series' detector, anomalies become ``signal.anomaly`` events, state survives restarts."""

from __future__ import annotations

import numpy as np
import pytest

from opsloop.aiops.signals import Signals
from opsloop.aiops.signals.anomalies import SignalDetectors
from opsloop.errors import InvalidInput
from opsloop.store import Store
from opsloop.store.events import list_events

T0 = 1_790_000_000_000


def _push(store: Store, name: str, start: int, values: np.ndarray, **labels: str) -> None:
    points = [
        {"name": name, "labels": labels, "timestamp": T0 + (start + i) * 60_000, "value": float(v)}
        for i, v in enumerate(values)
    ]
    Signals(store).push(points)


def test_a_spike_raises_one_event_and_state_survives_a_restart(store: Store) -> None:
    rng = np.random.default_rng(7)
    calm = 100 + rng.normal(0, 2, 600)
    other = 5 + rng.normal(0, 0.1, 600)
    _push(store, "latency_ms", 0, calm[:300], service="api")
    _push(store, "queue_depth", 0, other[:300], service="api")
    first = SignalDetectors(store)
    assert first.process() == []  # learning: nothing anomalous yet
    assert first.cursor() > 0
    # a restart: a new object goes on from the stored cursor and states
    spiky = calm[300:].copy()
    spiky[150:160] += 60  # a latency fault: ten minutes of +60 ms
    _push(store, "latency_ms", 300, spiky, service="api")
    _push(store, "queue_depth", 300, other[300:], service="api")
    found = SignalDetectors(store).process()
    assert [a.series.name for a in found] == ["latency_ms"]
    hit = found[0]
    assert hit.time_ms == T0 + 450 * 60_000  # the first faulty point, not a later one
    assert hit.score >= 0.5 and hit.event_id is not None
    events = list_events(store.db, kind="signal.anomaly")
    assert [e.event_id for e in events] == [hit.event_id]
    e = events[0]
    assert e.subject == 'latency_ms{service="api"}'
    assert e.payload["time_ms"] == hit.time_ms and e.payload["labels"] == {"service": "api"}
    # nothing new: nothing fed twice
    assert SignalDetectors(store).process() == []
    status = {s["name"]: s for s in SignalDetectors(store).scores()}
    assert status["latency_ms"]["points"] == 600
    assert status["latency_ms"]["last_alert_time"] == hit.time_ms


def test_awkward_points_never_stop_the_pass(store: Store) -> None:
    values = np.array([1.0, np.nan, np.inf, 1.0, 1.0] * 20)
    _push(store, "odd", 0, values)
    _push(store, "three", 0, np.array([1.0, 2.0, 3.0]))
    _push(store, "odd", 0, values[:5])  # the same timestamps again
    SignalDetectors(store).process()
    assert {s["name"] for s in SignalDetectors(store).scores()} == {"odd", "three"}


@pytest.mark.parametrize("bad", [0, 1.5, float("nan"), "high", True])
def test_a_bad_threshold_is_refused(store: Store, bad: object) -> None:
    with pytest.raises(InvalidInput, match="threshold"):
        SignalDetectors(store, threshold=bad)  # type: ignore[arg-type]
