"""Models the stock ``mlflow`` client saved serve like opsloop's own: scikit-learn in
cloudpickle, and a ``PythonModel`` pyfunc.

The app runs in-process behind httpx's ASGI transport, but for one ``opsloop serve PATH``
process of a folder the stock client saved (the server process is covered in
test_serve.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from opsloop.serving.app import ServingApp
from opsloop.serving.model import load

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:mlflow.*")


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["a"] * 2


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})


def ask(app: ServingApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


# skops, MLflow's default, is served in test_serve.py from a model the stock client logged.
@pytest.mark.parametrize("fmt", ["cloudpickle"])
def test_mlflow_sklearn_models_serve(fmt: str, frame: pd.DataFrame, tmp_path: Path) -> None:
    import mlflow.sklearn

    clf = LogisticRegression().fit(frame, [0, 0, 1, 1])
    path = tmp_path / f"clf-{fmt}"
    mlflow.sklearn.save_model(clf, str(path), serialization_format=fmt, input_example=frame.head(2))
    model = load(path)
    assert model.platform == "mlflow_sklearn" and model.name == f"clf-{fmt}"
    app = ServingApp([model])
    body = {"dataframe_split": frame.to_dict(orient="split")}
    r = ask(app, "POST", "/invocations", json=body)
    assert r.status_code == 200 and r.json() == {"predictions": clf.predict(frame).tolist()}
    meta = ask(app, "GET", f"/v2/models/clf-{fmt}").json()
    assert [i["name"] for i in meta["inputs"]] == ["a", "b"]
    r = ask(app, "POST", "/invocations", json={"dataframe_records": [{"a": "x", "b": 1.0}]})
    assert r.status_code == 400 and "'a'" in r.json()["error"]


def test_mlflow_python_model_serves(frame: pd.DataFrame, tmp_path: Path) -> None:
    import mlflow.pyfunc

    path = tmp_path / "doubler"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Doubler(),
        input_example=frame.head(2),
        pip_requirements=["mlflow"],  # mlflow's requirement inference is slow and not under test
    )
    model = load(path)
    assert model.platform == "mlflow_pyfunc"
    app = ServingApp([model])
    r = ask(
        app,
        "POST",
        "/v2/models/doubler/infer",
        json={
            "inputs": [
                {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.0]},
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [0.0, 1.0]},
            ]
        },
    )
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["data"] == [3.0, 4.0] and out["shape"] == [2]
    np.testing.assert_allclose(
        ask(app, "POST", "/invocations", json={"instances": [[1.0, 0.0]]}).json()["predictions"],
        [2.0],
    )


def test_opsloop_serve_path_of_a_folder_the_stock_client_saved(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    """``opsloop serve PATH`` of a local MLmodel folder, as ``mlflow models serve -m PATH``;
    at the default body limit a 100 MB body gets a 413 saying so, and the server goes on."""
    import mlflow.sklearn

    from tests.serving.serve_helpers import start_serve, stop_serve

    clf = LogisticRegression().fit(frame, [0, 0, 1, 1])
    path = tmp_path / "clf-folder"
    mlflow.sklearn.save_model(
        clf, str(path), serialization_format="cloudpickle", input_example=frame.head(2)
    )
    served = start_serve([str(path)], tmp_path / "serve.log")
    try:
        body = {"dataframe_split": frame.to_dict(orient="split")}
        r = httpx.post(f"{served.url}/invocations", json=body)
        assert r.status_code == 200 and r.json() == {"predictions": clf.predict(frame).tolist()}
        assert r.headers["x-model-version"] and r.headers["x-request-id"]
        meta = httpx.get(f"{served.url}/v2/models/clf-folder").json()
        assert [i["name"] for i in meta["inputs"]] == ["a", "b"]
        big = b'{"instances": [' + b" " * (100 * 1024 * 1024) + b"]}"
        r = httpx.post(
            f"{served.url}/invocations",
            content=big,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert r.status_code == 413 and "100 MB" in r.json()["error"], r.text
        assert "--max-body-mb" in r.json()["error"]
        assert httpx.post(f"{served.url}/invocations", json=body).status_code == 200
    finally:
        stop_serve(served)
