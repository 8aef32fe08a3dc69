"""``opsloop serve`` end to end: a real server process, real clients (tritonclient, httpx).

Models: scikit-learn's LogisticRegression on breast_cancer (30 double columns), registered
with ``opsloop.log_model`` in a store of the module's own (and one logged by the stock
``mlflow`` client); and a "slow" pyfunc (``y = 10 * x``, 0.3 s a batch, raising on a
negative ``x``) for batching, queueing and failure tests.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from tests.conftest import free_port
from tests.serving.serve_helpers import Served, metric, start_serve, stop_serve, wait_for

Cancer = tuple[pd.DataFrame, LogisticRegression]


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, LogisticRegression]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=5000).fit(X, y)


def slow_model() -> Any:
    """``10 * x`` after a 0.3 s pause; raises on a negative x (a failing batch)."""

    def predict(df: pd.DataFrame) -> Any:
        time.sleep(0.3)
        if (df["x"] < 0).any():
            raise ValueError("x must not be negative")
        return df["x"].to_numpy() * 10

    return predict


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from opsloop.registry import flavors

    path = tmp_path_factory.mktemp("models") / "slow"
    flavors.save_model(slow_model(), path, input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    return path


@pytest.fixture(scope="module")
def registry_home(
    tmp_path_factory: pytest.TempPathFactory, cancer: tuple[pd.DataFrame, LogisticRegression]
) -> Iterator[Path]:
    """A store where ``cancer`` is registered with opsloop's API as ``cancer`` v1, @prod."""
    import opsloop
    from opsloop.store import reset_default_store

    home = tmp_path_factory.mktemp("serving-home")
    saved = {
        k: os.environ.get(k) for k in ("OPSLOOP_HOME", "OPSLOOP_DATABASE_URL", "OPSLOOP_ARTIFACTS")
    }
    os.environ["OPSLOOP_HOME"] = str(home)
    os.environ.pop("OPSLOOP_DATABASE_URL", None)
    os.environ.pop("OPSLOOP_ARTIFACTS", None)
    reset_default_store()
    try:
        X, clf = cancer
        with opsloop.start_run(experiment="serving"):
            mv = opsloop.log_model(clf, "cancer", input_example=X.head(5), alias="prod")
        assert mv.version == "1"
    finally:
        reset_default_store()
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
    yield home


