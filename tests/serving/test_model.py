"""Loading a model to serve: from the registry (alias, version), a run, or a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import opsloop
from opsloop.errors import InvalidInput, NotFound
from opsloop.registry import flavors
from opsloop.serving.model import fetch, load


@pytest.fixture
def fitted() -> tuple[pd.DataFrame, LogisticRegression]:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    return X, LogisticRegression().fit(X, [0, 0, 1, 1])


def test_registry_uris_resolve_to_a_version(
    home: Path, fitted: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = fitted
    opsloop.log_model(clf, "churn", input_example=X.head(2))
    opsloop.log_model(clf, "churn", input_example=X.head(2), alias="production")
    by_alias = load("models:/churn@production")
    assert (by_alias.name, by_alias.version, by_alias.uri) == ("churn", "2", "models:/churn/2")
    assert by_alias.platform == "mlflow_sklearn"
    assert by_alias.metadata() == {
        "name": "churn",
        "versions": ["2"],
        "platform": "mlflow_sklearn",
        "inputs": [
            {"name": "a", "datatype": "FP64", "shape": [-1]},
            {"name": "b", "datatype": "FP64", "shape": [-1]},
        ],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    }
    assert by_alias.predict(X).tolist() == clf.predict(X).tolist()
    source = fetch("models:/churn/1", tmp_path / "dl")
    assert source.version == "1" and (source.path / "MLmodel").is_file()
    assert load(source, name="other").name == "other"
    with pytest.raises(NotFound, match="churn"):
        load("models:/churn@nope")
    with pytest.raises(NotFound):
        load("models:/nothing/1")


def test_a_run_artifact_and_a_folder(
    home: Path, fitted: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = fitted
    clf = LogisticRegression().fit(X.to_numpy(), [0, 0, 1, 1])  # a tensor model
    folder = tmp_path / "saved"
    flavors.save_model(clf, folder, input_example=X.head(2).to_numpy())
    with opsloop.start_run(experiment="serving") as run:
        opsloop.log_artifacts(folder, "model")
    from_run = load(f"runs:/{run.info.run_id}/model")
    assert from_run.name == "model"
    assert from_run.inputs.layout == "tensor"
    assert from_run.predict(X.to_numpy()).tolist() == clf.predict(X.to_numpy()).tolist()
    from_folder = load(folder)
    assert (from_folder.name, from_folder.version) == ("saved", "1")
    with pytest.raises(InvalidInput, match="local MLmodel folder"):
        load("s3://bucket/model")
    with pytest.raises(InvalidInput, match="no MLmodel"):
        load(tmp_path)


def test_sklearn_models_are_called_directly(tmp_path: Path) -> None:
    clf = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    flavors.save_model(clf, tmp_path / "m", input_example=np.array([[0.5]]))
    model = load(tmp_path / "m")
    assert model.predict == model.pyfunc.unwrap().predict


def test_warm_up_predicts_the_example_and_survives_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from opsloop.serving.app import warm_up

    def predict(df: pd.DataFrame) -> np.ndarray:  # type: ignore[type-arg]
        return df["x"].to_numpy()

    flavors.save_model(predict, tmp_path / "m", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
    model = load(tmp_path / "m")
    warm_up(model)
    assert "warming up" not in caplog.text
    (tmp_path / "m" / "serving_input_example.json").write_text('{"inputs": {"y": [1]}}')
    warm_up(model)
    assert "warming up m on its serving example failed" in caplog.text
