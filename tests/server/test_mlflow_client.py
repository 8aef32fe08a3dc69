"""The acceptance test: the stock ``mlflow`` client against ``opsloop server``.

Nothing here knows it is talking to opsloop: the client is pointed at the server
with ``MLFLOW_TRACKING_URI`` and used as its documentation shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression


def test_tracking_round_trip(tracking_uri: str, unique: str, tmp_path: Path) -> None:
    client = MlflowClient()
    exp_id = mlflow.set_experiment(f"acceptance-{unique}").experiment_id
    exp = client.get_experiment(exp_id)
    assert exp.name == f"acceptance-{unique}"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    client.set_experiment_tag(exp_id, "owner", "ops")

    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": "0.01", "epochs": 3})
        mlflow.log_param("optimizer", "adam")
        mlflow.log_metric("acc", 0.5, step=0)
        mlflow.log_metric("acc", 0.95, step=1)
        mlflow.log_metrics({"loss": 0.25, "zero": 0.0})
        client.log_batch(
            parent.info.run_id,
            metrics=[Metric("batch_m", float(i), 1_700_000_000_000 + i, i) for i in range(1000)],
            params=[Param("batch_p", "x")],
            tags=[RunTag("batch_t", "y")],
        )
        mlflow.set_tags({"team": "a", "stage": "dev"})
        mlflow.set_tag("to-delete", "soon")
        client.delete_tag(parent.info.run_id, "to-delete")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("acc", 0.7)
            mlflow.log_metric("nan", math.nan)
            mlflow.log_metric("pinf", math.inf)
            mlflow.log_metric("ninf", -math.inf)

        folder = tmp_path / "report"
        (folder / "plots").mkdir(parents=True)
        (folder / "summary.txt").write_text("all good\n")
        (folder / "plots" / "curve.csv").write_text("x,y\n1,2\n")
        mlflow.log_artifacts(str(folder), artifact_path="report")
        mlflow.log_text("hello", "notes/hello.txt")
        train = pd.DataFrame({"x": [1.0, 2.0], "y": [0.0, 1.0]})
        mlflow.log_input(mlflow.data.from_pandas(train, name="train"), context="training")

    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    assert run.info.run_name == "parent"
    assert run.data.params == {
        "lr": "0.01",
        "epochs": "3",
        "optimizer": "adam",
        "batch_p": "x",
    }
    assert run.data.metrics["acc"] == 0.95
    assert run.data.metrics["zero"] == 0.0
    assert run.data.metrics["batch_m"] == 999.0
    assert run.data.tags["team"] == "a"
    assert run.data.tags["batch_t"] == "y"
    assert "to-delete" not in run.data.tags
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "train"
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}

    history = client.get_metric_history(parent.info.run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.95)]
    batch_history = client.get_metric_history(parent.info.run_id, "batch_m")
    assert [m.value for m in batch_history] == [float(i) for i in range(1000)]

    kid = client.get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert math.isnan(kid.data.metrics["nan"])
    assert kid.data.metrics["pinf"] == math.inf
    assert kid.data.metrics["ninf"] == -math.inf
    assert math.isnan(client.get_metric_history(child.info.run_id, "nan")[0].value)
    children = mlflow.search_runs(
        [exp_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    assert [r.info.run_id for r in children] == [child.info.run_id]

    top = sorted(a.path for a in client.list_artifacts(parent.info.run_id))
    assert top == ["notes", "report"]
    inner = sorted((a.path, a.is_dir) for a in client.list_artifacts(parent.info.run_id, "report"))
    assert inner == [("report/plots", True), ("report/summary.txt", False)]
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=parent.info.run_id, artifact_path="report", dst_path=str(tmp_path / "dl")
        )
    )
    assert (local / "summary.txt").read_text() == "all good\n"
    assert (local / "plots" / "curve.csv").read_text() == "x,y\n1,2\n"
    assert mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/notes/hello.txt") == "hello"


def test_search_runs_filters_and_order(tracking_uri: str, unique: str) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(f"search-{unique}")
    rows = [
        ("r1", 0.95, "0.01", "a", "FINISHED"),
        ("r2", 0.99, "0.01", "a", "FINISHED"),
        ("r3", 0.97, "0.1", "a", "FINISHED"),
        ("r4", 0.98, "0.01", "b", "FINISHED"),
        ("r5", 0.93, "0.01", "a", "FAILED"),
        ("r6", 0.5, "0.01", "a", "FINISHED"),
        ("r7", 0.91, "0.01", "a", "FINISHED"),
    ]
    ids = {}
    for name, acc, lr, team, status in rows:
        run = client.create_run(exp_id, run_name=name, tags={"team": team})
        client.log_metric(run.info.run_id, "acc", acc)
        client.log_param(run.info.run_id, "lr", lr)
        client.set_terminated(run.info.run_id, status)
        ids[name] = run.info.run_id

    df = mlflow.search_runs(
        [exp_id],
        filter_string="metrics.acc > 0.9 and params.lr = '0.01' and tags.team = 'a' "
        "and attributes.status = 'FINISHED'",
        order_by=["metrics.acc DESC"],
    )
    assert list(df["tags.mlflow.runName"]) == ["r2", "r1", "r7"]
    assert list(df["metrics.acc"]) == [0.99, 0.95, 0.91]

    found = client.search_runs([exp_id], "attributes.run_name = 'r3'")
    assert [r.info.run_id for r in found] == [ids["r3"]]
    asc = client.search_runs([exp_id], order_by=["metrics.acc ASC"], max_results=3)
    assert [r.info.run_name for r in asc] == ["r6", "r7", "r5"]
    # Paging walks every run once.
    seen = []
    token = None
    while True:
        page = client.search_runs(
            [exp_id], max_results=2, page_token=token, order_by=["attributes.run_name"]
        )
        seen += [r.info.run_name for r in page]
        token = page.token
        if not token:
            break
    assert seen == [r[0] for r in rows]


def test_delete_and_restore(tracking_uri: str, unique: str) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(f"lifecycle-{unique}")
    run = client.create_run(exp_id)
    run_id = run.info.run_id

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = {e.experiment_id for e in client.search_experiments()}
    assert exp_id not in active
    gone = {e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)}
    assert exp_id in gone
    with pytest.raises(MlflowException):
        client.create_run(exp_id)
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_run(run_id).info.lifecycle_stage == "active"

    client.rename_experiment(exp_id, f"lifecycle-renamed-{unique}")
    assert client.get_experiment_by_name(f"lifecycle-renamed-{unique}").experiment_id == exp_id
    found = client.search_experiments(filter_string=f"name = 'lifecycle-renamed-{unique}'")
    assert [e.experiment_id for e in found] == [exp_id]


def test_model_logging_registry_and_loading(tracking_uri: str, unique: str) -> None:
    client = MlflowClient()
    name = f"clf-{unique}"
    mlflow.set_experiment(f"models-{unique}")
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    model = LogisticRegression().fit(x, y)
    with mlflow.start_run() as run:
        mlflow.log_param("C", model.C)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, input_example=x[:2]
        )
    assert str(info.registered_model_version) == "1"
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id
    assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [
        info.model_id
    ]

    version = client.get_model_version(name, "1")
    assert version.source == f"models:/{info.model_id}"
    assert version.run_id == run.info.run_id
    client.set_model_version_tag(name, "1", "validated", "yes")
    assert client.get_model_version(name, "1").tags == {"validated": "yes"}
    client.set_registered_model_tag(name, "task", "classification")

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert by_alias.version == "1" and "champion" in by_alias.aliases
    assert client.get_registered_model(name).aliases == {"champion": "1"}

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(x)) == list(model.predict(x))
    again = mlflow.sklearn.load_model(f"models:/{name}/1")
    assert list(again.predict(x)) == list(model.predict(x))

    # A second version, from a runs:/ URI, moves the alias.
    v2 = mlflow.register_model(f"models:/{info.model_id}", name)
    assert v2.version == "2"
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    client.update_model_version(name, "2", description="second")
    assert client.get_model_version(name, "2").description == "second"
    client.delete_model_version_tag(name, "1", "validated")
    assert client.get_model_version(name, "1").tags == {}

    found = client.search_registered_models(filter_string=f"name = '{name}'")
    assert [m.name for m in found] == [name]
    assert found[0].tags == {"task": "classification"}
    assert {
        m.name for m in client.search_registered_models(filter_string=f"name LIKE 'clf-{unique}%'")
    } == {name}
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert client.get_model_version_download_uri(name, "1").startswith("mlflow-artifacts:/")

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as exc:
        client.get_model_version_by_alias(name, "champion")
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.rename_registered_model(name, f"{name}-renamed")
    assert client.get_registered_model(f"{name}-renamed").name == f"{name}-renamed"
    client.delete_registered_model(f"{name}-renamed")
    assert client.search_registered_models(filter_string=f"name = '{name}-renamed'") == []


def test_ui_prefix_and_server_info(http: httpx.Client, unique: str) -> None:
    """The MLflow UI calls the same API under /ajax-api; MLflow 3 clients probe server-info."""
    r = http.post("/ajax-api/2.0/mlflow/experiments/create", json={"name": f"ajax-{unique}"})
    assert r.status_code == 200, r.text
    eid = r.json()["experiment_id"]
    got = http.get("/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": eid})
    assert got.json()["experiment"]["name"] == f"ajax-{unique}"
    # GET search with repeated and typed query parameters, as the UI sends them.
    found = http.get(
        "/ajax-api/2.0/mlflow/experiments/search",
        params=[("filter", f"name = 'ajax-{unique}'"), ("max_results", "5"), ("order_by", "name")],
    )
    assert [e["experiment_id"] for e in found.json()["experiments"]] == [eid]
    info = http.get("/api/3.0/mlflow/server-info").json()
    assert info["multipart_uploads_enabled"] is False
