"""``opsloop serve DEPLOYMENT`` end to end: a real server process serving a deployment
with a stable version, a 50% canary and a shadow (LogisticRegressions on breast_cancer,
registered with ``opsloop.log_model``); requests split by request id, every answer (the
shadow's too) in the prediction log, a promote picked up without a failed request, a
version that fails to load reported while the old ones serve on, SIGTERM flushing the log.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from tests.serving.serve_helpers import metric, start_serve, stop_serve, wait_for

NAME = "cancer-api"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store (this process's default one for the module) with ``cancer`` v1..v3 (v1 at
    @prod, three LogisticRegressions that differ in C), a v4 whose files do not exist, and
    the deployment: stable @prod, canary v2 at 50%, shadow v3."""
    import opsloop
    from opsloop.registry.service import RegistryService
    from opsloop.serving import deploy
    from opsloop.store import default_store, reset_default_store

    home = tmp_path_factory.mktemp("deploy-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSLOOP_HOME", str(home))
        mp.delenv("OPSLOOP_DATABASE_URL", raising=False)
        mp.delenv("OPSLOOP_ARTIFACTS", raising=False)
        reset_default_store()
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        with opsloop.start_run(experiment="serving"):
            for i, c in enumerate((1.0, 0.01, 0.001)):
                clf = LogisticRegression(C=c, max_iter=5000).fit(X, y)
                mv = opsloop.log_model(
                    clf, "cancer", input_example=X.head(2), alias="prod" if i == 0 else None
                )
                assert mv.version == str(i + 1)
        RegistryService(default_store()).create_model_version(
            "cancer", "mlflow-artifacts:/0/missing", flavor="sklearn", signature="{}"
        )
        deploy(
            NAME,
            "models:/cancer@prod",
            canary=2,
            canary_share=50,
            shadow=3,
            settings={"log_flush_interval_s": 0.3},
            reason="test",
        )
        try:
            yield home
        finally:
            reset_default_store()


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    X, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    return X


def _v2(rows: pd.DataFrame, i: int, rid: str | None = None) -> dict[str, Any]:
    row = rows.iloc[i % len(rows)].tolist()
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": row}]
    }
    if rid is not None:
        body["id"] = rid
    return body


def _split(rows: pd.DataFrame, i: int) -> dict[str, Any]:
    return {"dataframe_split": rows.iloc[[i % len(rows)]].to_dict(orient="split")}


