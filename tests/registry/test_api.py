"""``opsloop.log_model`` / ``opsloop.load_model`` on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import opsloop
from opsloop.errors import InvalidInput, NotFound
from opsloop.registry.service import RegistryService
from opsloop.store import default_store


@pytest.fixture
def iris() -> tuple[pd.DataFrame, pd.Series]:
    data = load_iris(as_frame=True)
    return data.data, data.target


def test_log_register_alias_load(home: Path, iris: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = iris
    clf = LogisticRegression(max_iter=300).fit(x, y)
    with opsloop.start_run(experiment="iris") as run:
        mv = opsloop.log_model(clf, "iris-clf", input_example=x.iloc[:3], description="first")
    assert mv.version == "1" and mv.run_id == run.run_id and mv.flavor == "sklearn"
    sig = json.loads(mv.signature or "{}")
    assert [c["name"] for c in json.loads(sig["inputs"])] == list(x.columns)
    env = json.loads(mv.environment or "{}")
    assert env["python_version"] and any(
        r.startswith("scikit-learn==") for r in env["requirements"]
    )
    opsloop.set_alias("iris-clf", "production", mv.version)
    model = opsloop.load_model("models:/iris-clf@production")
    assert (np.asarray(model.predict(x)) == clf.predict(x)).all()
    assert (np.asarray(opsloop.load_model("models:/iris-clf/1").predict(x)) == clf.predict(x)).all()
    # Lineage: version -> run -> the run's outputs name the logged model.
    got = opsloop.get_run(run.run_id)
    assert [o.model_id for o in got.outputs] == [mv.model_id]
    # A wrong column is refused by the signature, naming the column.
    with pytest.raises(InvalidInput, match="petal width"):
        model.predict(x.drop(columns=["petal width (cm)"]))


def test_callable_model_and_alias_move(home: Path) -> None:
    def double(df: pd.DataFrame) -> pd.Series:
        return df["a"] * 2

    v1 = opsloop.log_model(double, "doubler", input_example=pd.DataFrame({"a": [1.0, 2.0]}))
    v2 = opsloop.log_model(
        lambda df: df["a"] * 3, "doubler", input_example=pd.DataFrame({"a": [1.0]})
    )
    opsloop.set_alias("doubler", "production", v1.version)
    assert list(
        opsloop.load_model("models:/doubler@production").predict(pd.DataFrame({"a": [2.0]}))
    ) == [4.0]
    opsloop.set_alias("doubler", "production", v2.version)
    assert list(
        opsloop.load_model("models:/doubler@production").predict(pd.DataFrame({"a": [2.0]}))
    ) == [6.0]
    reg = RegistryService(default_store())
    assert reg.get_registered_model("doubler").aliases == {"production": "2"}


def test_load_errors(home: Path) -> None:
    with pytest.raises(NotFound):
        opsloop.load_model("models:/nothing@production")
    with pytest.raises(InvalidInput):
        opsloop.load_model("ftp://somewhere/model")
    with pytest.raises(InvalidInput):
        opsloop.log_model(lambda df: df, "bad/name")
