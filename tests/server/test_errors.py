"""Errors over MLflow's protocol: one JSON shape, the right status, nothing half-stored."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import start_server, stop_server

API = "/api/2.0/mlflow"


def error(r: httpx.Response, status: int, code: str) -> str:
    """Check an error response's status and shape; return its message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


def new_run(http: httpx.Client, unique: str) -> tuple[str, str]:
    r = http.post(f"{API}/experiments/create", json={"name": f"errors-{unique}"})
    assert r.status_code == 200, r.text
    eid = r.json()["experiment_id"]
    r = http.post(f"{API}/runs/create", json={"experiment_id": eid, "start_time": 1})
    assert r.status_code == 200, r.text
    return eid, r.json()["run"]["info"]["run_id"]


def run_data(http: httpx.Client, run_id: str) -> dict[str, Any]:
    r = http.get(f"{API}/runs/get", params={"run_id": run_id})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["run"]["data"]
    return data


def history(http: httpx.Client, run_id: str, key: str) -> list[dict[str, Any]]:
    r = http.get(f"{API}/metrics/get-history", params={"run_id": run_id, "metric_key": key})
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json().get("metrics", [])
    return out


# -- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/runs/get", {"run_id": "0" * 32}),
        ("GET", "/experiments/get", {"experiment_id": "987654"}),
        ("GET", "/experiments/get-by-name", {"experiment_name": "no such experiment"}),
        ("GET", "/metrics/get-history", {"run_id": "f" * 32, "metric_key": "m"}),
        ("GET", "/registered-models/get", {"name": "no-such-model"}),
        ("GET", "/model-versions/get", {"name": "no-such-model", "version": "1"}),
        ("GET", "/registered-models/alias", {"name": "no-such-model", "alias": "champion"}),
        ("GET", "/logged-models/m-0123456789abcdef", {}),
        ("POST", "/runs/log-batch", {"run_id": "a" * 32, "metrics": []}),
        ("POST", "/runs/update", {"run_id": "b" * 32, "status": "FINISHED"}),
        ("POST", "/experiments/delete", {"experiment_id": "987654"}),
    ],
)
def test_unknown_ids_are_404(
    http: httpx.Client, method: str, path: str, params: dict[str, Any]
) -> None:
    if method == "GET":
        r = http.get(API + path, params=params)
    else:
        r = http.request(method, API + path, json=params)
    error(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_unknown_endpoint(http: httpx.Client) -> None:
    msg = error(http.get(f"{API}/runs/no-such-thing"), 404, "ENDPOINT_NOT_FOUND")
    assert "/runs/no-such-thing" in msg
    error(http.get("/api/2.0/nothing/here"), 404, "ENDPOINT_NOT_FOUND")
    # A known path with the wrong method says so, in the same shape.
    msg = error(http.get(f"{API}/runs/log-batch"), 405, "ENDPOINT_NOT_FOUND")
    assert "GET" in msg


# -- invalid input, and nothing stored -------------------------------------------------------


def test_malformed_json(http: httpx.Client, unique: str) -> None:
    _, run_id = new_run(http, unique)
    r = http.post(
        f"{API}/runs/log-batch",
        content=b'{"run_id": "' + run_id.encode() + b'", "metrics": [',
        headers={"Content-Type": "application/json"},
    )
    assert "JSON" in error(r, 400, "INVALID_PARAMETER_VALUE")
    r = http.post(f"{API}/runs/log-batch", content=b"[1, 2]")
    assert "JSON object" in error(r, 400, "INVALID_PARAMETER_VALUE")
    assert run_data(http, run_id) == {"tags": run_data(http, run_id)["tags"]}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/runs/log-metric", {"key": "m", "value": "abc", "timestamp": 1}, "value"),
        ("/runs/log-metric", {"key": "m", "value": 1.0, "timestamp": "soon"}, "timestamp"),
        ("/runs/log-metric", {"key": "m", "value": 1.0}, "timestamp"),
        ("/runs/log-parameter", {"key": "p", "value": 5}, "value"),
        ("/runs/set-tag", {"key": ["k"], "value": "v"}, "key"),
        (
            "/runs/log-batch",
            {"metrics": [{"key": "m", "value": True, "timestamp": 1}]},
            "metrics[0].value",
        ),
        (
            "/runs/log-batch",
            {"metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 1.5}]},
            "metrics[0].step",
        ),
        ("/runs/log-batch", {"metrics": {"key": "m"}}, "metrics"),
        ("/runs/log-batch", {"params": [{"key": "p", "value": 1}]}, "params[0].value"),
        ("/runs/update", {"status": "DONE"}, "status"),
    ],
)
def test_wrong_field_types_name_the_field(
    http: httpx.Client, unique: str, path: str, body: dict[str, Any], field: str
) -> None:
    _, run_id = new_run(http, unique)
    before = run_data(http, run_id)
    r = http.post(API + path, json={"run_id": run_id, **body})
    assert f"'{field}'" in error(r, 400, "INVALID_PARAMETER_VALUE")
    assert run_data(http, run_id) == before


