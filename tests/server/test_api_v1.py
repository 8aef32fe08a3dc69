"""opsloop's own REST API (``/api/v1``) and its OpenAPI description, over real HTTP."""

from __future__ import annotations

import httpx

V1 = "/api/v1"


def test_openapi_and_docs_are_served(http: httpx.Client) -> None:
    r = http.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["info"]["title"] == "opsloop"
    paths = spec["paths"]
    for path in (
        "/api/v1/experiments",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}/batch",
        "/api/v1/runs/search",
        "/api/v1/models/{name}/aliases/{alias}",
    ):
        assert path in paths, path
    # MLflow's protocol is served but not described here.
    assert not any(p.startswith("/api/2.0") for p in paths)
    batch = paths["/api/v1/runs/{run_id}/batch"]["post"]
    assert "requestBody" in batch
    # Errors are documented as served: 400/404/409 in the one shape, no FastAPI 422.
    assert set(batch["responses"]) >= {"400", "404"} and "422" not in batch["responses"]
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {"error_code", "message"}
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_health_and_version(http: httpx.Client) -> None:
    assert http.get("/health").text == "OK"
    version = http.get("/version")
    assert version.status_code == 200 and version.text[0].isdigit()


def test_experiments_and_runs(http: httpx.Client, unique: str) -> None:
    r = http.post(f"{V1}/experiments", json={"name": f"v1-{unique}", "tags": {"team": "a"}})
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["tags"] == {"team": "a"} and exp["lifecycle_stage"] == "active"
    eid = exp["experiment_id"]
    assert http.get(f"{V1}/experiments/{eid}").json()["name"] == f"v1-{unique}"
    assert http.get(f"{V1}/experiments/by-name/v1-{unique}").json()["experiment_id"] == eid
    renamed = http.patch(f"{V1}/experiments/{eid}", json={"name": f"v1b-{unique}"})
    assert renamed.status_code == 200 and renamed.json()["name"] == f"v1b-{unique}"
    assert http.put(f"{V1}/experiments/{eid}/tags/owner", json={"value": "me"}).status_code == 204
    assert http.get(f"{V1}/experiments/{eid}").json()["tags"] == {"team": "a", "owner": "me"}

    r = http.post(f"{V1}/runs", json={"experiment_id": eid, "name": "first", "tags": {"k": "v"}})
    assert r.status_code == 201, r.text
    run = r.json()
    run_id = run["run_id"]
    assert run["name"] == "first" and run["status"] == "RUNNING"
    child = http.post(f"{V1}/runs", json={"experiment_id": eid, "parent_run_id": run_id}).json()
    assert child["parent_run_id"] == run_id

    assert (
        http.post(f"{V1}/runs/{run_id}/metrics", json={"key": "acc", "value": 0.5}).status_code
        == 204
    )
    assert (
        http.post(f"{V1}/runs/{run_id}/params", json={"key": "lr", "value": "0.1"}).status_code
        == 204
    )
    r = http.post(
        f"{V1}/runs/{run_id}/batch",
        json={
            "metrics": [
                {"key": "acc", "value": 0.9, "step": 1, "timestamp": 10},
                {"key": "bad", "value": "NaN", "step": 0},
                {"key": "big", "value": "Infinity"},
            ],
            "params": {"epochs": "3"},
            "tags": {"stage": "dev"},
        },
    )
    assert r.status_code == 204, r.text
    assert http.put(f"{V1}/runs/{run_id}/tags/gone", json={"value": "x"}).status_code == 204
    assert http.delete(f"{V1}/runs/{run_id}/tags/gone").status_code == 204

    got = http.get(f"{V1}/runs/{run_id}").json()
    assert got["params"] == {"lr": "0.1", "epochs": "3"}
    assert got["tags"]["stage"] == "dev" and "gone" not in got["tags"]
    latest = {m["key"]: m["value"] for m in got["metrics"]}
    assert latest["acc"] == 0.9 and latest["bad"] == "NaN" and latest["big"] == "Infinity"

    hist = http.get(f"{V1}/runs/{run_id}/metrics/acc/history").json()
    assert [(m["step"], m["value"]) for m in hist["items"]] == [(0, 0.5), (1, 0.9)]
    assert hist["next_page_token"] is None
    page = http.get(f"{V1}/runs/{run_id}/metrics/acc/history", params={"max_results": 1}).json()
    assert len(page["items"]) == 1 and page["next_page_token"]

    done = http.patch(f"{V1}/runs/{run_id}", json={"status": "FINISHED"}).json()
    assert done["status"] == "FINISHED" and done["end_time"] is not None

    found = http.post(
        f"{V1}/runs/search",
        json={"experiment_ids": [eid], "filter": "metrics.acc > 0.8", "order_by": ["start_time"]},
    )
    assert found.status_code == 200, found.text
    assert [r["run_id"] for r in found.json()["items"]] == [run_id]

    assert http.delete(f"{V1}/runs/{run_id}").status_code == 204
    assert http.get(f"{V1}/runs/{run_id}").json()["lifecycle_stage"] == "deleted"
    assert http.post(f"{V1}/runs/{run_id}/restore").json()["lifecycle_stage"] == "active"
    listed = http.get(f"{V1}/experiments", params={"filter": f"name = 'v1b-{unique}'"}).json()
    assert [e["experiment_id"] for e in listed["items"]] == [eid]


