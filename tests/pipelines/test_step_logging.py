"""Fluent logging inside a step reaches the step's run; a pipeline nests under the
active run."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

import opsloop
from opsloop.errors import InvalidInput, InvalidState
from opsloop.pipelines import pipeline, run, step
from opsloop.store import Store, default_store
from opsloop.tracking.capture import StepLog, capturing_step_log, current_step_log
from opsloop.tracking.service import TrackingService
from tests.pipelines.helpers import artifacts, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@step
def train(epochs: int, lr: float = 0.1) -> str:
    opsloop.log_params({"optimizer": "sgd", "lr": lr})  # lr is also the step's param
    opsloop.set_tag("stage", "train")
    for epoch in range(epochs):
        opsloop.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    opsloop.log_metrics({"acc": 0.9, "nan": math.nan}, step=epochs)
    active = opsloop.active_run()
    assert active is not None
    return active.info.run_id


@step
def report(run_id: str) -> str:
    opsloop.set_tags({"seen": run_id})
    return run_id


@pipeline
def training(epochs: int):
    report(train(epochs))


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_what_a_step_logs_is_recorded_on_its_run(store: Store, executor: str) -> None:
    r = run(training, {"epochs": 5}, store=store, executor=executor, cache=False)
    runs = step_runs(store, r.run_id)
    train_run = runs["train"]
    # active_run() inside the step was the step's own run
    assert r.output("train") == r.steps["train"].run_id == train_run.info.run_id
    assert train_run.params == {"epochs": "5", "lr": "0.1", "optimizer": "sgd"}
    assert train_run.tags["stage"] == "train"
    latest = {m.key: m for m in train_run.metrics}
    assert latest["loss"].value == 0.2 and latest["loss"].step == 4
    assert latest["acc"].value == 0.9 and math.isnan(latest["nan"].value)
    history = TrackingService(store).get_metric_history(train_run.info.run_id, "loss").items
    assert [(m.step, m.value) for m in history] == [(i, 1.0 / (i + 1)) for i in range(5)]
    # nothing went to the pipeline's run or the other step
    svc = TrackingService(store)
    assert svc.get_run(r.run_id).metrics == []
    assert runs["report"].tags["seen"] == train_run.info.run_id
    assert runs["report"].metrics == [] and "stage" not in runs["report"].tags


@step
def threaded() -> None:
    t = threading.Thread(target=opsloop.set_tag, args=("from_thread", "yes"))
    t.start()
    t.join()


@sqlite_only
def test_threads_of_a_step_in_a_worker_process_log_to_it(store: Store) -> None:
    # A worker process runs one step at a time: all its threads log to that step.
    # (In-process executors capture the step's own thread only.)
    @pipeline
    def p():
        threaded()

    r = run(p, store=store, executor="local", cache=False)
    assert step_runs(store, r.run_id)["threaded"].tags["from_thread"] == "yes"


@step(retries=1, retry_backoff=0.0)
def fails_after_logging(counter: str) -> int:
    path = Path(counter)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    opsloop.log_metric("attempt", attempt)
    opsloop.log_param("attempt", attempt)  # another value each attempt: only the last counts
    raise RuntimeError(f"attempt {attempt} fails")


@sqlite_only
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failed_step_keeps_what_its_last_attempt_logged(
    store: Store, tmp_path: Path, executor: str
) -> None:
    @pipeline
    def p(counter: str):
        fails_after_logging(counter)

    r = run(
        p, {"counter": str(tmp_path / "n")}, store=store, executor=executor, raise_on_failure=False
    )
    assert r.steps["fails_after_logging"].attempts == 2
    failed = step_runs(store, r.run_id)["fails_after_logging"]
    assert failed.info.status == "FAILED"
    assert failed.params["attempt"] == "2"
    assert [(m.key, m.value) for m in failed.metrics] == [("attempt", 2.0)]


@step(retries=3, retry_backoff=0.0)
def relabels(lr: float) -> float:
    opsloop.log_param("lr", lr * 2)
    return lr


@step
def misuses(what: str) -> None:
    if what == "start_run":
        opsloop.start_run()
    elif what == "metric":
        opsloop.log_metric("bad key!", 1.0)
    elif what == "tag":
        opsloop.set_tag("opsloop.cache", "hit")
    elif what == "param":
        opsloop.log_param("k", 1)
        opsloop.log_param("k", 2)


@sqlite_only
def test_wrong_logging_in_a_step_fails_it_clearly(store: Store) -> None:
    @pipeline
    def p():
        relabels(0.1)

    r = run(p, store=store, executor="local", raise_on_failure=False)
    s = r.steps["relabels"]
    assert s.status == "FAILED" and s.attempts == 1  # it would fail the same way again
    assert s.error == (
        "InvalidInput: step 'relabels' logged the param 'lr' as '0.2', but 'lr' is an "
        "argument of the step, logged as '0.1'; a run's param cannot change: log it under "
        "another name"
    )
    assert step_runs(store, r.run_id)["relabels"].params == {"lr": "0.1"}

    expected = {
        "start_run": "InvalidState: opsloop.start_run() cannot be called inside pipeline step",
        "metric": "InvalidInput: invalid metric name 'bad key!'",
        "tag": "InvalidInput: tag 'opsloop.cache' of step 'misuses' is set by the pipeline's",
        "param": "InvalidInput: changing param values is not allowed: param 'k' of step",
    }
    for what, message in expected.items():

        @pipeline(name=f"misuse_{what}")
        def misuse(what: str):
            misuses(what)

        r = run(misuse, {"what": what}, store=store, executor="inline", raise_on_failure=False)
        assert (r.steps["misuses"].error or "").startswith(message), what


def test_the_capture_hook_is_per_thread_and_restored() -> None:
    outer = StepLog("r1", "outer", 0)
    inner = StepLog("r2", "inner", 0)
    assert current_step_log() is None
    with capturing_step_log(outer, whole_process=False):
        with capturing_step_log(inner, whole_process=False):
            opsloop.log_metric("m", 1)
        seen: list[StepLog | None] = []
        t = threading.Thread(target=lambda: seen.append(current_step_log()))
        t.start()
        t.join()
        assert seen == [None]
        opsloop.set_tag("t", 1)
        active = opsloop.active_run()
        assert active is not None and active.info.run_id == "r1"
    assert current_step_log() is None
    assert [m[:2] for m in inner.metrics] == [("m", 1.0)] and inner.tags == {}
    assert outer.tags == {"t": "1"} and outer.metrics == []
    with pytest.raises(InvalidInput), capturing_step_log(outer, whole_process=True):
        opsloop.log_param("lr", "x" * 10_000)
    with pytest.raises(InvalidState, match="no active run"):
        opsloop.log_param("lr", 1)


def test_a_pipeline_run_nests_under_the_active_run(home: Path) -> None:
    @pipeline(name="nested_pipeline")
    def p(epochs: int):
        report(train(epochs))

    with opsloop.start_run(experiment="outer", run_name="sweep") as outer:
        opsloop.log_metric("before", 1.0)
        r = run(p, {"epochs": 2}, executor="inline")
        # the outer run is still the active one, and got nothing from the steps
        active = opsloop.active_run()
        assert active is not None and active.info.run_id == outer.run_id
    store = default_store()
    svc = TrackingService(store)
    prun = svc.get_run(r.run_id)
    assert prun.tags["mlflow.parentRunId"] == outer.run_id
    assert prun.info.parent_run_id == outer.run_id
    # the pipeline keeps its own experiment
    assert svc.get_experiment(prun.info.experiment_id).name == "nested_pipeline"
    assert svc.get_experiment(outer.info.experiment_id).name == "outer"
    steps = step_runs(store, r.run_id)
    assert steps["train"].params["optimizer"] == "sgd"
    outer_run = svc.get_run(outer.run_id)
    assert [m.key for m in outer_run.metrics] == ["before"] and "stage" not in outer_run.tags

    # without an active run, a pipeline's run has no parent
    alone = run(p, {"epochs": 2}, executor="inline")
    assert "mlflow.parentRunId" not in svc.get_run(alone.run_id).tags


@sqlite_only
def test_an_active_run_of_another_store_is_not_a_parent(store: Store, home: Path) -> None:
    with opsloop.start_run():
        r = run(training, {"epochs": 1}, store=store, executor="inline")
    assert "mlflow.parentRunId" not in TrackingService(store).get_run(r.run_id).tags


@step
def register_rows(n: int) -> int:
    import pandas as pd

    return opsloop.data.register(pd.DataFrame({"x": range(n)}), "step-rows").version


@step
def read_rows(version: int) -> int:
    return len(opsloop.data.get("step-rows", version))


@pipeline
def rows_lineage(n: int):
    read_rows(register_rows(n))


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_datasets_a_step_registers_and_reads_are_its_runs_inputs(home: Path, executor: str) -> None:
    """A step's data calls go to the pipeline's store (in a worker too) and the versions
    become its run's inputs, recorded once the run is written."""
    from opsloop.data import DatasetService

    r = run(rows_lineage, {"n": 7}, executor=executor, cache=False)
    store = default_store()
    dv = DatasetService(store).get_version("step-rows", r.output("register_rows"))
    assert dv.num_rows == 7
    runs = step_runs(store, r.run_id)
    assert dv.run_id == runs["register_rows"].info.run_id
    assert dv.produced_by_step == "register_rows"
    assert r.output("read_rows") == 7
    for name in ("register_rows", "read_rows"):
        inputs = runs[name].inputs
        assert [(i.name, i.digest) for i in inputs] == [("step-rows", dv.digest)]


