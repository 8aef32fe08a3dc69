"""Monitors through a real ``opsloop server``: created over HTTP, run on time by the
server's monitor scheduler over a drifted prediction log, the alert an event; errors
in the one shape."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from opsloop.core.config import Settings
from opsloop.data import DatasetService
from opsloop.serving.predictions import PredictionWriter
from opsloop.store import Store
from tests.server.conftest import start_server, stop_server

V1 = "/api/v1/monitors"


def _error(r: httpx.Response, status: int, code: str, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code and words in body["message"], body


def wait_until(what: str, cond: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _prepare(home: Path) -> None:
    """A reference dataset and a drifted hour of the prediction log, in the server's store."""
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'opsloop.db'}",
        artifacts_url=str(home / "artifacts"),
    )
    store = Store(settings)
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"temp": rng.normal(20, 2, 1000), "site": rng.choice(["a", "b"], 1000)})
    DatasetService(store).register(ref, "sensors")
    now = time.time()
    with PredictionWriter(store, start=False) as w:
        for i in range(300):
            w.log("sensor-model", 1, f"r{i}",
                  {"temp": float(rng.normal(26, 2)), "site": str(rng.choice(["a", "b"]))},
                  0.5, 1.0, now - 1800 + i)  # fmt: skip
        w.flush()
    store.close()


def test_the_server_runs_a_due_monitor_and_raises_the_alert(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _prepare(home)
    proc, srv = start_server(home, env_extra={"OPSLOOP_MONITOR_INTERVAL": "0.1"})
    try:
        with httpx.Client(base_url=srv.url, timeout=60.0) as http:
            _error(http.post(V1, json={"name": "m", "reference": "sensors@1",
                                       "deployment": "sensor-model", "every": "soon"}),
                   400, "INVALID_PARAMETER_VALUE", "not a duration")  # fmt: skip
            _error(http.post(V1, json={"name": "m", "reference": "sensors@7",
                                       "deployment": "sensor-model"}),
                   404, "RESOURCE_DOES_NOT_EXIST", "sensors")  # fmt: skip
            _error(http.post(V1, json={"name": "m", "reference": "sensors@1"}),
                   404, "RESOURCE_DOES_NOT_EXIST", "deployment 'm'")  # fmt: skip
            _error(http.get(f"{V1}/nope"), 404, "RESOURCE_DOES_NOT_EXIST", "nope")
            r = http.post(V1, json={"name": "m", "reference": "sensors@1",
                                    "deployment": "sensor-model", "every": "1s",
                                    "window": "1h", "multivariate": False})  # fmt: skip
            assert r.status_code == 201, r.text
            assert r.json()["checks"] == ["input_drift", "quality", "performance"]
            _error(http.post(V1, json={"name": "m", "reference": "sensors@1",
                                       "deployment": "sensor-model"}),
                   409, "RESOURCE_ALREADY_EXISTS", "already exists")  # fmt: skip

            def scheduled() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = http.get(f"{V1}/m/runs").json()["items"]
                return [i for i in items if i["trigger"] == "scheduled"]

            run = wait_until("a scheduled run", scheduled)[-1]
            assert run["status"] == "alert" and "temp" in run["message"], run
            events = http.get("/api/v1/events", params={"kind": "monitor.alert"}).json()["items"]
            mine = [e for e in events if e["event_id"] == run["event_id"]]
            assert mine and mine[0]["payload"]["drifted_columns"] == ["temp"]
            assert mine[0]["subject"] == "sensor-model" and mine[0]["source"] == "monitor:m"
            res = http.get(f"{V1}/m/results", params={"check": "input_drift",
                                                      "signal": "temp"}).json()["items"]  # fmt: skip
            assert res and res[0]["alert"] and res[0]["value"] > 0
            assert http.post(f"{V1}/m/pause").json()["enabled"] is False
            now = http.post(f"{V1}/m/run").json()
            assert now["trigger"] == "manual" and now["status"] == "alert"
            assert [m["name"] for m in http.get(V1).json()["items"]] == ["m"]
            assert http.delete(f"{V1}/m").status_code == 204
            _error(http.get(f"{V1}/m/results"), 404, "RESOURCE_DOES_NOT_EXIST", "'m'")
    finally:
        stop_server(proc)