@pytest.fixture(scope="module")
def cancer_server(
    registry_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``opsloop serve models:/cancer@prod`` with a 1 MB body limit and two workers."""
    log = tmp_path_factory.mktemp("logs") / "cancer.log"
    served = start_serve(
        ["models:/cancer@prod", "--max-body-mb", "1", "--workers", "2"],
        log,
        {"OPSLOOP_HOME": str(registry_home)},
    )
    yield served
    stop_serve(served)


@pytest.fixture(scope="module")
def slow_server(slow_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The slow model: batches of at most 4 rows, at most 4 requests waiting."""
    log = tmp_path_factory.mktemp("logs") / "slow.log"
    served = start_serve(
        [str(slow_dir), "--max-batch-size", "4", "--max-queue", "4", "--max-batch-wait-ms", "5"],
        log,
    )
    yield served
    stop_serve(served)


def _client(served: Served) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(served.url.removeprefix("http://"))


# --------------------------------------------------------------------------- V2


def test_v2_metadata_and_infer_with_tritonclient(cancer_server: Served, cancer: Cancer) -> None:
    X, clf = cancer
    client = _client(cancer_server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("cancer") and client.is_model_ready("cancer", "1")
        assert not client.is_model_ready("nope")
        assert client.get_server_metadata()["name"] == "opsloop"
        meta = client.get_model_metadata("cancer")
        assert meta["name"] == "cancer" and meta["versions"] == ["1"]
        assert meta["platform"] == "mlflow_sklearn"
        assert [i["name"] for i in meta["inputs"]] == list(X.columns)
        assert {(i["datatype"], tuple(i["shape"])) for i in meta["inputs"]} == {("FP64", (-1,))}
        assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
        assert client.get_model_metadata("cancer", "1") == meta

        expected = clf.predict(X.head(7))
        # One [rows, columns] tensor, sent and answered in binary (tritonclient's default).
        block = triton.InferInput("x", [7, 30], "FP64")
        block.set_data_from_numpy(X.head(7).to_numpy())
        result = client.infer("cancer", [block], request_id="r-1")
        assert result.get_response()["id"] == "r-1"
        assert result.get_response()["model_version"] == "1"
        assert result.as_numpy("predict").tolist() == expected.tolist()

        # One tensor per column, in JSON both ways, to the version's own endpoint.
        columns = []
        for name in X.columns:
            col = triton.InferInput(name, [7], "FP64")
            col.set_data_from_numpy(X[name].head(7).to_numpy(), binary_data=False)
            columns.append(col)
        wanted = [triton.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer("cancer", columns, model_version="1", outputs=wanted)
        assert result.get_output("predict")["data"] == expected.tolist()
    finally:
        client.close()


def test_v2_bad_input_names_the_column(cancer_server: Served, cancer: Cancer) -> None:
    X, _ = cancer
    client = _client(cancer_server)
    try:
        inputs = []
        for name in X.columns[1:]:  # 'mean radius' left out
            col = triton.InferInput(name, [2], "FP64")
            col.set_data_from_numpy(X[name].head(2).to_numpy())
            inputs.append(col)
        with pytest.raises(InferenceServerException, match="mean radius"):
            client.infer("cancer", inputs)
        block = triton.InferInput("x", [2, 29], "FP64")
        block.set_data_from_numpy(X.head(2).to_numpy()[:, :29])
        with pytest.raises(InferenceServerException, match="29 column"):
            client.infer("cancer", [block])
    finally:
        client.close()

    url = f"{cancer_server.url}/v2/models/cancer/infer"

    def infer(inputs: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(url, json={"inputs": inputs})

    values = X.head(2)
    full = [
        {"name": c, "shape": [2], "datatype": "FP64", "data": values[c].tolist()} for c in X.columns
    ]
    cases = {
        "mean area": [*full[:3], {**full[3], "data": ["big", "small"]}, *full[4:]],
        "worst area": [
            *(f for f in full if f["name"] != "worst area"),
            {"name": "worst area", "shape": [2], "datatype": "FP64", "data": [None, 1.0]},
        ],
        "extra": [*full, {"name": "extra", "shape": [2], "datatype": "FP64", "data": [1, 2]}],
        "texture error": [
            *(f for f in full if f["name"] != "texture error"),
            {"name": "texture error", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]},
        ],
    }
    for column, inputs in cases.items():
        r = infer(inputs)
        assert r.status_code == 400, (column, r.text)
        assert set(r.json()) == {"error"} and column in r.json()["error"], r.text
    r = infer([{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": [1.0] * 59}])
    assert r.status_code == 400 and "needs 60" in r.json()["error"]
    r = httpx.post(url, content=b'{"inputs": [')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.post(
        url, json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP65", "data": [1]}]}
    )
    assert r.status_code == 400 and "FP65" in r.json()["error"]


def test_unknown_model_path_and_method(cancer_server: Served) -> None:
    r = httpx.get(f"{cancer_server.url}/v2/models/nope")
    assert r.status_code == 404 and "cancer/1" in r.json()["error"]
    r = httpx.post(f"{cancer_server.url}/v2/models/cancer/versions/9/infer", json={})
    assert r.status_code == 404 and "version '9'" in r.json()["error"]
    assert httpx.get(f"{cancer_server.url}/nowhere").status_code == 404
    r = httpx.get(f"{cancer_server.url}/v2/models/cancer/infer")
    assert r.status_code == 405 and set(r.json()) == {"error"}
    r = httpx.post(f"{cancer_server.url}/metrics")
    assert r.status_code == 405 and r.json() == {"error": "/metrics accepts GET."}
    assert httpx.get(f"{cancer_server.url}/ping").status_code == 200
    assert httpx.get(f"{cancer_server.url}/health").status_code == 200


# --------------------------------------------------------------------------- MLflow


def test_invocations_formats(cancer_server: Served, cancer: Cancer) -> None:
    X, clf = cancer
    head = X.head(4)
    expected = clf.predict(head).tolist()
    url = f"{cancer_server.url}/invocations"
    bodies = {
        "dataframe_split": {"dataframe_split": head.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": head.to_dict(orient="records")},
        "instances": {"instances": head.to_numpy().tolist()},
        "inputs": {"inputs": {c: head[c].tolist() for c in head.columns}},
        "shuffled columns": {
            "dataframe_split": head[list(reversed(head.columns))].to_dict(orient="split")
        },
    }
    for what, body in bodies.items():
        r = httpx.post(url, json=body)
        assert r.status_code == 200, (what, r.text)
        assert r.json() == {"predictions": expected}, what
    r = httpx.post(url, content=head.to_csv(index=False), headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"predictions": expected}


def test_invocations_bad_input(cancer_server: Served, cancer: Cancer) -> None:
    X, _ = cancer
    url = f"{cancer_server.url}/invocations"
    records = X.head(2).to_dict(orient="records")
    records[1]["mean smoothness"] = "smooth"
    r = httpx.post(url, json={"dataframe_records": records})
    assert r.status_code == 400 and "mean smoothness" in r.json()["error"]
    split = X.head(2).to_dict(orient="split")
    split["data"][0][5] = float("nan")
    for dumps in (orjson.dumps, json.dumps):  # NaN as null, and as Python writes it
        r = httpx.post(url, content=dumps({"dataframe_split": split}))
        assert r.status_code == 400 and "mean compactness" in r.json()["error"], r.text
    r = httpx.post(url, json={"dataframe_split": {"columns": ["a"], "data": [[1.0]]}})
    assert r.status_code == 400 and "mean radius" in r.json()["error"]
    r = httpx.post(url, json={"rows": [[1.0]]})
    assert r.status_code == 400 and "dataframe_split" in r.json()["error"]
    r = httpx.post(url, content=b"{,}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = httpx.post(url, content=b"x", headers={"content-type": "application/xml"})
    assert r.status_code == 400 and "text/csv" in r.json()["error"]


def test_body_over_the_limit_is_413(cancer_server: Served) -> None:
    url = f"{cancer_server.url}/invocations"
    big = b'{"instances": [' + b"1.0," * 400_000 + b"1.0]}"  # 1.6 MB, the limit is 1 MB
    r = httpx.post(url, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "1 MB" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as it reads
        for _ in range(20):
            yield b" " * 100_000

    r = httpx.post(f"{cancer_server.url}/v2/models/cancer/infer", content=chunks())
    assert r.status_code == 413 and set(r.json()) == {"error"}
    assert httpx.get(f"{cancer_server.url}/v2/health/live").status_code == 200
    text = httpx.get(f"{cancer_server.url}/metrics").text
    assert metric(text, "opsloop_serving_errors_total", model="cancer", kind="too_large") >= 2


def test_model_logged_by_the_stock_mlflow_client(
    cancer: Cancer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mlflow.sklearn.log_model`` to ``opsloop server`` (skops, a tensor signature), then
    ``opsloop serve models:/NAME/1`` on the same store."""
    import mlflow
    import mlflow.sklearn

    from tests.server.conftest import start_server, stop_server

    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }.items():
        monkeypatch.setenv(key, value)
    X, _ = cancer
    clf = LogisticRegression(max_iter=5000).fit(X.to_numpy(), cancer[1].predict(X))
    home = tmp_path / "home"
    home.mkdir()
    proc, server = start_server(home)
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(f"serving-{uuid.uuid4().hex[:8]}")
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                clf,
                name="model",
                registered_model_name="cancer-mlflow",
                input_example=X.head(2).to_numpy(),
                pip_requirements=["scikit-learn"],  # skips mlflow's slow requirement inference
            )
        # Deployed through the server's API with a port: the server serves it itself.
        port = free_port()
        r = httpx.post(
            f"{server.url}/api/v1/deployments",
            json={
                "name": "cancer-mlflow-api",
                "model": "models:/cancer-mlflow/1",
                "settings": {"port": port},
            },
        )
        assert r.status_code == 201, r.text
        deployed = f"http://127.0.0.1:{port}"
        wait_for(lambda: _is_ready(deployed), 60, "the deployment's server")
        rows = X.head(3).to_numpy()
        r = httpx.post(f"{deployed}/invocations", json={"instances": rows.tolist()})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": clf.predict(rows).tolist()}
        assert r.headers["x-model-version"] == "1"
    finally:
        mlflow.set_tracking_uri(None)
        stop_server(proc)
    served = start_serve(
        ["models:/cancer-mlflow/1"], tmp_path / "serve.log", {"OPSLOOP_HOME": str(home)}
    )
    try:
        meta = httpx.get(f"{served.url}/v2/models/cancer-mlflow").json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
        expected = clf.predict(X.head(3).to_numpy()).tolist()
        client = _client(served)
        try:
            tensor = triton.InferInput("input-0", [3, 30], "FP64")
            tensor.set_data_from_numpy(X.head(3).to_numpy())
            assert client.infer("cancer-mlflow", [tensor]).as_numpy("predict").tolist() == expected
        finally:
            client.close()
        r = httpx.post(
            f"{served.url}/invocations", json={"instances": X.head(3).to_numpy().tolist()}
        )
        assert r.json() == {"predictions": expected}
        r = httpx.post(
            f"{served.url}/invocations", json={"instances": X.head(3).to_numpy()[:, :5].tolist()}
        )
        assert r.status_code == 400 and "[-1, 30]" in r.json()["error"]
    finally:
        stop_serve(served)


def _is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


# --------------------------------------------------------------------------- faults, batching


def _slow_request(served: Served, x: float) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v2/models/slow/infer",
        json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [x]}]},
        timeout=30,
    )


def test_predict_error_is_500_counted_and_the_server_goes_on(slow_server: Served) -> None:
    before = httpx.get(f"{slow_server.url}/metrics").text
    r = _slow_request(slow_server, -1.0)
    assert r.status_code == 500
    assert "ValueError: x must not be negative" in r.json()["error"]
    ok = _slow_request(slow_server, 2.0)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [20.0]
    after = httpx.get(f"{slow_server.url}/metrics").text
    labels = {"model": "slow", "version": "1"}
    errors = "opsloop_serving_errors_total"
    assert (
        metric(after, errors, kind="predict", **labels)
        == metric(before, errors, kind="predict", **labels) + 1
    )
    requests = "opsloop_serving_requests_total"
    assert metric(after, requests, code="500", **labels) >= 1
    assert metric(after, requests, code="200", **labels) >= 1

    # A bad request batched with good ones: it alone fails (the batch is predicted again
    # a request at a time).
    values = [1.0, 2.0, -3.0, 4.0, 5.0]
    with concurrent.futures.ThreadPoolExecutor(len(values)) as pool:
        answers = list(pool.map(lambda x: _slow_request(slow_server, x), values))
    assert [a.status_code for a in answers] == [200, 200, 500, 200, 200]
    assert [a.json()["outputs"][0]["data"] for a in answers if a.status_code == 200] == [
        [10.0],
        [20.0],
        [40.0],
        [50.0],
    ]
    final = httpx.get(f"{slow_server.url}/metrics").text
    assert (
        metric(final, errors, kind="predict", **labels)
        == metric(after, errors, kind="predict", **labels) + 1
    )


def test_concurrent_requests_are_batched_and_answered_in_order(slow_server: Served) -> None:
    before = httpx.get(f"{slow_server.url}/metrics").text
    values = [float(i) for i in range(1, 5)]
    with concurrent.futures.ThreadPoolExecutor(len(values)) as pool:
        answers = list(pool.map(lambda x: _slow_request(slow_server, x), values))
    assert [a.json()["outputs"][0]["data"] for a in answers] == [[x * 10] for x in values]
    after = httpx.get(f"{slow_server.url}/metrics").text
    count = metric(after, "opsloop_serving_batch_size_count") - metric(
        before, "opsloop_serving_batch_size_count"
    )
    total = metric(after, "opsloop_serving_batch_size_sum") - metric(
        before, "opsloop_serving_batch_size_sum"
    )
    assert total == 4 and count < 4  # fewer predict calls than requests: some batch had > 1


def test_queue_full_is_503_with_retry_after(slow_server: Served) -> None:
    with concurrent.futures.ThreadPoolExecutor(14) as pool:
        answers = list(
            pool.map(lambda x: _slow_request(slow_server, x), [float(i) for i in range(14)])
        )
    full = [a for a in answers if a.status_code == 503]
    ok = [a for a in answers if a.status_code == 200]
    assert full and ok and len(full) + len(ok) == 14
    assert all(a.headers["retry-after"] == "1" and "max-queue" in a.json()["error"] for a in full)
    text = httpx.get(f"{slow_server.url}/metrics").text
    assert metric(text, "opsloop_serving_errors_total", kind="queue_full") >= len(full)
    assert _slow_request(slow_server, 1.0).status_code == 200


def test_sigterm_answers_the_requests_in_flight(slow_dir: Path, tmp_path: Path) -> None:
    served = start_serve([str(slow_dir), "--max-batch-size", "1"], tmp_path / "serve.log")
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(_slow_request, served, float(i)) for i in (1, 2, 3)]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait until 1 runs and 2 are queued
                text = httpx.get(f"{served.url}/metrics").text
                if metric(text, "opsloop_serving_queue_depth") == 2:
                    break
            served.proc.send_signal(signal.SIGTERM)
            results = [a.result(timeout=30) for a in answers]
        assert [r.status_code for r in results] == [200, 200, 200], served.logs()
        assert [r.json()["outputs"][0]["data"] for r in results] == [[10.0], [20.0], [30.0]]
        # uvicorn exits by re-raising the signal once it has shut down cleanly
        assert served.proc.wait(15) in (0, -signal.SIGTERM)
        assert "Finished server process" in served.logs()
    finally:
        if served.proc.poll() is None:
            stop_serve(served)


def test_serve_names_a_missing_model(tmp_path: Path) -> None:
    r = subprocess.run(
        ["opsloop", "serve", "models:/nothing/1"],
        env={**os.environ, "OPSLOOP_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3 and "nothing" in r.stderr


def test_workers_share_their_metrics(cancer_server: Served, cancer: Cancer) -> None:
    """The server runs two workers; /metrics, answered by either, counts both."""
    X, clf = cancer
    before = httpx.get(f"{cancer_server.url}/metrics").text
    body = {"dataframe_split": X.head(1).to_dict(orient="split")}
    for _ in range(12):  # a connection each: the kernel spreads them over the workers
        r = httpx.post(f"{cancer_server.url}/invocations", json=body)
        assert r.json() == {"predictions": clf.predict(X.head(1)).tolist()}
    after = httpx.get(f"{cancer_server.url}/metrics").text
    name = "opsloop_serving_requests_total"
    labels = {"model": "cancer", "protocol": "invocations", "code": "200"}
    assert metric(after, name, **labels) - metric(before, name, **labels) == 12
    assert "serving cancer version 1" in cancer_server.logs()
    assert cancer_server.logs().count("Application startup complete") == 2


def test_every_answer_carries_a_request_id_and_invocations_the_version(
    cancer_server: Served, cancer: Cancer, slow_server: Served
) -> None:
    X, _ = cancer
    url = cancer_server.url
    split = {"dataframe_split": X.head(1).to_dict(orient="split")}
    r = httpx.post(f"{url}/invocations", json=split, headers={"X-Request-Id": "req-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-1"
    assert r.headers["x-model-version"] == "1"
    r = httpx.post(f"{url}/invocations", json=split)
    assert len(r.headers["x-request-id"]) == 32 and r.headers["x-model-version"] == "1"
    row = X.iloc[0].tolist()
    v2 = {
        "id": "v2-id",
        "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": row}],
    }
    r = httpx.post(f"{url}/v2/models/cancer/infer", json=v2)
    assert r.status_code == 200 and r.headers["x-request-id"] == "v2-id"

    big = b'{"instances": [' + b"1.0," * 400_000 + b"1.0]}"
    errors = {
        "invocations 400": lambda h: httpx.post(f"{url}/invocations", json={"rows": 1}, headers=h),
        "v2 400": lambda h: httpx.post(f"{url}/v2/models/cancer/infer", content=b"{", headers=h),
        "v2 404": lambda h: httpx.post(f"{url}/v2/models/nope/infer", json={}, headers=h),
        "405": lambda h: httpx.get(f"{url}/invocations", headers=h),
        "404": lambda h: httpx.get(f"{url}/nowhere", headers=h),
        "413": lambda h: httpx.post(f"{url}/invocations", content=big, headers=h),
        "500": lambda h: httpx.post(
            f"{slow_server.url}/v2/models/slow/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [-1.0]}]},
            headers=h,
            timeout=30,
        ),
    }
    for what, call in errors.items():
        given = call({"X-Request-Id": f"mine-{what}"})
        assert given.status_code >= 400 and set(given.json()) == {"error"}, (what, given.text)
        assert given.headers["x-request-id"] == f"mine-{what}", what
        fresh = call({})
        assert len(fresh.headers["x-request-id"]) == 32, what
    r = errors["500"]({})
    assert r.status_code == 500 and r.headers["x-model-version"] == "1"