def test_artifacts(http: httpx.Client, unique: str) -> None:
    eid = http.post(f"{V1}/experiments", json={"name": f"v1-art-{unique}"}).json()["experiment_id"]
    run_id = http.post(f"{V1}/runs", json={"experiment_id": eid}).json()["run_id"]
    r = http.put(f"{V1}/runs/{run_id}/artifacts/out/model.bin", content=b"\x00\x01\x02")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "out/model.bin", "is_dir": False, "size": 3}
    assert http.get(f"{V1}/runs/{run_id}/artifacts").json() == [
        {"path": "out", "is_dir": True, "size": None}
    ]
    assert http.get(f"{V1}/runs/{run_id}/artifacts", params={"path": "out"}).json() == [
        {"path": "out/model.bin", "is_dir": False, "size": 3}
    ]
    assert http.get(f"{V1}/runs/{run_id}/artifacts/out/model.bin").content == b"\x00\x01\x02"
    # The same bytes are what the MLflow proxy serves for the run.
    proxied = http.get(
        f"/api/2.0/mlflow-artifacts/artifacts/{eid}/{run_id}/artifacts/out/model.bin"
    )
    assert proxied.content == b"\x00\x01\x02"
    bad = http.get(f"{V1}/runs/{run_id}/artifacts", params={"path": "../../x"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert http.delete(f"{V1}/runs/{run_id}/artifacts/out").status_code == 204
    assert http.get(f"{V1}/runs/{run_id}/artifacts/out/model.bin").status_code == 404


def test_registry(http: httpx.Client, unique: str) -> None:
    name = f"v1-model-{unique}"
    eid = http.post(f"{V1}/experiments", json={"name": f"v1-reg-{unique}"}).json()["experiment_id"]
    run_id = http.post(f"{V1}/runs", json={"experiment_id": eid}).json()["run_id"]
    r = http.post(f"{V1}/models", json={"name": name, "description": "d", "tags": {"t": "1"}})
    assert r.status_code == 201, r.text
    source = f"mlflow-artifacts:/{eid}/{run_id}/artifacts/model"
    v1 = http.post(f"{V1}/models/{name}/versions", json={"source": source, "run_id": run_id})
    assert v1.status_code == 201, v1.text
    assert v1.json()["version"] == "1" and v1.json()["run_id"] == run_id
    v2 = http.post(f"{V1}/models/{name}/versions", json={"source": source}).json()
    assert v2["version"] == "2"

    alias = http.put(f"{V1}/models/{name}/aliases/champion", json={"version": "1"})
    assert alias.status_code == 200 and alias.json()["version"] == "1"
    assert http.get(f"{V1}/models/{name}/aliases/champion").json()["aliases"] == ["champion"]
    http.put(f"{V1}/models/{name}/aliases/champion", json={"version": "2"})
    assert http.get(f"{V1}/models/{name}/aliases/champion").json()["version"] == "2"

    staged = http.patch(
        f"{V1}/models/{name}/versions/1", json={"stage": "Production", "description": "best"}
    ).json()
    assert staged["current_stage"] == "Production" and staged["description"] == "best"
    assert (
        http.put(f"{V1}/models/{name}/versions/1/tags/ok", json={"value": "y"}).status_code == 204
    )
    assert http.get(f"{V1}/models/{name}/versions/1").json()["tags"] == {"ok": "y"}
    uri = http.get(f"{V1}/models/{name}/versions/1/download-uri").json()["artifact_uri"]
    assert uri == source

    model = http.get(f"{V1}/models/{name}").json()
    assert model["aliases"] == {"champion": "2"} and model["tags"] == {"t": "1"}
    versions = http.get(f"{V1}/models/{name}/versions").json()["items"]
    assert sorted(v["version"] for v in versions) == ["1", "2"]
    assert [
        m["name"]
        for m in http.get(f"{V1}/models", params={"filter": f"name = '{name}'"}).json()["items"]
    ] == [name]

    assert http.delete(f"{V1}/models/{name}/aliases/champion").status_code == 204
    gone = http.get(f"{V1}/models/{name}/aliases/champion")
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert http.delete(f"{V1}/models/{name}/versions/2").status_code == 204
    assert http.delete(f"{V1}/models/{name}").status_code == 204
    assert http.get(f"{V1}/models/{name}").status_code == 404


def test_errors_have_the_one_shape(http: httpx.Client) -> None:
    r = http.get(f"{V1}/runs/{'0' * 32}")
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = http.post(f"{V1}/experiments", json={"nam": "typo"})
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "name" in body["message"] and "nam" in body["message"]
    r = http.post(
        f"{V1}/experiments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = http.post(f"{V1}/runs/{'0' * 32}/metrics", json={"key": "m", "value": "high"})
    assert r.status_code == 400 and "value" in r.json()["message"]
    r = http.get(f"{V1}/nothing")
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"
