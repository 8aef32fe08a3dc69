"""Monitors on a real store (SQLite and PostgreSQL): a drifted window raises one
alert event naming the drifted columns, a steady one raises nothing, an empty one says
"no data"; results are a time series; labels give measured performance, scores CBPE;
bad input is refused with nothing stored; the scheduler runs due monitors once."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from opsloop.data.service import DatasetService
from opsloop.data.validation import in_range, not_null, validate
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.monitoring.monitor_scheduler import MonitorScheduler
from opsloop.monitoring.monitors import (
    ALERT,
    NO_DATA,
    OK,
    MonitorService,
    format_duration,
    parse_duration,
)
from opsloop.serving.predictions import PredictionLog, PredictionWriter
from opsloop.store import Store
from opsloop.store.events import list_events

HOUR = 3_600_000
T0 = (int(time.time() * 1000) // HOUR - 3) * HOUR  # three hours ago, on the hour


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    age = rng.normal(40 + shift * 15, 10, n)
    income = rng.normal(50, 12, n)
    plan = rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2])
    logit = 0.08 * (age - 40) + 0.05 * (income - 50)
    score = 1 / (1 + np.exp(-logit))
    label = (rng.random(n) < score).astype(int)
    return pd.DataFrame(
        {"age": age, "income": income, "plan": plan, "score": score,
         "prediction": (score >= 0.5).astype(int), "label": label}
    )  # fmt: skip


def _log(store: Store, df: pd.DataFrame, start_ms: int, span_ms: int, prefix: str) -> list[str]:
    ids = []
    with PredictionWriter(store, start=False) as w:
        for i, r in enumerate(df.itertuples(index=False)):
            rid = f"{prefix}-{i}"
            ids.append(rid)
            w.log("churn", 1, rid, {"age": r.age, "income": r.income, "plan": r.plan},
                  {"prediction": int(r.prediction), "score": float(r.score)}, 1.0,
                  (start_ms + i * span_ms / len(df)) / 1000)  # fmt: skip
        w.flush()
    return ids


@pytest.fixture
def world(store: Store) -> tuple[Store, pd.DataFrame]:
    rng = np.random.default_rng(3)
    ref = _frame(rng, 2000)
    dv = DatasetService(store).register(ref, "churn-train")
    report = validate(ref, [in_range("age", min=-50, max=150), not_null("plan")])
    DatasetService(store).set_validation_report(dv.ref, report.to_dict())
    steady = _frame(rng, 400)
    drifted = _frame(rng, 400, shift=1.0)
    _log(store, steady, T0, HOUR, "a")  # hour 1: like the reference
    _log(store, drifted, T0 + HOUR, HOUR, "b")  # hour 2: age shifted
    return store, pd.concat([steady, drifted], ignore_index=True)


def test_drifted_window_alerts_once_naming_the_columns(world: tuple[Store, pd.DataFrame]) -> None:
    store, _ = world
    svc = MonitorService(store)
    m = svc.create("churn", reference="churn-train@1", every="10m", window="1h",
                   score_column="score")  # fmt: skip
    assert m.checks == ("input_drift", "output_drift", "quality", "performance", "cbpe")
    assert m.config["features"] == ["age", "income", "plan"]
    assert m.config["label_column"] == "label"
    assert m.next_run_time is not None and m.next_run_time % 600_000 == 0
    calm = svc.run("churn", at=T0 + HOUR)
    assert calm.status == OK, calm.message
    assert calm.rows == 400 and calm.event_id is None
    hot = svc.run("churn", at=T0 + 2 * HOUR)
    assert hot.status == ALERT and "age" in hot.message and hot.event_id is not None
    events = list_events(store.db, kind="monitor.alert")
    assert len(events) == 1  # one event for the run, not one per column
    e = events[0]
    assert (e.source, e.subject, e.event_id) == ("monitor:churn", "churn", hot.event_id)
    assert e.payload["drifted_columns"] == ["age"]
    stats = e.payload["input_drift"]["statistics"]["age"]
    assert stats["drifted"] and stats["statistic"] > 0
    assert e.payload["window"]["end_ms"] == T0 + 2 * HOUR and e.payload["rows"] == 400
    # the time series: one row per run and signal
    df = svc.results("churn", check="input_drift")
    per_col = df[df["signal"] == "age"]
    assert per_col["alert"].tolist() == [False, True]
    assert per_col["window_end"].iloc[1] == pd.Timestamp(T0 + 2 * HOUR, unit="ms", tz="UTC")
    # CBPE estimated, with no labels yet; quality checks from the reference ran
    cbpe = svc.results("churn", check="cbpe", signal="accuracy")
    assert len(cbpe) == 2 and cbpe["value"].between(0.5, 1).all()
    quality = svc.results("churn", check="quality")
    assert set(quality["signal"]) == {"in_range(age, -50..150)", "not_null(plan)"}
    assert not quality["alert"].any()
    # an empty window: no data, no alert, no exception
    empty = svc.run("churn", at=T0 - HOUR)
    assert (empty.status, empty.rows, empty.event_id) == (NO_DATA, 0, None)
    assert "no predictions" in empty.message
    assert len(list_events(store.db, kind="monitor.alert")) == 1
    assert [r.status for r in svc.runs("churn")] == [NO_DATA, ALERT, OK]
    # a run over a shorter window than the monitor's: the last 30 minutes, 200 rows
    half = svc.run("churn", at=T0 + HOUR, window="30m")
    assert (half.window_start, half.window_end) == (T0 + HOUR // 2, T0 + HOUR)
    assert half.rows == 200
    with pytest.raises(InvalidInput, match="window"):
        svc.run("churn", window="soon")


def test_labels_give_measured_performance_and_thresholds_alert(
    world: tuple[Store, pd.DataFrame],
) -> None:
    store, frames = world
    PredictionLog(store).log_labels(
        "churn", {"request_id": [f"a-{i}" for i in range(400)], "label": frames["label"][:400]}
    )
    svc = MonitorService(store)
    svc.create("perf", deployment="churn", reference="churn-train@1", every="1h", window="1h",
               checks=["performance"], score_column="score",
               performance_thresholds={"accuracy": 0.99})  # fmt: skip
    run = svc.run("perf", at=T0 + HOUR)
    assert run.status == ALERT and "accuracy" in run.message
    perf = svc.results("perf", check="performance").set_index("signal")
    truth = frames["label"][:400].to_numpy()
    pred = frames["prediction"][:400].to_numpy()
    assert perf.loc["accuracy", "value"] == pytest.approx((truth == pred).mean())
    assert perf.loc["accuracy", "threshold"] == 0.99 and perf.loc["accuracy", "alert"]
    assert 0.5 < perf.loc["roc_auc", "value"] <= 1
    e = list_events(store.db, source="monitor:perf")[0]
    assert e.payload["performance"]["breaches"]["accuracy"]["threshold"] == 0.99


def test_bad_input_is_refused_and_nothing_stored(world: tuple[Store, pd.DataFrame]) -> None:
    store, _ = world
    svc = MonitorService(store)
    with pytest.raises(NotFound, match="deployment 'nope'"):
        svc.create("x", deployment="nope", reference="churn-train@1")
    with pytest.raises(NotFound):
        svc.create("churn", reference="churn-train@9")
    with pytest.raises(InvalidInput, match="not a duration"):
        svc.create("churn", reference="churn-train@1", every="10 minutes")
    with pytest.raises(InvalidInput, match="at least 1s"):
        svc.create("churn", reference="churn-train@1", every="10ms")
    with pytest.raises(InvalidInput, match="cbpe"):
        svc.create("churn", reference="churn-train@1", checks=["cbpe"])
    with pytest.raises(InvalidInput, match="unknown check"):
        svc.create("churn", reference="churn-train@1", checks=["vibes"])
    with pytest.raises(InvalidInput, match="unknown performance metric"):
        svc.create("churn", reference="churn-train@1", performance_thresholds={"acc": 1})
    assert svc.list_monitors() == []
    m = svc.create("churn", reference="churn-train@latest", every="1h", window="10m")
    assert m.reference == "churn-train@1" and "shorter than every" in m.notes[0]
    with pytest.raises(Conflict):
        svc.create("churn", reference="churn-train@1")
    assert svc.pause("churn").enabled is False
    assert svc.resume("churn").next_run_time is not None
    svc.delete("churn")
    with pytest.raises(NotFound):
        svc.get("churn")
    assert parse_duration("1h30m") == 5_400_000 and format_duration(5_400_000) == "1h30m"


def test_scheduler_runs_due_monitors_once_per_slot(world: tuple[Store, pd.DataFrame]) -> None:
    store, _ = world
    clock = [T0 + HOUR - 1]
    svc = MonitorService(store, clock=lambda: clock[0])
    svc.create("churn", reference="churn-train@1", every="1h", window="1h",
               checks=["input_drift"])  # fmt: skip
    a = MonitorScheduler(store, interval=1.0, clock=lambda: clock[0])
    b = MonitorScheduler(store, interval=1.0, clock=lambda: clock[0])
    assert a.tick() == []  # nothing due yet
    assert b.tick() is None  # a holds the lease
    clock[0] = T0 + 2 * HOUR + 5  # one slot late: runs once, for the newest slot
    runs = a.tick()
    assert runs is not None and [r.window_end for r in runs] == [T0 + 2 * HOUR]
    assert runs[0].status == ALERT and runs[0].trigger == "scheduled"
    assert a.tick() == []  # the slot is done
    assert svc.get("churn").next_run_time == T0 + 3 * HOUR


DIRTY = {
    "nan": lambda i: ({"age": float("nan"), "income": None, "plan": None},
                      {"prediction": None, "score": float("nan")}),
    "inf": lambda i: ({"age": float("inf") if i % 2 else -float("inf"), "income": 1.0,
                       "plan": "pro"}, {"prediction": 1, "score": float("inf")}),
    "mixed": lambda i: ({"age": "old" if i % 2 else 3, "income": 2.0, "plan": 5 if i % 3 else "b"},
                        {"prediction": "yes" if i % 2 else 1, "score": "x"}),
    "missing": lambda i: ({"plan": "pro"}, {"prediction": 1, "score": 0.3}),
}  # fmt: skip


def test_dirty_windows_give_results_not_failures(world: tuple[Store, pd.DataFrame]) -> None:
    store, _ = world
    now = time.time()
    svc = MonitorService(store)
    with PredictionWriter(store, start=False) as w:
        for case, make in DIRTY.items():
            for i in range(40):
                inputs, outputs = make(i)
                w.log(f"dirty-{case}", 1, f"{case}{i}", inputs, outputs, 1.0, now - 100 + i)
        w.flush()
    for case in DIRTY:
        PredictionLog(store).log_labels(f"dirty-{case}", {"request_id": [f"{case}0"], "label": [1]})
        svc.create(case, deployment=f"dirty-{case}", reference="churn-train@1", every="1h",
                   window="1h", score_column="score")  # fmt: skip
        run = svc.run(case)
        assert run.status in (OK, ALERT) and run.rows == 40, (case, run.message)
        assert len(svc.results(case)) > 0
