"""Signals storage: push, query by selector and time, imperfect data, merging, following."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from opsloop.aiops.signals.model import (
    format_duration_ms,
    parse_duration_ms,
    parse_selector,
)
from opsloop.aiops.signals.storage import NewPoints, Signals, _pack_zd, _unpack, on_any_ingest
from opsloop.errors import InvalidInput

T0 = 1_700_000_000_000
DAY = 86_400_000


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def pt(name: str, t: int | None, v: Any, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": labels, "timestamp": t, "value": v}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sig(store: Any, clock: Clock) -> Signals:
    return Signals(store, clock=clock, settle_ms=60_000)


def test_push_and_query_by_name_labels_and_time(sig: Signals) -> None:
    sig.push(
        [pt("disk", T0 + i * 1000, float(i), host="a", mount="/") for i in range(10)]
        + [pt("disk", T0 + i * 1000, 100.0 + i, host="b", mount="/") for i in range(10)]
        + [pt("cpu", T0, 3.0, host="a")]
    )
    [a] = sig.query('disk{host="a"}')
    assert a.series.labels == {"host": "a", "mount": "/"}
    assert a.timestamps.tolist() == [T0 + i * 1000 for i in range(10)]
    assert a.values.tolist() == [float(i) for i in range(10)]
    both = sig.query('disk{mount="/"}', start=T0 + 3000, end=T0 + 5000)
    assert [d.series.labels["host"] for d in both] == ["a", "b"]
    assert [d.values.tolist() for d in both] == [[3.0, 4.0, 5.0], [103.0, 104.0, 105.0]]
    assert [d.series.labels["host"] for d in sig.query('disk{host=~"a|b", host!="a"}')] == ["b"]
    assert sig.query('disk{host="c"}') == []
    assert sig.query("nothing") == []
    df = sig.query_frame("disk", start=T0 + 9000)
    assert list(df.columns) == ["name", "host", "mount", "timestamp", "value"]
    assert df["value"].tolist() == [9.0, 109.0]
    assert [s.last_value for s in sig.series("disk")] == [9.0, 109.0]
    assert sig.names() == [("cpu", 1), ("disk", 2)]


def test_out_of_order_duplicates_nan_and_missing_timestamps(sig: Signals, clock: Clock) -> None:
    sig.push([pt("q", T0 + 3000, 3.0), pt("q", T0 + 1000, 1.0), pt("q", T0 + 2000, "NaN")])
    # A repeated timestamp keeps the value written last: in the same batch, and later.
    sig.push([pt("q", T0 + 1000, 10.0), pt("q", T0 + 1000, 11.0), pt("q", T0 + 500, "-Infinity")])
    clock.t = T0 + 9000
    sig.push([{"name": "q", "value": 9.0}])  # no timestamp: when received
    [d] = sig.query("q")
    assert d.timestamps.tolist() == [T0 + 500, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 9000]
    v = d.values.tolist()
    assert v[0] == -math.inf and v[1] == 11.0 and math.isnan(v[2]) and v[3:] == [3.0, 9.0]
    [s] = sig.series("q")
    assert s.last_time == T0 + 9000 and s.last_value == 9.0
    # An older point arriving late does not move the series' last point back.
    sig.push([pt("q", T0, 0.0)])
    [s] = sig.series("q")
    assert s.last_time == T0 + 9000


def test_gaps_of_days_three_points_and_a_constant_series(sig: Signals) -> None:
    sig.push([pt("g", T0, 1.0), pt("g", T0 + 30 * DAY, 2.0), pt("g", T0 + 60 * DAY, 3.0)])
    sig.push([pt("c", T0 + i, 5.0) for i in range(100)])
    [g] = sig.query("g", start=T0 + DAY, end=T0 + 40 * DAY)
    assert g.values.tolist() == [2.0]
    [c] = sig.query("c")
    assert len(c) == 100 and set(c.values.tolist()) == {5.0}


BAD_POINTS: list[tuple[Any, str]] = [
    ({"name": "9bad", "value": 1}, "points[1].name"),
    ({"name": "x", "value": "high"}, "points[1].value"),
    ({"name": "x", "value": None}, "points[1].value"),
    ({"name": "x", "value": True}, "points[1].value"),
    ({"name": "x"}, "points[1].value"),
    ({"value": 1}, "points[1].name"),
    ({"name": "x", "value": 1, "timestamp": 1.5}, "points[1].timestamp"),
    ({"name": "x", "value": 1, "timestamp": 10**18}, "points[1].timestamp"),
    ({"name": "x", "value": 1, "timestamp": "now"}, "points[1].timestamp"),
    ({"name": "x", "value": 1, "labels": {"__name__": "y"}}, "points[1].labels"),
    ({"name": "x", "value": 1, "labels": {"a": 1}}, "points[1].labels"),
    ({"name": "x", "value": 1, "labels": ["a"]}, "points[1].labels"),
    ({"name": "x", "value": 1, "labels": {"a": "b\x00"}}, "points[1].labels"),
    ({"name": "x", "value": 1, "labels": {1: "a", "b": "c"}}, "points[1].labels"),
    ({"name": "x", "value": 1, "colour": "red"}, "points[1].colour"),
    ("x", "points[1].point"),
]


def test_a_bad_point_names_its_index_and_field_and_nothing_is_stored(sig: Signals) -> None:
    for bad, where in BAD_POINTS:
        with pytest.raises(InvalidInput) as err:
            sig.push([pt("ok", T0, 1.0), bad, pt("ok", T0 + 1, 2.0)])
        assert err.value.message.startswith(where + ":"), err.value.message
        assert sig.query("ok") == [] and sig.storage()["points"] == 0


def test_batches_that_are_not_lists_are_refused(sig: Signals) -> None:
    for bad in ({"name": "x"}, "x", None, 3):
        with pytest.raises(InvalidInput, match="points must be a list"):
            sig.push(bad)
    assert sig.push([]).points == 0


def test_merging_settled_chunks_keeps_every_point_and_the_last_write(
    sig: Signals, clock: Clock
) -> None:
    rng = np.random.default_rng(3)
    expect: dict[int, float] = {}
    for _ in range(40):
        ts = T0 + rng.integers(0, 5000, size=50) * 1000  # repeats and any order
        vals = rng.normal(size=50).round(3)
        sig.push([pt("m", int(t), float(v), k="1") for t, v in zip(ts, vals, strict=True)])
        expect.update(zip(ts.tolist(), vals.tolist(), strict=True))
        clock.t += 1000
    before = sig.storage()
    assert before["chunks"] == 40
    clock.t += 61_000
    assert sig.compact() == 40
    after = sig.storage()
    assert after["chunks"] == 1 and after["points"] == len(expect)
    assert after["bytes"] < before["bytes"] / 2, (before, after)
    # New points after the merge still win over the merged ones for one timestamp.
    t_dup = next(iter(expect))
    sig.push([pt("m", t_dup, 1234.5, k="1")])
    expect[t_dup] = 1234.5
    [d] = sig.query("m")
    assert d.timestamps.tolist() == sorted(expect)
    assert d.values.tolist() == [expect[t] for t in sorted(expect)]
    clock.t += 61_000
    sig.compact()
    [d2] = sig.query("m")
    assert d2.values.tolist() == d.values.tolist()
    assert sig.storage()["chunks"] == 1


def test_retention_drops_whole_chunks_older_than_the_cut(sig: Signals) -> None:
    sig.push([pt("r", T0 + i, float(i)) for i in range(10)])
    sig.push([pt("r", T0 + 100 + i, float(i)) for i in range(10)])
    assert sig.delete_before(T0 + 5) == 0  # the first chunk straddles the cut: kept
    assert sig.delete_before(T0 + 50) == 1
    [d] = sig.query("r")
    assert d.timestamps.tolist() == [T0 + 100 + i for i in range(10)]


def test_packed_chunks_round_trip_nan_inf_and_negative_zero() -> None:
    ts = np.array([5, 7, 7, 1_000_000_000_000, 3], dtype=np.int64)
    vals = np.array([np.nan, np.inf, -0.0, -np.inf, 1e-300])
    t2, v2 = _unpack("zd", *_pack_zd(ts, vals))
    assert t2.tolist() == ts.tolist()
    assert v2.view("<u8").tolist() == vals.view("<u8").tolist()


def test_ingest_hooks_and_following_from_another_reader(sig: Signals, store: Any) -> None:
    seen: list[NewPoints] = []
    remove = sig.on_ingest(seen.extend)
    sig.on_ingest(lambda batch: 1 / 0)  # a failing hook does not fail the ingest
    cursor = Signals(store).cursor()
    sig.push([pt("f", T0 + i, float(i), s="a") for i in range(3)] + [pt("f", T0, 9.0, s="b")])
    assert sorted((p.series.labels["s"], p.values.tolist()) for p in seen) == [
        ("a", [0.0, 1.0, 2.0]),
        ("b", [9.0]),
    ]
    remove()
    everywhere: list[NewPoints] = []
    remove_everywhere = on_any_ingest(everywhere.extend)
    try:
        sig.push([pt("f", T0 + 5, 5.0, s="a")])
    finally:
        remove_everywhere()
    assert len(seen) == 2
    assert [(p.series.labels, p.timestamps.tolist()) for p in everywhere] == [
        ({"s": "a"}, [T0 + 5])
    ]
    reader = Signals(store)
    got, cursor = reader.follow(cursor)
    assert [(p.series.labels["s"], p.values.tolist()) for p in got] == [
        ("a", [0.0, 1.0, 2.0]),
        ("b", [9.0]),
        ("a", [5.0]),
    ]
    assert reader.follow(cursor) == ([], cursor)


def test_selectors_and_durations() -> None:
    sel = parse_selector('http_requests_total{job="api", code=~"5..", path!="/health"}')
    assert sel.name == "http_requests_total"
    assert sel.matches({"job": "api", "code": "503", "path": "/x"})
    assert not sel.matches({"job": "api", "code": "200", "path": "/x"})
    assert not sel.matches({"job": "api", "code": "500", "path": "/health"})
    assert parse_selector('a{b="say \\"hi\\""}').matchers[0].value == 'say "hi"'
    assert parse_selector("up", {"job": "x"}).matches({"job": "x"})
    for bad in ("", "9x", "a{b=c}", 'a{b="c"', 'a{b=~"("}', "a b"):
        with pytest.raises(InvalidInput):
            parse_selector(bad)
    assert parse_duration_ms("1h30m") == 5_400_000
    assert parse_duration_ms("15s") == 15_000
    assert parse_duration_ms("2.5") == 2500
    assert format_duration_ms(5_400_000) == "1h30m"
    for bad in ("", "5x", "-1s", "0s", "1h 2m"):
        with pytest.raises(InvalidInput):
            parse_duration_ms(bad)


def test_concurrent_writers_of_the_same_new_series(store: Any) -> None:
    import threading

    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            own = Signals(store)  # a process of its own would have its own caches
            for j in range(5):
                own.push([pt("race", T0 + k * 100 + j, float(k), shard=str(j % 2))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    found = Signals(store).query("race")
    assert [d.series.labels for d in found] == [{"shard": "0"}, {"shard": "1"}]
    assert sum(len(d) for d in found) == 30