@step
def fit_and_register(n: int) -> str:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"a": [float(i) for i in range(n)], "b": [float(i % 3) for i in range(n)]})
    model = LogisticRegression().fit(x, [i % 2 for i in range(n)])
    opsloop.log_text(f"trained on {n} rows", "notes/summary.txt")
    mv = opsloop.log_model(model, "step-model", input_example=x.iloc[:2])
    return mv.version


@pipeline
def model_in_a_step(n: int):
    fit_and_register(n)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_step_logs_artifacts_and_registers_a_model_under_its_run(
    home: Path, executor: str
) -> None:
    """Artifacts and models logged inside a step go under the step's run once it is
    recorded (in a worker the step may start before its run is written)."""
    from opsloop.registry.service import RegistryService

    r = run(model_in_a_step, {"n": 12}, executor=executor, cache=False)
    store = default_store()
    step_run_ = step_runs(store, r.run_id)["fit_and_register"]
    mv = RegistryService(store).get_model_version("step-model", r.output("fit_and_register"))
    assert mv.run_id == step_run_.info.run_id
    assert artifacts(store, step_run_)["notes/summary.txt"] == b"trained on 12 rows"
    loaded = opsloop.load_model(f"models:/step-model/{mv.version}")
    import pandas as pd

    assert len(loaded.predict(pd.DataFrame({"a": [1.0], "b": [2.0]}))) == 1


