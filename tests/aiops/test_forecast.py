"""Outage prediction: the forecast on synthetic series, and limits raising events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from opsloop.aiops.forecast import HOUR_MS, fit_trend, forecast_breach
from opsloop.aiops.signals.limits import Limits
from opsloop.aiops.signals.storage import Signals
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.store.events import list_events

T0 = 1_700_000_000_000
MIN = 60_000


def rising_disk(seed: int, minutes: int = 9 * 60) -> tuple[np.ndarray, np.ndarray]:
    """Disk use from 50 % rising 5 %/h with noise: it crosses 90 % after 8 h."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(minutes) * MIN
    return t, 50 + 5 * (t - T0) / HOUR_MS + rng.normal(0, 0.5, minutes)


CROSSING = T0 + 8 * HOUR_MS


def window(t: np.ndarray, v: np.ndarray, end: int, hours: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The last ``hours`` (a limit's default window for a 6 h horizon) up to ``end``."""
    keep = (t <= end) & (t > end - hours * HOUR_MS)
    return t[keep], v[keep]


@pytest.mark.parametrize("seed", range(5))
def test_a_rising_disk_is_forecast_before_it_crosses_near_the_true_time(seed: int) -> None:
    t, v = rising_disk(seed)
    first = None
    for end in range(int(t[0]) + HOUR_MS, int(t[-1]), 5 * MIN):
        f = forecast_breach(*window(t, v, end), op="above", threshold=90, horizon_ms=6 * HOUR_MS)
        if f.status == "forecast" and first is None:
            first = (end, f)
        if f.status == "forecast":
            assert f.predicted_time is not None
            # Within 10 % of how far ahead it is (20 minutes when it is close).
            tolerance = max(20 * MIN, 0.1 * (CROSSING - end))
            assert abs(f.predicted_time - CROSSING) < tolerance, (end, f)
            assert f.earliest_time is not None and f.latest_time is not None
            assert f.earliest_time <= f.predicted_time <= f.latest_time
            assert f.probability is not None and f.probability >= 0.9
    assert first is not None
    end, f = first
    # Warned hours ahead (the horizon is 6 h), not when it is about to happen.
    assert CROSSING - end > 4 * HOUR_MS, (CROSSING - end) / HOUR_MS
    assert f.slope_per_hour == pytest.approx(5, rel=0.2)


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_noisy_series_never_warns(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    t = T0 + np.arange(12 * 60) * MIN
    v = 70 + rng.normal(0, 5, len(t))
    v[rng.integers(0, len(t), 10)] += 15  # spikes: up to 85 or so, below the limit
    for end in range(int(t[0]) + HOUR_MS, int(t[-1]), 5 * MIN):
        f = forecast_breach(*window(t, v, end), op="above", threshold=100, horizon_ms=6 * HOUR_MS)
        assert f.status == "ok", f


def test_the_breach_itself_and_the_falling_side() -> None:
    t, v = rising_disk(0)
    f = forecast_breach(t[-60:], v[-60:], op="above", threshold=90, horizon_ms=HOUR_MS)
    assert f.status == "breached" and f.current is not None and f.current >= 90
    # Free memory falling towards a floor: the same with op="below".
    fall = 100 - (v - 50)
    f = forecast_breach(
        *window(t, fall, int(t[0]) + 3 * HOUR_MS), op="below", threshold=60, horizon_ms=6 * HOUR_MS
    )
    assert f.status == "forecast" and f.predicted_time is not None
    assert abs(f.predicted_time - CROSSING) < 30 * MIN


def test_imperfect_windows_have_a_defined_answer() -> None:
    ts = T0 + np.arange(3) * MIN
    three = forecast_breach(
        ts, np.array([1.0, 2.0, 3.0]), op="above", threshold=9, horizon_ms=HOUR_MS
    )
    assert three.status == "insufficient" and three.current == 3.0
    empty = forecast_breach(
        np.array([], np.int64), np.array([]), op="above", threshold=9, horizon_ms=1
    )
    assert empty.status == "insufficient" and empty.current is None
    nan = forecast_breach(ts, np.full(3, np.nan), op="above", threshold=9, horizon_ms=HOUR_MS)
    assert nan.status == "insufficient" and nan.points == 0
    t = T0 + np.arange(120) * MIN
    const = forecast_breach(t, np.full(120, 5.0), op="above", threshold=9, horizon_ms=HOUR_MS)
    assert const.status == "ok" and const.slope_per_hour == 0
    same_time = forecast_breach(
        np.full(50, T0), np.arange(50.0), op="above", threshold=90, horizon_ms=HOUR_MS
    )
    assert same_time.status == "insufficient"  # one point once repeats are merged
    # A perfect line (no noise at all) still gives an answer, with a zero-width band.
    line = forecast_breach(
        t, 10 + (t - T0) / MIN, op="above", threshold=200, horizon_ms=2 * HOUR_MS
    )
    assert line.status == "forecast" and line.predicted_time == T0 + 190 * MIN
    # Out of order, repeated and NaN points: the same as the clean series.
    rng = np.random.default_rng(0)
    order = rng.permutation(len(t))
    v = 10 + (t - T0) / MIN
    messy_t = np.concatenate([t[order], t[:5]])
    messy_v = np.concatenate([v[order], np.full(5, np.nan)])
    messy = forecast_breach(messy_t, messy_v, op="above", threshold=200, horizon_ms=2 * HOUR_MS)
    assert messy.predicted_time == line.predicted_time
    gap = np.concatenate([t[:30], t[30:] + 3 * 86_400_000])
    assert forecast_breach(gap, v, op="above", threshold=1e9, horizon_ms=HOUR_MS).status == "ok"
    assert fit_trend(ts[:2], np.array([1.0, 2.0])) is None
    with pytest.raises(ValueError):
        forecast_breach(ts, ts.astype(float), op="sideways", threshold=1, horizon_ms=1)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def test_a_limit_warns_once_then_raises_the_breach_as_a_critical_event(store: Any) -> None:
    clock = Clock()
    sig = Signals(store, clock=clock)
    limits = Limits(store, signals=sig, clock=clock)
    limits.add('disk_used_percent{mount="/"}', above=90, horizon="6h", name="disk")
    t, v = rising_disk(1)
    other = 40 + np.random.default_rng(9).normal(0, 1, len(t))
    states = []
    for i in range(0, len(t), 10):
        clock.t = int(t[min(i + 9, len(t) - 1)])
        sig.push(
            [
                {
                    "name": "disk_used_percent",
                    "labels": {"mount": "/"},
                    "timestamp": int(a),
                    "value": float(b),
                }
                for a, b in zip(t[i : i + 10], v[i : i + 10], strict=True)
            ]
            + [
                {
                    "name": "disk_used_percent",
                    "labels": {"mount": "/data"},
                    "timestamp": int(a),
                    "value": float(b),
                }
                for a, b in zip(t[i : i + 10], other[i : i + 10], strict=True)
            ]
        )
        for e in limits.check():
            states.append((clock.t, e.state, e.event_id))
    events = list_events(store.db, source="limit:disk")
    assert [(e.kind, e.severity) for e in events] == [
        ("signal.breach_forecast", "warning"),
        ("signal.breach", "critical"),
    ]
    warn, breach = events
    assert warn.subject == 'disk_used_percent{mount="/"}'
    p = warn.payload
    assert abs(p["predicted_time"] - CROSSING) < 30 * MIN
    assert CROSSING - p["at"] > 4 * HOUR_MS
    assert p["limit"] == 90 and p["current_value"] < 90 and p["confidence"] >= 0.9
    assert p["earliest_time"] <= p["predicted_time"] <= p["latest_time"]
    assert breach.payload["current_value"] >= 90
    # Only the watched series was evaluated; the state is kept per series.
    [state] = limits.states("disk")
    assert state["state"] == "breached"
    # Checked again: no event repeated; later, with nothing new, nothing evaluated.
    assert [e.event_id for e in limits.check()] == [None]
    assert len(list_events(store.db, source="limit:disk")) == 2
    clock.t += MIN
    assert limits.check() == []
    # Cleaned up: an hour back under the limit, resolved (info).
    base = clock.t
    clock.t += HOUR_MS
    sig.push(
        [
            {
                "name": "disk_used_percent",
                "labels": {"mount": "/"},
                "timestamp": base + i * MIN,
                "value": 20.0,
            }
            for i in range(1, 61)
        ]
    )
    [e] = limits.check()
    assert e.state == "ok" and e.previous == "breached"
    assert list_events(store.db, source="limit:disk")[-1].kind == "signal.breach_resolved"


def test_limit_definitions(store: Any) -> None:
    limits = Limits(store)
    x = limits.add("latency_p99_ms", above=200, horizon="30m", window="15m")
    assert (x.name, x.op, x.horizon_ms, x.window_ms) == (
        "latency_p99_ms",
        "above",
        1_800_000,
        900_000,
    )
    with pytest.raises(Conflict):
        limits.add("latency_p99_ms", above=300)
    assert limits.add("latency_p99_ms", above=300, replace=True).threshold == 300
    for kwargs in (
        {},
        {"above": 1, "below": 2},
        {"above": float("nan")},
        {"above": 1, "horizon": "soon"},
        {"above": 1, "confidence": 2},
        {"above": 1, "min_points": 1},
    ):
        with pytest.raises(InvalidInput):
            limits.add("x", **kwargs)
    with pytest.raises(InvalidInput):
        limits.add("not a selector{", above=1)
    assert [x.name for x in limits.list()] == ["latency_p99_ms"]
    assert limits.forecast("latency_p99_ms") == []
    limits.remove("latency_p99_ms")
    with pytest.raises(NotFound):
        limits.remove("latency_p99_ms")
