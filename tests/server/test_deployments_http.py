"""``/api/v1/deployments`` through a real ``opsloop server`` on SQLite and PostgreSQL:
deployments, their history with who and why, labels in, predictions out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsloop.core.config import Settings
from opsloop.serving.predictions import PredictionWriter
from opsloop.store import Store
from tests.conftest import PG_BASE, missing_service, pg_schema_url
from tests.server.conftest import start_server, stop_server

V1 = "/api/v1"
ALICE = {"X-Opsloop-User": "alice"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_available: bool
) -> Iterator[tuple[httpx.Client, Store]]:
    """A server, and the same store opened in the test (to write a prediction log)."""
    home = tmp_path_factory.mktemp("deploy-server")
    if request.param == "postgres" and not pg_available:
        missing_service(f"PostgreSQL at {PG_BASE}")
    pg_url = pg_schema_url() if request.param == "postgres" else contextlib.nullcontext(None)
    with pg_url as pg:
        db_url = pg or f"sqlite:///{home / 'opsloop.db'}"
        env = {
            "OPSLOOP_DATABASE_URL": db_url,
            "OPSLOOP_ARTIFACTS": str(home / "artifacts"),
            "OPSLOOP_SCHEDULER": "0",
        }
        proc, srv = start_server(home, env_extra=env)
        store = Store(
            Settings(home=home, database_url=db_url, artifacts_url=env["OPSLOOP_ARTIFACTS"])
        )
        try:
            with httpx.Client(base_url=srv.url, timeout=30.0) as http:
                yield http, store
        finally:
            store.close()
            stop_server(proc)


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _error(r: httpx.Response, status: int, code: str, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code and words in body["message"], body


def _model(http: httpx.Client, name: str, versions: int = 3) -> None:
    _ok(http.post(f"{V1}/models", json={"name": name}), 201)
    for _ in range(versions):
        _ok(
            http.post(f"{V1}/models/{name}/versions", json={"source": "mlflow-artifacts:/0/x"}), 201
        )
    _ok(http.put(f"{V1}/models/{name}/aliases/production", json={"version": "1"}))


def test_deployments_over_http(deployed: tuple[httpx.Client, Store]) -> None:
    http, _ = deployed
    _model(http, "churn")
    body = {
        "name": "churn-api",
        "model": "models:/churn@production",
        "canary": 2,
        "canary_share": 25,
        "settings": {"max_batch_size": 16},
        "reason": "first release",
    }
    d = _ok(http.post(f"{V1}/deployments", json=body, headers=ALICE), 201)
    assert d["traffic"] == [{"version": 1, "share": 75.0}, {"version": 2, "share": 25.0}]
    assert d["model_uri"] == "models:/churn@production" and d["created_by"] == "alice"
    assert d["revision"] == 1

    _error(
        http.post(f"{V1}/deployments", json=body), 409, "RESOURCE_ALREADY_EXISTS", "already exists"
    )
    bad = [
        ({**body, "name": "b", "canary_share": 100}, 400, "between 0 and 100"),
        ({**body, "name": "b", "model": "models:/nope@production"}, 404, "'nope' does not exist"),
        ({**body, "name": "b", "settings": {"bogus": 1}}, 400, "unknown serving setting"),
        ({**body, "name": "b", "canary": "two"}, 400, "canary"),
        ({**body, "name": "b", "canary": 2, "shadow": 2}, 400, "than the canary"),
    ]
    for b, status, words in bad:
        r = http.post(f"{V1}/deployments", json=b)
        assert r.status_code == status and words in r.json()["message"], (b, r.text)
    assert [x["name"] for x in _ok(http.get(f"{V1}/deployments"))["items"]] == ["churn-api"]

    d = _ok(http.patch(f"{V1}/deployments/churn-api", json={"shadow": 3}))
    assert d["shadow_version"] == 3 and d["revision"] == 2
    _error(
        http.patch(f"{V1}/deployments/churn-api", json={"canary_share": 5, "expected_revision": 1}),
        409, "RESOURCE_ALREADY_EXISTS", "at revision 2, not 1",
    )  # fmt: skip
    d = _ok(http.patch(f"{V1}/deployments/churn-api", json={"canary": None, "shadow": None}))
    assert d["canary_version"] is None and d["shadow_version"] is None
    _error(http.post(f"{V1}/deployments/churn-api/promote"), 400, "INVALID_STATE", "no canary")
    _ok(http.patch(f"{V1}/deployments/churn-api", json={"canary": 3, "canary_share": 10}))
    r = _ok(http.get(f"{V1}/deployments/churn-api/resolve"))
    assert [(t["version"], t["share"], t["role"]) for t in r["served"]] == [
        (1, 90.0, "stable"), (3, 10.0, "canary"),
    ]  # fmt: skip
    assert r["settings"]["max_batch_size"] == 16 and r["settings"]["workers"] == 1

    d = _ok(
        http.post(f"{V1}/deployments/churn-api/promote", json={"reason": "v3 wins"}, headers=ALICE)
    )
    assert d["traffic"] == [{"version": 3, "share": 100.0}]
    assert _ok(http.get(f"{V1}/models/churn/aliases/production"))["version"] == "3"
    d = _ok(http.post(f"{V1}/deployments/churn-api/rollback", json={"reason": "v3 drifts"}))
    assert d["stable_version"] == 1
    assert _ok(http.get(f"{V1}/models/churn/aliases/production"))["version"] == "1"

    events = _ok(http.get(f"{V1}/deployments/churn-api/history"))["items"]
    assert [e["action"] for e in events] == [
        "rollback", "promote", "set_canary", "update", "update", "create",
    ]  # fmt: skip
    assert (events[0]["who"], events[0]["reason"]) == ("anonymous@127.0.0.1", "v3 drifts")
    assert (events[1]["who"], events[1]["reason"]) == ("alice", "v3 wins")
    assert events[0]["changes"]["stable_version"] == [3, 1]
    assert len(_ok(http.get(f"{V1}/deployments/churn-api/history?limit=2"))["items"]) == 2
    _error(http.get(f"{V1}/deployments/missing"), 404, "RESOURCE_DOES_NOT_EXIST", "'missing'")
    _error(http.post(f"{V1}/deployments/churn-api/rollback"), 400, "INVALID_STATE", "no previous")


def test_labels_in_predictions_out(deployed: tuple[httpx.Client, Store]) -> None:
    http, store = deployed
    _model(http, "fraud", versions=1)
    _ok(
        http.post(f"{V1}/deployments", json={"name": "fraud-api", "model": "fraud", "version": 1}),
        201,
    )
    t0 = float(int(time.time()) - 600)
    with PredictionWriter(store, start=False) as w:
        for i in range(5):
            w.log(
                "fraud-api", 1, f"r{i}", {"amount": 10.0 * i, "country": "DE"}, i % 2, 1.5, t0 + i
            )
    url = f"{V1}/deployments/fraud-api/predictions"
    got = _ok(http.get(url, params={"since": t0 + 1, "until": t0 + 4}))
    assert got["count"] == 3 and not got["truncated"]
    row = got["items"][0]
    assert row["request_id"] == "r1" and row["amount"] == 10.0 and row["prediction"] == 1
    assert row["timestamp"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(t0)))
    assert set(row) == {
        "request_id",
        "timestamp",
        "version",
        "latency_ms",
        "amount",
        "country",
        "prediction",
    }
    got = _ok(http.get(url, params={"limit": 2}))
    assert got["count"] == 2 and got["truncated"]

    stored = _ok(
        http.post(
            f"{V1}/deployments/fraud-api/labels",
            json={"request_ids": ["r1", "r2"], "labels": [1, 0]},
        ),
        201,
    )
    assert stored == {"stored": 2}
    got = _ok(http.get(url, params={"with_labels": "true", "since": t0}))
    assert [r["label"] for r in got["items"]] == [None, 1, 0, None, None]

    _error(
        http.post(f"{V1}/deployments/fraud-api/labels", json={"request_ids": ["r1"], "labels": [1, 0]}),
        400, "INVALID_PARAMETER_VALUE", "one length",
    )  # fmt: skip
    _error(
        http.post(f"{V1}/deployments/fraud-api/labels", json={"request_ids": [], "labels": []}),
        400, "INVALID_PARAMETER_VALUE", "request_ids",
    )  # fmt: skip
    _error(
        http.post(f"{V1}/deployments/nope/labels", json={"request_ids": ["r1"], "labels": [1]}),
        404, "RESOURCE_DOES_NOT_EXIST", "'nope'",
    )  # fmt: skip
    _error(
        http.get(url, params={"since": "last tuesday"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "not a time",
    )
    _error(http.get(f"{V1}/deployments/nope/predictions"), 404, "RESOURCE_DOES_NOT_EXIST", "'nope'")