@step
def scored(k: int) -> int:
    opsloop.log_params({"kind": "demo"})
    opsloop.set_tag("family", "tiny")
    for i in range(3):
        opsloop.log_metric("loss", 1.0 / (i + 1), step=i)
    opsloop.log_text(f"k={k}", "notes/k.txt")
    return k * 2


@pipeline
def scored_twice(k: int):
    scored(k)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_cache_hit_run_carries_what_its_source_run_logged(store: Store) -> None:
    first = run(scored_twice, {"k": 3}, store=store, executor="inline")
    again = run(scored_twice, {"k": 3}, store=store, executor="inline")
    assert again.steps["scored"].cache_hit
    src = step_runs(store, first.run_id)["scored"]
    hit = step_runs(store, again.run_id)["scored"]
    assert hit.info.run_id != src.info.run_id
    assert hit.params == src.params == {"k": "3", "kind": "demo"}
    assert hit.tags["family"] == "tiny" and hit.tags["opsloop.cache"] == "hit"
    assert hit.tags["opsloop.cache.source_run"] == src.info.run_id
    assert {m.key: m.value for m in hit.metrics} == {"loss": 1.0 / 3}
    history = TrackingService(store).get_metric_history(hit.info.run_id, "loss").items
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    got = artifacts(store, hit)
    assert got["notes/k.txt"] == b"k=3"
    assert "outputs/output.pkl" in got or any(p.startswith("outputs/") for p in got)
    assert not any(p.startswith("logs/") for p in got)  # it did not run: no logs of its own
