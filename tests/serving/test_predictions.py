"""The prediction log on SQLite and PostgreSQL: buffered writes flushed by time and by
size, sampling, what a crash loses, time windows that read only their segments, labels
joined late, close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from opsloop.errors import IntegrityError, InvalidInput, NotFound
from opsloop.serving.predictions import (
    ColumnBlock,
    PredictionLog,
    PredictionWriter,
    keep,
    to_seconds,
)
from opsloop.store import Store
from opsloop.store.tables import prediction_label_segments, prediction_segments


def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.02)


def _count(store: Store, table: sa.Table) -> int:
    with store.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


T0 = float(int(time.time()) - 3600)  # an hour ago: labels arrive after their predictions


def test_logged_predictions_read_back(store: Store) -> None:
    plog = PredictionLog(store)
    with PredictionWriter(store, start=False) as w:
        for i in range(5):
            assert w.log("churn", 1, f"r{i}", {"age": 40 + i, "plan": "pro"}, 0.5 + i / 10,
                         1.5, T0 + i)  # fmt: skip
        # several rows: a DataFrame in, an array out
        w.log("churn", 2, "batch", pd.DataFrame({"age": [1, 2], "plan": ["a", "b"]}),
              np.array([0.1, 0.2]), 2.0, datetime.fromtimestamp(T0 + 10, UTC))  # fmt: skip
        # a shadow version's answer, a dict of outputs with a list among them
        w.log("churn", 3, "r1", {"age": 41, "plan": "pro"}, {"prediction": 0.9, "proba": [0.1, 0.9]},
              3.0, T0 + 1, shadow=True)  # fmt: skip
        assert w.buffered == 7
        assert w.flush() == 8
        assert w.buffered == 0
        assert (w.stats.segments, w.stats.written) == (3, 8)
    df = plog.read("churn")
    assert list(df.columns) == [
        "request_id", "timestamp", "version", "latency_ms", "row", "age", "plan", "prediction",
    ]  # fmt: skip
    assert df["request_id"].tolist() == ["r0", "r1", "r2", "r3", "r4", "batch", "batch"]
    assert df["version"].tolist() == [1, 1, 1, 1, 1, 2, 2]
    assert df["row"].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert df["age"].tolist() == [40, 41, 42, 43, 44, 1, 2]
    assert df["prediction"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 0.1, 0.2])
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert df["timestamp"].iloc[0].timestamp() == pytest.approx(T0, abs=1e-5)
    # one version; the shadow's answers alone; both
    assert plog.read("churn", version=2)["request_id"].tolist() == ["batch", "batch"]
    shadow = plog.read("churn", shadow=True)
    assert shadow["proba"].iloc[0].tolist() == [0.1, 0.9] and shadow["version"].tolist() == [3]
    both = plog.read("churn", shadow=None)
    assert len(both) == 8 and both["shadow"].sum() == 1
    # limit, and a window with nothing in it keeps the columns
    assert len(plog.read("churn", limit=3)) == 3
    empty = plog.read("churn", since=T0 + 500)
    assert len(empty) == 0 and list(empty.columns)[:4] == [
        "request_id", "timestamp", "version", "latency_ms",
    ]  # fmt: skip
    # segments are files in the artifact tree, by deployment, version and role
    paths = [s.artifact_path for s in plog.segments("churn", shadow=None)]
    assert sorted(p.split("/")[2] for p in paths) == ["v1-served", "v2-served", "v3-shadow"]
    assert all(store.artifacts.get_bytes(p)[:4] == b"PAR1" for p in paths)


def test_column_blocks_read_back_as_columns(store: Store) -> None:
    """What the inference server logs for a block of columns: read back like a dict of
    columns, also mixed with dicts or with blocks of another dtype in one flush."""
    names = ("a", "b")
    with PredictionWriter(store, start=False) as w:
        w.log("blk", 1, "f1", ColumnBlock(names, np.array([[1.5, 2.5]])), np.array([1]), 1.0, T0)
        w.log("blk", 1, "f2", ColumnBlock(names, np.array([[3.0, 4.0], [5.0, 6.0]])),
              np.array([0, 1]), 1.0, T0 + 1)  # fmt: skip
        assert w.flush() == 3
        w.log("blk", 1, "i1", ColumnBlock(names, np.array([[7, 8]])), np.array([1]), 1.0, T0 + 2)
        w.log("blk", 1, "d1", {"a": np.array([9.0]), "b": np.array([10.0])}, np.array([0]),
              1.0, T0 + 3)  # fmt: skip
        assert w.flush() == 2
    df = PredictionLog(store).read("blk")
    assert df["request_id"].tolist() == ["f1", "f2", "f2", "i1", "d1"]
    assert df["row"].tolist() == [0, 0, 1, 0, 0]
    assert df["a"].tolist() == [1.5, 3.0, 5.0, 7.0, 9.0]
    assert df["b"].tolist() == [2.5, 4.0, 6.0, 8.0, 10.0]
    assert df["prediction"].tolist() == [1, 0, 1, 1, 0]
    with pytest.raises(InvalidInput, match="2-D array of 2 columns"):
        ColumnBlock(names, np.array([1.0, 2.0]))


def test_bad_calls_are_refused(store: Store) -> None:
    w = PredictionWriter(store, start=False)
    with pytest.raises(InvalidInput, match="request id must be a string"):
        w.log("churn", 1, 7, {"x": 1}, 0.5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="may not be"):
        w.log("a/b", 1, "r", {"x": 1}, 0.5, 1.0)
    for kwargs in ({"flush_interval": 0}, {"max_rows": 0}, {"sample_rate": 2}):
        with pytest.raises(InvalidInput):
            PredictionWriter(store, start=False, **kwargs)  # type: ignore[arg-type]
    # data that cannot become a table is dropped and counted; the rest is written
    w.log("churn", 1, "bad", 42, 0.5, 1.0)
    w.log("churn", 2, "good", {"x": 1}, 0.5, 1.0)
    w.log("churn", 2, "mixed", {"x": "text"}, 0.5, 1.0)  # a mixed column becomes text
    assert w.flush() == 2
    assert w.stats.dropped == 1 and "inputs must be" in (w.stats.last_error or "")
    assert PredictionLog(store).read("churn")["x"].tolist() == ["1", "text"]
    w.close()
    with pytest.raises(NotFound, match="'nope' does not exist"):
        PredictionLog(store).read("nope")
    with pytest.raises(InvalidInput, match="not a time"):
        PredictionLog(store).read("churn", since="yesterday")


def test_flush_by_time(store: Store) -> None:
    plog = PredictionLog(store)
    w = PredictionWriter(store, flush_interval=0.2, max_rows=1_000_000)
    try:
        t = time.monotonic()
        for i in range(3):
            w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
        wait_until(lambda: w.stats.written == 3, what="the timed flush")
        assert time.monotonic() - t < 5.0
        assert [s.num_rows for s in plog.segments("churn")] == [3]
        w.log("churn", 1, "r3", {"x": 3}, 0.5, 1.0)
        wait_until(lambda: w.stats.written == 4, what="the second timed flush")
        assert len(plog.segments("churn")) == 2
    finally:
        w.close()


def test_flush_by_size(store: Store) -> None:
    w = PredictionWriter(store, flush_interval=3600.0, max_rows=100)
    try:
        for i in range(99):
            w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
        assert w.stats.written == 0 and not w._wake.is_set()
        w.log("churn", 1, "r99", {"x": 99}, 0.5, 1.0)  # the 100th row wakes the flusher
        wait_until(lambda: w.stats.written >= 100, what="the flush at max_rows")
        for i in range(100, 150):
            w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
    finally:
        w.close()  # the rest: flushed by close, an hour before the timer
    df = PredictionLog(store).read("churn")
    assert df["x"].tolist() == list(range(150))


def test_sampling_is_decided_by_request_id(store: Store) -> None:
    ids = [f"req-{i}" for i in range(4000)]
    w = PredictionWriter(store, start=False, sample_rate=0.25)
    kept = {rid for rid in ids if w.log("churn", 1, rid, {"x": 1}, 0.5, 1.0)}
    assert 0.21 < len(kept) / len(ids) < 0.29
    assert kept == {rid for rid in ids if keep(rid, 0.25)}  # the same in every process
    assert w.stats.sampled_out == len(ids) - len(kept)
    # another deployment's own rate, and back to the writer's
    w.set_sample_rate("all", 1.0)
    w.set_sample_rate("none", 0.0)
    assert all(w.log("all", 1, rid, {"x": 1}, 0.5, 1.0) for rid in ids[:50])
    assert not any(w.log("none", 1, rid, {"x": 1}, 0.5, 1.0) for rid in ids[:50])
    w.set_sample_rate("none", None)
    assert {rid for rid in ids if w.log("none", 1, rid, {"x": 1}, 0.5, 1.0)} == kept
    with pytest.raises(InvalidInput, match="from 0 to 1"):
        w.set_sample_rate("x", -0.1)
    w.flush()
    got = set(PredictionLog(store).read("churn")["request_id"])
    assert got == kept
    # a lower rate keeps a subset of a higher one's requests: the same id, the same hash
    assert {rid for rid in ids if keep(rid, 0.1)} <= kept
    w.close()


def test_close_flushes_and_later_logs_are_dropped(store: Store) -> None:
    w = PredictionWriter(store, flush_interval=3600.0)
    for i in range(10):
        w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
    w.close()
    assert len(PredictionLog(store).read("churn")) == 10
    assert not w.log("churn", 1, "late", {"x": 0}, 0.5, 1.0)
    assert w.stats.dropped == 1
    w.close()  # twice: nothing more


def test_a_window_reads_only_the_segments_it_overlaps(store: Store) -> None:
    plog = PredictionLog(store)
    w = PredictionWriter(store, start=False)
    for base in (0, 100, 200):  # three flushes, three segments far apart in time
        for i in range(10):
            w.log("churn", 1, f"r{base + i}", {"x": base + i}, 0.5, 1.0, T0 + base + i)
        w.flush()
    w.close()
    segs = plog.segments("churn")
    assert len(segs) == 3
    # break the blobs of the first and the last segment: reading them would fail
    for seg in (segs[0], segs[2]):
        path = store.blobs.local_path(seg.sha256)
        assert path is not None
        os.chmod(path, 0o644)
        Path(path).write_bytes(b"corrupt")
    window = plog.segments("churn", since=T0 + 100, until=T0 + 110)
    assert [s.segment_id for s in window] == [segs[1].segment_id]
    df = plog.read("churn", since=T0 + 100, until=T0 + 110)
    assert df["x"].tolist() == list(range(100, 110))
    # [since, until): the end is left out; bounds as datetimes and ISO text work too
    df = plog.read(
        "churn",
        since=datetime.fromtimestamp(T0 + 103, UTC),
        until=datetime.fromtimestamp(T0 + 105, UTC).isoformat(),
    )
    assert df["x"].tolist() == [103, 104]
    with pytest.raises(IntegrityError):
        plog.read("churn")  # the whole log touches the broken segments


def test_labels_are_joined_late_and_the_latest_wins(store: Store) -> None:
    plog = PredictionLog(store)
    with PredictionWriter(store, start=False) as w:
        for i in range(4):
            w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0, T0 + i)
        w.log("churn", 1, "batch", {"x": [10, 11]}, [0.1, 0.9], 1.0, T0 + 5)
    df = plog.read("churn", with_labels=True)
    assert df["label"].isna().all()
    assert plog.log_labels("churn", pd.DataFrame({"request_id": ["r0", "r1"], "label": [1, 0]}))
    assert plog.log_labels("churn", [{"request_id": "r1", "label": 1}]) == 1  # r1 corrected
    plog.log_labels("churn", {"request_id": ["batch", "batch"], "row": [None, 1], "label": [0, 1]})
    df = plog.read("churn", with_labels=True)
    labels = dict(zip(zip(df["request_id"], df["row"], strict=True), df["label"], strict=True))
    assert labels[("r0", 0)] == 1 and labels[("r1", 0)] == 1
    assert pd.isna(labels[("r2", 0)]) and pd.isna(labels[("r3", 0)])
    # a row's own label, else the request's
    assert labels[("batch", 0)] == 0 and labels[("batch", 1)] == 1
    assert list(df.columns)[-1] == "label"
    assert _count(store, prediction_label_segments) == 3
    # a window from an hour ago still finds labels that arrived just now
    assert plog.read("churn", since=T0 + 1, until=T0 + 2, with_labels=True)["label"].tolist() == [1]

    for bad, words in [
        ({"request_id": ["r0"]}, "missing: label"),
        ({"request_id": ["r0"], "label": [None]}, "label of request 'r0' is missing"),
        ({"request_id": [None], "label": [1]}, "non-empty string"),
        ({"request_id": [""], "label": [1]}, "non-empty string"),
        ({"request_id": ["r0"], "label": [1], "extra": [2]}, "unknown columns"),
        ({"request_id": ["r0"], "label": [1], "row": [-1]}, "row must be"),
        ({"request_id": ["r0"], "label": [[1, 2]]}, "single value"),
        ({"request_id": [], "label": []}, "no rows"),
        ("text", "give a DataFrame"),
    ]:
        with pytest.raises(InvalidInput) as info:
            plog.log_labels("churn", bad)
        assert words in info.value.message, (bad, info.value.message)
    with pytest.raises(NotFound):
        plog.log_labels("nope", {"request_id": ["r0"], "label": [1]})
    assert _count(store, prediction_label_segments) == 3  # nothing half-written


def test_times() -> None:
    assert to_seconds(1_700_000_000, "since") == 1_700_000_000.0
    assert to_seconds(1_700_000_000_000, "since") == 1_700_000_000.0  # milliseconds
    assert (
        to_seconds("2026-11-23T16:00:00Z", "since")
        == datetime(2026, 11, 23, 16, tzinfo=UTC).timestamp()
    )
    assert (
        to_seconds(datetime(2026, 11, 23, 16), "since")
        == datetime(2026, 11, 23, 16, tzinfo=UTC).timestamp()
    )  # naive: UTC
    assert abs(to_seconds(timedelta(hours=1), "since") - (time.time() - 3600)) < 5  # type: ignore[operator]
    assert to_seconds(None, "since") is None
    with pytest.raises(InvalidInput):
        to_seconds(float("nan"), "since")


_CHILD = textwrap.dedent(
    """
    import sys, time
    from opsloop.serving.predictions import PredictionWriter
    from opsloop.store import default_store

    w = PredictionWriter(default_store(), flush_interval={interval})
    i = 0
    while True:
        w.log("crashy", 1, f"r{{i:08d}}", {{"i": i}}, 0.5, 1.0, time.time())
        i += 1
        if i % 50 == 0:
            time.sleep(0.005)
    """
)


def test_a_crash_loses_at_most_the_last_flush_interval(
    store: Store, tmp_path: Path, db_url: str
) -> None:
    interval = 0.25
    env = {
        **os.environ,
        "OPSLOOP_DATABASE_URL": db_url,
        "OPSLOOP_ARTIFACTS": store.settings.artifacts_url,
        "OPSLOOP_HOME": str(tmp_path / "child-home"),
    }
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(interval=interval)], env=env)
    try:
        wait_until(lambda: _count(store, prediction_segments) >= 3, timeout=60, what="3 flushes")
    finally:
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    df = PredictionLog(store).read("crashy")
    ids = df["i"].tolist()
    assert ids == list(range(len(ids)))  # what was flushed is whole: no gaps
    newest = df["timestamp"].max().timestamp()
    # lost: what came after the last flush, at most an interval (plus a flush's time)
    assert killed_at - newest < interval + 1.5, (killed_at - newest, len(ids))


def test_a_failed_flush_keeps_its_rows_for_the_next(store: Store) -> None:
    """The artifact store fails (its objects folder replaced by a file): the rows wait,
    bounded, and are written by the next flush that succeeds."""
    objects = Path(store.blobs.root) / "objects"
    w = PredictionWriter(store, start=False, max_rows=10, max_buffer_rows=30)
    for i in range(20):
        w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
    objects.rename(objects.with_suffix(".away"))
    objects.write_bytes(b"not a folder")
    try:
        with pytest.raises(OSError):
            w.flush()
        assert w.stats.flush_errors == 1 and w.stats.last_error
        assert w.buffered == 20
        for i in range(20, 40):  # past max_buffer_rows: new rows are dropped, counted
            w.log("churn", 1, f"r{i}", {"x": i}, 0.5, 1.0)
        assert w.buffered == 30 and w.stats.dropped == 10
    finally:
        objects.unlink()
        objects.with_suffix(".away").rename(objects)
    assert w.flush() == 30
    assert PredictionLog(store).read("churn")["x"].tolist() == list(range(30))
    w.close()
