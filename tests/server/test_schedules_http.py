"""Schedules through a real ``opsloop server``: its scheduler runs a pipeline of a
module in the test's folder when another process registers a dataset version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from opsloop.core.config import Settings
from opsloop.data import DatasetService
from opsloop.store import Store
from opsloop.store.tables import scheduler_leases
from tests.pipelines.schedule_flows import wait_until, write_flows
from tests.server.conftest import start_server, stop_server

V1 = "/api/v1/schedules"


def _error(r: httpx.Response, status: int, code: str, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code and words in body["message"], body


def _fires(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    r = http.get(f"{V1}/{name}/fires")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _ended(http: httpx.Client, name: str, count: int) -> bool:
    items = _fires(http, name)
    return len(items) >= count and items[0]["status"] in ("finished", "failed")


def test_the_server_runs_a_pipeline_on_a_new_dataset_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "proj"
    write_flows(work)
    out = tmp_path / "out"
    out.mkdir()
    proc, srv = start_server(home, env_extra={"OPSLOOP_SCHEDULER_INTERVAL": "0.1"})
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'opsloop.db'}",
        artifacts_url=str(home / "artifacts"),
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as http:
            good = {
                "name": "on-sensors",
                "target": "flows:good",
                "on_dataset": "sensors",
                "params": {"n": 4, "out": str(out)},
                "options": {"executor": "inline"},
                "workdir": str(work),
            }
            bad: list[tuple[dict[str, Any], str]] = [
                ({"cron": "0 25 * * *"}, "the hour field '25'"),
                ({"on_dataset": ""}, "on_dataset must name a dataset"),
                ({"target": "flows"}, "is not MODULE:PIPELINE"),
                ({"max_active": 0}, "max_active"),
                ({"schedule": "@daily"}, "schedule"),  # no such field
                ({"options": {"executor": 3}}, "'executor' must be a non-empty string"),
            ]
            for change, words in bad:
                _error(
                    http.post(V1, json={**good, **change}), 400, "INVALID_PARAMETER_VALUE", words
                )
            assert http.get(V1).json()["items"] == []  # nothing was stored

            created = http.post(V1, json=good)
            assert created.status_code == 201, created.text
            assert created.json()["dataset_version"] == 0
            _error(http.post(V1, json=good), 409, "RESOURCE_ALREADY_EXISTS", "already exists")
            _error(http.get(f"{V1}/nope"), 404, "RESOURCE_DOES_NOT_EXIST", "no schedule")
            _error(http.post(f"{V1}/nope/trigger"), 404, "RESOURCE_DOES_NOT_EXIST", "nope")

            # Another process (this one) registers a version: the server's scheduler sees it.
            store = Store(settings)
            try:
                DatasetService(store).register(pd.DataFrame({"x": [1.0, 2.0]}), "sensors")
            finally:
                store.close()
            wait_until(lambda: _ended(http, "on-sensors", 1), timeout=60, every=0.1)
            (fire,) = _fires(http, "on-sensors")
            assert fire["status"] == "finished", fire
            assert fire["reason"] == "dataset:sensors@1"
            run = http.get(f"/api/v1/runs/{fire['run_id']}")
            assert run.status_code == 200 and run.json()["status"] == "FINISHED"
            seen = json.loads((out / f"fire-{fire['fire_id']}.json").read_text())
            assert seen["sum"] == 6 and seen["OPSLOOP_TRIGGER_DATASET"] == "sensors@1"

            # A manual trigger with other params; the trigger wakes the scheduler.
            r = http.post(f"{V1}/on-sensors/trigger", json={"params": {"n": 5}})
            assert r.status_code == 202 and r.json()["status"] == "queued", r.text
            wait_until(lambda: _ended(http, "on-sensors", 2), timeout=60, every=0.1)
            latest = _fires(http, "on-sensors")[0]
            assert (latest["reason"], latest["status"]) == ("manual", "finished")
            assert latest["params"] == {"n": 5, "out": str(out)}

            listed = http.get(V1).json()["items"]
            assert [s["name"] for s in listed] == ["on-sensors"]
            assert listed[0]["last_fire"]["fire_id"] == latest["fire_id"]
            assert http.post(f"{V1}/on-sensors/pause").json()["enabled"] is False
            assert http.post(f"{V1}/on-sensors/resume").json()["enabled"] is True
            assert "/api/v1/schedules/{name}/fires" in http.get("/openapi.json").json()["paths"]
            assert http.delete(f"{V1}/on-sensors").status_code == 204
            assert http.get(f"{V1}/on-sensors").status_code == 404
    finally:
        stop_server(proc)
    # The server gave up its leases on the way out (the pipeline scheduler's and those of
    # its other background services): another can take over at once.
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        leases = {r.name: r for r in conn.execute(sa.select(scheduler_leases))}
    engine.dispose()
    assert "scheduler" in leases, leases
    for lease in leases.values():
        assert lease.expires_time == 0 and lease.holder, lease