def test_wrong_query_types_name_the_field(http: httpx.Client) -> None:
    r = http.get(f"{API}/experiments/search", params={"max_results": "many"})
    assert "'max_results'" in error(r, 400, "INVALID_PARAMETER_VALUE")
    r = http.get(f"{API}/experiments/search", params={"view_type": "SOME"})
    assert "'view_type'" in error(r, 400, "INVALID_PARAMETER_VALUE")
    r = http.get(f"{API}/runs/get")
    assert "'run_id'" in error(r, 400, "INVALID_PARAMETER_VALUE")


def test_invalid_names(http: httpx.Client, unique: str) -> None:
    error(http.post(f"{API}/experiments/create", json={"name": ""}), 400, "INVALID_PARAMETER_VALUE")
    error(http.post(f"{API}/experiments/create", json={}), 400, "INVALID_PARAMETER_VALUE")
    _, run_id = new_run(http, unique)
    before = run_data(http, run_id)
    for key in ("bad*key", "../escape", "/abs", "x" * 251):
        r = http.post(
            f"{API}/runs/log-metric",
            json={"run_id": run_id, "key": key, "value": 1.0, "timestamp": 1},
        )
        error(r, 400, "INVALID_PARAMETER_VALUE")
        r = http.post(
            f"{API}/runs/log-parameter", json={"run_id": run_id, "key": key, "value": "v"}
        )
        error(r, 400, "INVALID_PARAMETER_VALUE")
    assert run_data(http, run_id) == before
    r = http.post(f"{API}/registered-models/create", json={"name": f"bad/{unique}"})
    error(r, 400, "INVALID_PARAMETER_VALUE")
    error(
        http.get(f"{API}/registered-models/get", params={"name": f"bad/{unique}"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


def test_over_long_param_is_refused_and_not_stored(http: httpx.Client, unique: str) -> None:
    _, run_id = new_run(http, unique)
    r = http.post(
        f"{API}/runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "x" * 6001}
    )
    assert "6000" in error(r, 400, "INVALID_PARAMETER_VALUE")
    assert "params" not in run_data(http, run_id)
    # At the limit it is fine.
    r = http.post(
        f"{API}/runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "x" * 6000}
    )
    assert r.status_code == 200, r.text


def test_changing_a_param_is_refused(http: httpx.Client, unique: str) -> None:
    _, run_id = new_run(http, unique)
    ok = http.post(
        f"{API}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}
    )
    assert ok.status_code == 200
    # The same value again is fine (idempotent retries).
    again = http.post(
        f"{API}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}
    )
    assert again.status_code == 200
    r = http.post(f"{API}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.2"})
    msg = error(r, 400, "INVALID_PARAMETER_VALUE")
    assert "lr" in msg and "0.1" in msg and "0.2" in msg
    # In a batch, the change sinks the whole batch.
    r = http.post(
        f"{API}/runs/log-batch",
        json={
            "run_id": run_id,
            "metrics": [{"key": "acc", "value": 0.5, "timestamp": 1, "step": 0}],
            "params": [{"key": "epochs", "value": "3"}, {"key": "lr", "value": "0.3"}],
            "tags": [{"key": "team", "value": "a"}],
        },
    )
    error(r, 400, "INVALID_PARAMETER_VALUE")
    data = run_data(http, run_id)
    assert data["params"] == [{"key": "lr", "value": "0.1"}]
    assert "metrics" not in data
    assert all(t["key"] != "team" for t in data["tags"])


def test_rejected_batch_stores_nothing(http: httpx.Client, unique: str) -> None:
    _, run_id = new_run(http, unique)
    good = [
        {"key": "loss", "value": 1.0 / (i + 1), "timestamp": 1000 + i, "step": i} for i in range(50)
    ]
    for bad in (
        {"key": "bad key!", "value": 1.0, "timestamp": 1, "step": 0},
        {"key": "loss", "value": "not a number", "timestamp": 1, "step": 0},
        {"key": "loss", "value": 1.0, "timestamp": 1, "step": "x"},
    ):
        r = http.post(
            f"{API}/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [*good, bad],
                "params": [{"key": "p1", "value": "v1"}],
                "tags": [{"key": "t1", "value": "v1"}],
            },
        )
        error(r, 400, "INVALID_PARAMETER_VALUE")
        data = run_data(http, run_id)
        assert "metrics" not in data and "params" not in data
        assert all(t["key"] != "t1" for t in data["tags"])
        assert history(http, run_id, "loss") == []
    # Over MLflow's limit of 1000 metrics per batch.
    many = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(1001)]
    error(
        http.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": many}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert history(http, run_id, "m") == []
    # The same batch without the bad metric goes through whole.
    r = http.post(
        f"{API}/runs/log-batch",
        json={"run_id": run_id, "metrics": good, "params": [{"key": "p1", "value": "v1"}]},
    )
    assert r.status_code == 200, r.text
    assert len(history(http, run_id, "loss")) == 50


def test_malformed_filter(http: httpx.Client, unique: str) -> None:
    eid, _ = new_run(http, unique)
    for bad in ("metrics.acc >>> 1", "params.lr = ", "nonsense", "metrics.acc > 'x' and"):
        r = http.post(f"{API}/runs/search", json={"experiment_ids": [eid], "filter": bad})
        error(r, 400, "INVALID_PARAMETER_VALUE")
    r = http.post(
        f"{API}/runs/search", json={"experiment_ids": [eid], "order_by": ["metrics.acc SIDEWAYS"]}
    )
    error(r, 400, "INVALID_PARAMETER_VALUE")
    r = http.get(f"{API}/registered-models/search", params={"filter": "name ~~ 'x'"})
    error(r, 400, "INVALID_PARAMETER_VALUE")


def test_conflicts_and_state(http: httpx.Client, unique: str) -> None:
    name = f"dup-{unique}"
    assert http.post(f"{API}/experiments/create", json={"name": name}).status_code == 200
    error(
        http.post(f"{API}/experiments/create", json={"name": name}), 409, "RESOURCE_ALREADY_EXISTS"
    )
    r = http.post(f"{API}/experiments/search", json={"filter": f"name = '{name}'"})
    assert len(r.json()["experiments"]) == 1

    _, run_id = new_run(http, unique)
    assert http.post(f"{API}/runs/delete", json={"run_id": run_id}).status_code == 200
    r = http.post(
        f"{API}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}
    )
    error(r, 400, "INVALID_STATE")
    assert http.post(f"{API}/runs/restore", json={"run_id": run_id}).status_code == 200
    r = http.post(
        f"{API}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}
    )
    assert r.status_code == 200


def test_errors_reach_the_stock_client(tracking_uri: str, unique: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    with pytest.raises(MlflowException) as exc:
        client.get_run("0" * 32)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment_by_name(f"missing-{unique}") is None
    eid = client.create_experiment(f"client-errors-{unique}")
    run = client.create_run(eid)
    client.log_param(run.info.run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as exc:
        client.log_param(run.info.run_id, "lr", "0.2")
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.create_experiment(f"client-errors-{unique}")
    assert exc.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_unexpected_errors_are_500_in_the_same_shape(tmp_path: Path) -> None:
    """A fault nothing anticipated (here: a table gone from under the server) is a 500
    INTERNAL_ERROR in the one shape, and its traceback is in the server log."""
    proc, srv = start_server(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            _, run_id = new_run(http, "broken")
            with sqlite3.connect(tmp_path / "opsloop.db") as db:
                db.execute("DROP TABLE latest_metrics")
            r = http.get(f"{API}/runs/get", params={"run_id": run_id})
            assert "server log" in error(r, 500, "INTERNAL_ERROR")
            # The server is still up and answers other requests.
            assert http.get("/health").text == "OK"
        deadline = time.monotonic() + 10
        while "Traceback" not in srv.log.read_text():
            assert time.monotonic() < deadline, srv.log.read_text()
            time.sleep(0.05)
        assert "latest_metrics" in srv.log.read_text()
    finally:
        stop_server(proc)
