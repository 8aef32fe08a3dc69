"""Tracking on SQLite and PostgreSQL: experiments, runs, logging, and bad input."""

from __future__ import annotations

import math

import pytest

from opsloop.errors import Conflict, InvalidInput, InvalidState, NotFound
from opsloop.store import Store
from opsloop.tracking.entities import DatasetInput, Metric
from opsloop.tracking.service import TrackingService


@pytest.fixture
def svc(store: Store) -> TrackingService:
    return TrackingService(store)


def test_experiments_lifecycle(svc: TrackingService) -> None:
    eid = svc.create_experiment("exp-a", tags={"team": "a"})
    exp = svc.get_experiment(eid)
    assert exp.name == "exp-a" and exp.tags == {"team": "a"}
    assert exp.artifact_location == f"mlflow-artifacts:/{eid}"
    assert svc.get_experiment_by_name("exp-a").experiment_id == eid
    with pytest.raises(Conflict):
        svc.create_experiment("exp-a")
    svc.rename_experiment(eid, "exp-b")
    assert svc.get_experiment(eid).name == "exp-b"
    svc.delete_experiment(eid)
    assert svc.get_experiment(eid).lifecycle_stage == "deleted"
    assert eid not in [e.experiment_id for e in svc.search_experiments().items]
    assert eid in [e.experiment_id for e in svc.search_experiments(view_type="DELETED_ONLY").items]
    svc.restore_experiment(eid)
    assert svc.get_experiment(eid).lifecycle_stage == "active"
    with pytest.raises(NotFound):
        svc.get_experiment("9999")
    with pytest.raises(InvalidInput):
        svc.get_experiment("abc")
    with pytest.raises(InvalidInput):
        svc.create_experiment("")


def test_run_logging_round_trip(svc: TrackingService) -> None:
    eid = svc.create_experiment("e")
    parent = svc.create_run(eid, run_name="parent", user_id="ann")
    child = svc.create_run(eid, run_name="child", parent_run_id=parent.info.run_id)
    rid = child.info.run_id
    assert child.info.parent_run_id == parent.info.run_id
    assert child.tags["mlflow.parentRunId"] == parent.info.run_id
    svc.log_batch(
        rid,
        [
            Metric("loss", 1.0, 10, 0),
            Metric("loss", 0.5, 11, 1),
            Metric("nan", math.nan, 12, 0),
            Metric("pinf", math.inf, 13, 0),
            Metric("ninf", -math.inf, 14, 0),
        ],
        {"lr": "0.01", "depth": 3},
        {"team": "a"},
    )
    run = svc.get_run(rid)
    assert run.params == {"lr": "0.01", "depth": "3"}
    assert run.tags["team"] == "a" and run.tags["mlflow.runName"] == "child"
    latest = {m.key: m for m in run.metrics}
    assert latest["loss"].value == 0.5 and latest["loss"].step == 1
    assert math.isnan(latest["nan"].value)
    assert latest["pinf"].value == math.inf and latest["ninf"].value == -math.inf
    hist = svc.get_metric_history(rid, "loss").items
    assert [(m.step, m.value) for m in hist] == [(0, 1.0), (1, 0.5)]
    # A retried batch stores each point once.
    svc.log_batch(rid, [Metric("loss", 0.5, 11, 1)])
    assert len(svc.get_metric_history(rid, "loss").items) == 2
    # A point that arrives again inside another batch is still one point.
    svc.log_batch(rid, [Metric("loss", 0.5, 11, 1), Metric("loss", 0.25, 12, 2)])
    assert [(m.step, m.value) for m in svc.get_metric_history(rid, "loss").items] == [
        (0, 1.0),
        (1, 0.5),
        (2, 0.25),
    ]
    # An older step does not replace the latest value.
    svc.log_batch(rid, [Metric("loss", 9.0, 99, 0)])
    assert {m.key: m.value for m in svc.get_run(rid).metrics}["loss"] == 0.25
    info = svc.update_run(rid, status="FINISHED")
    assert info.status == "FINISHED" and info.end_time is not None
    svc.delete_tag(rid, "team")
    assert "team" not in svc.get_run(rid).tags


def test_history_pagination(svc: TrackingService) -> None:
    rid = svc.create_run("0").info.run_id
    svc.log_batch(rid, [Metric("m", float(i), i, i) for i in range(25)])
    page = svc.get_metric_history(rid, "m", max_results=10)
    got = list(page.items)
    while page.next_page_token:
        page = svc.get_metric_history(rid, "m", max_results=10, page_token=page.next_page_token)
        got.extend(page.items)
    assert [m.step for m in got] == list(range(25))


def test_rejected_batch_changes_nothing(svc: TrackingService) -> None:
    rid = svc.create_run("0").info.run_id
    svc.log_batch(rid, [Metric("a", 1.0, 1, 0)], {"p": "1"})
    bad_batches = [
        dict(metrics_=[Metric("b", 2.0, 2, 0), Metric("bad name!", 1.0, 1, 0)]),
        dict(metrics_=[Metric("b", 2.0, 2, 0)], params_={"p": "2"}),  # changes a param
        dict(metrics_=[Metric("b", 2.0, 2, 0)], params_={"long": "x" * 6001}),
        dict(metrics_=[Metric("b", 2.0, 2, 0)] * 1001),
        dict(params_={"q": "1"}, tags_={"../x": "1"}),
    ]
    for kwargs in bad_batches:
        with pytest.raises(InvalidInput):
            svc.log_batch(rid, **kwargs)  # type: ignore[arg-type]
    run = svc.get_run(rid)
    assert run.params == {"p": "1"}
    assert [m.key for m in run.metrics] == ["a"]
    assert svc.get_metric_history(rid, "b").items == []


def test_unknown_and_deleted_runs(svc: TrackingService) -> None:
    with pytest.raises(NotFound):
        svc.get_run("0" * 32)
    with pytest.raises(NotFound):
        svc.log_metric("0" * 32, "m", 1.0)
    rid = svc.create_run("0").info.run_id
    svc.delete_run(rid)
    with pytest.raises(InvalidState):
        svc.log_metric(rid, "m", 1.0)
    svc.restore_run(rid)
    svc.log_metric(rid, "m", 1.0)
    with pytest.raises(InvalidInput):
        svc.update_run(rid, status="DONE")
    with pytest.raises(NotFound):
        svc.create_run("0", parent_run_id="f" * 32)


def test_run_inputs_and_logged_models(svc: TrackingService) -> None:
    rid = svc.create_run("0").info.run_id
    svc.log_inputs(rid, [DatasetInput("sensors", "abc123", "local", "/data/s.parquet")])
    svc.log_inputs(rid, [DatasetInput("sensors", "abc123", "local", "/data/s.parquet")])
    run = svc.get_run(rid)
    assert [(d.name, d.digest) for d in run.inputs] == [("sensors", "abc123")]
    lm = svc.create_logged_model("0", "clf", source_run_id=rid)
    assert lm.status == "PENDING" and lm.artifact_location.endswith(
        f"/models/{lm.model_id}/artifacts"
    )
    assert svc.finalize_logged_model(lm.model_id, "READY").status == "READY"
    svc.set_logged_model_tags(lm.model_id, {"k": "v"})
    assert svc.get_logged_model(lm.model_id).tags == {"k": "v"}
    assert [m.model_id for m in svc.search_logged_models(["0"]).items] == [lm.model_id]
    svc.delete_logged_model(lm.model_id)
    with pytest.raises(NotFound):
        svc.get_logged_model(lm.model_id)
