"""Random malformed requests to every MLflow endpoint: never a 500, always one error shape."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from opsloop.server.mlflow_compat.registry import ROUTES as REGISTRY_ROUTES
from opsloop.server.mlflow_compat.tracking import ROUTES as TRACKING_ROUTES

FIELDS = [
    "name", "experiment_id", "run_id", "run_uuid", "key", "value", "timestamp", "step",
    "metrics", "params", "tags", "filter", "order_by", "max_results", "page_token",
    "view_type", "run_view_type", "experiment_ids", "metric_key", "version", "alias",
    "new_name", "description", "source", "status", "end_time", "datasets", "models",
    "path", "stages", "stage", "model_id",
]  # fmt: skip


def test_no_request_breaks_the_server(http: httpx.Client, unique: str) -> None:
    rng = random.Random(20261123)
    api = "/api/2.0/mlflow"
    exp = http.post(f"{api}/experiments/create", json={"name": f"fz-{unique}"}).json()[
        "experiment_id"
    ]
    run = http.post(f"{api}/runs/create", json={"experiment_id": exp}).json()["run"]["info"][
        "run_id"
    ]
    http.post(f"{api}/registered-models/create", json={"name": f"fzm-{unique}"})
    values: list[Any] = [
        None, "", "x", "0", "-1", 0, -1, 1.5, 10**30, True, [], {}, [1, "a"], {"a": 1},
        "NaN", "../x", "a" * 7000, "\x00", "é✓", exp, run, f"fzm-{unique}", "1",
        "metrics.a > 1", "tags.`x` = 'y'", "params.p = ", "ACTIVE_ONLY", float("inf"),
    ]  # fmt: skip
    failures = []
    for method, path, _ in TRACKING_ROUTES + REGISTRY_ROUTES:
        for _ in range(20):
            body = {f: rng.choice(values) for f in rng.sample(FIELDS, rng.randint(0, 6))}
            if rng.random() < 0.3:
                body["metrics"] = [
                    {
                        rng.choice(["key", "value", "timestamp", "step"]): rng.choice(values)
                        for _ in range(3)
                    }
                    for _ in range(2)
                ]
            url = api + path.replace("{", "").replace("}", "")
            if method == "GET":
                params = [
                    (
                        k,
                        json.dumps(v)
                        if isinstance(v, list | dict)
                        else ("" if v is None else str(v)),
                    )
                    for k, v in body.items()
                ]
                r = http.request(method, url, params=params)
            else:
                r = http.request(method, url, content=json.dumps(body, allow_nan=True))
            shape_ok = r.status_code < 400 or {"error_code", "message"} <= set(r.json())
            if r.status_code >= 500 or not shape_ok:
                failures.append((r.status_code, method, path, json.dumps(body)[:200], r.text[:200]))
    assert not failures, failures[:5]
    assert http.get("/health").text == "OK"