def test_deployment_split_shadow_log_swap_and_sigterm(
    home: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    from opsloop.serving import predictions
    from opsloop.serving.deployments import DeploymentService
    from opsloop.store import default_store

    svc = DeploymentService(default_store())
    resolved = svc.resolve(NAME)
    since = time.time() - 1
    served = start_serve(
        [NAME, "--poll-interval", "0.2"], tmp_path / "serve.log", {"OPSLOOP_HOME": str(home)}
    )
    try:
        client = httpx.Client(base_url=served.url, timeout=10)
        meta = client.get(f"/v2/models/{NAME}").json()
        assert meta["name"] == NAME and meta["versions"] == ["1", "2", "3"]
        assert meta["parameters"]["traffic"] == {"1": 50.0, "2": 50.0}
        assert meta["parameters"]["shadow"] == "3"

        # The split, by request id: the V2 id, the X-Request-Id header, or a new one.
        expected: dict[str, int] = {}
        for i in range(24):
            rid = f"v2-{i}"
            r = client.post(f"/v2/models/{NAME}/infer", json=_v2(rows, i, rid))
            assert r.status_code == 200, r.text
            want = resolved.route(rid).version
            assert r.json()["id"] == rid and r.json()["model_version"] == str(want)
            assert r.headers["x-request-id"] == rid
            expected[rid] = want
        for i in range(24):
            rid = f"inv-{i}"
            r = client.post("/invocations", json=_split(rows, i), headers={"X-Request-Id": rid})
            assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text
            expected[rid] = resolved.route(rid).version
            assert r.headers["x-model-version"] == str(expected[rid])  # who answered
        # Errors carry the request id too (they are not logged).
        for path, body in (("/invocations", {"rows": 1}), (f"/v2/models/{NAME}/infer", {})):
            r = client.post(path, json=body, headers={"X-Request-Id": "bad-1"})
            assert r.status_code == 400 and r.headers["x-request-id"] == "bad-1", r.text
            r = client.post(path, json=body)
            assert r.status_code == 400 and len(r.headers["x-request-id"]) == 32
        # /metrics: per deployment and version, requests, errors, latency, batch sizes,
        # queue depth.
        text = client.get("/metrics").text
        for v in ("1", "2"):
            labels = {"model": NAME, "version": v}
            assert metric(text, "opsloop_serving_requests_total", code="200", **labels) > 0
            assert metric(text, "opsloop_serving_request_seconds_count", **labels) > 0
            assert metric(text, "opsloop_serving_batch_size_count", **labels) > 0
            assert f'opsloop_serving_queue_depth{{model="{NAME}",version="{v}"}}' in text
        assert metric(text, "opsloop_serving_errors_total", model=NAME, kind="input") == 4
        r = client.post(f"/v2/models/{NAME}/infer", json=_v2(rows, 0))
        generated = r.headers["x-request-id"]
        assert len(generated) == 32 and r.json()["id"] == generated
        expected[generated] = int(r.json()["model_version"])
        assert set(expected.values()) == {1, 2}  # both versions served
        # A version's own endpoint, the shadow's included.
        r = client.post(f"/v2/models/{NAME}/versions/3/infer", json=_v2(rows, 1, "pinned"))
        assert r.status_code == 200 and r.json()["model_version"] == "3"
        expected["pinned"] = 3

        # Every answer in the log after a flush interval; the shadow's apart.
        def logged() -> pd.DataFrame:
            return predictions(NAME, since=since, shadow=None)

        wait_for(lambda: len(logged()) >= 2 * len(expected) - 1, 10, "the prediction log")
        df = logged()
        main, shadow = df[~df["shadow"]], df[df["shadow"]]
        assert dict(zip(main["request_id"], main["version"], strict=True)) == expected
        assert set(shadow["version"]) == {3}
        assert set(shadow["request_id"]) == set(expected) - {"pinned"}
        assert (main["latency_ms"] > 0).all()
        one = main[main["request_id"] == "inv-3"].iloc[0]
        assert one["mean radius"] == rows.iloc[3]["mean radius"] and one["prediction"] in (0, 1)

        # A promote is picked up by the running server with no failed request.
        failures: list[str] = []
        versions: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=served.url, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    resp = c.post(f"/v2/models/{NAME}/infer", json=_v2(rows, i, f"swap-{i}"))
                    if resp.status_code != 200:
                        failures.append(resp.text)
                    else:
                        versions.append(resp.json()["model_version"])

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            time.sleep(0.3)
            svc.promote(NAME, reason="v2 wins")
            wait_for(
                lambda: (
                    client.get(f"/v2/models/{NAME}").json()["parameters"]["traffic"] == {"2": 100.0}
                ),
                10,
                "the promote",
            )
            n = len(versions)
            wait_for(lambda: len(versions) > n + 20, 10, "traffic after the promote")
        finally:
            stop.set()
            worker.join()
        assert not failures, failures[:3]
        assert "1" in versions and versions[-20:] == ["2"] * 20

        # A version that fails to load: reported, and the old ones serve on.
        svc.update(NAME, canary=4, canary_share=50, reason="a broken version")
        wait_for(
            lambda: "4" in client.get(f"/v2/models/{NAME}").json()["parameters"]["load_errors"],
            10,
            "the load error",
        )
        assert metric(client.get("/metrics").text, "opsloop_serving_load_errors", version="4") == 1
        for i in range(10):
            r = client.post("/invocations", json=_split(rows, i), headers={"X-Request-Id": f"b{i}"})
            assert r.status_code == 200, r.text
        assert "version 4 failed to load" in served.logs()
        from opsloop.store import default_store
        from opsloop.store.events import list_events

        wait_for(
            lambda: bool(list_events(default_store().db, kind="deployment.load_failed")),
            10,
            "the load failure event",
        )
        (event,) = list_events(default_store().db, kind="deployment.load_failed", subject=NAME)
        assert event.severity == "critical" and "4" in event.payload["errors"], event

        # A good revision clears the error; its flush interval applies to the running log.
        svc.update(NAME, canary=None, settings={"log_flush_interval_s": 60}, reason="fixed")
        wait_for(
            lambda: client.get(f"/v2/models/{NAME}").json()["parameters"]["load_errors"] == {},
            10,
            "the fixed revision",
        )
        assert metric(client.get("/metrics").text, "opsloop_serving_load_errors", version="4") == 0
        time.sleep(0.5)  # the writer's 0.3 s wait ends; the next one is 60 s

        # SIGTERM flushes what is buffered.
        for i in range(5):
            r = client.post(
                "/invocations", json=_split(rows, i), headers={"X-Request-Id": f"last-{i}"}
            )
            assert r.status_code == 200
        time.sleep(0.5)
        assert "last-0" not in set(predictions(NAME, since=since)["request_id"])
        client.close()
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(15) in (0, -signal.SIGTERM)
        last = predictions(NAME, since=since)
        assert {f"last-{i}" for i in range(5)} <= set(last["request_id"])
    finally:
        stop_serve(served)


def test_serve_unknown_name_says_so(home: Path) -> None:
    from typer.testing import CliRunner

    from opsloop.cli.main import app
    from opsloop.errors import NotFound

    result = CliRunner().invoke(app, ["serve", "nope"])
    assert isinstance(result.exception, NotFound)
    assert "'nope' is neither a deployment" in result.exception.message
