"""The MLmodel format layer: opsloop <-> stock mlflow, both directions, plus signatures."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.registry import flavors
from opsloop.registry.signature import Signature, enforce_schema, infer_signature

# mlflow's own hint when it infers an integer output column; not about opsloop.
pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")


@pytest.fixture(autouse=True)
def _mlflow_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep mlflow from touching a tracking store in the working directory.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, LogisticRegression]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, LogisticRegression]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=5000).fit(X, y)


# Given explicitly so mlflow skips its (slow, subprocess-based) requirement inference.
FAST = ["scikit-learn"]


def row_sum(df: pd.DataFrame) -> pd.Series:
    """A plain function model."""
    return df.sum(axis=1)


class Doubler:
    """A non-sklearn object with predict."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        return df.to_numpy().sum(axis=1) * self.factor


class SumModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.offset = float(Path(context.artifacts["offset"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
        return model_input.sum(axis=1) + self.offset


class NoContextModel(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
        return model_input.max(axis=1)


def mlmodel(path: Path) -> dict[str, Any]:
    data = yaml.safe_load((path / "MLmodel").read_text())
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- opsloop -> opsloop


@pytest.mark.parametrize("dataset", ["iris", "cancer"])
def test_sklearn_save_load_predict(
    dataset: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    X, clf = request.getfixturevalue(dataset)
    info = flavors.save_model(clf, tmp_path / "m", input_example=X.head(5))
    assert info.flavor == "sklearn"
    assert info.signature is not None and info.signature.input_names() == list(X.columns)
    assert info.signature.outputs == [{"type": "long", "required": True}]
    reqs = info.environment["requirements"]
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert info.environment["python_version"].count(".") == 2

    loaded = flavors.load_model(tmp_path / "m")
    assert loaded.flavor == "sklearn"
    assert loaded.signature == info.signature
    assert type(loaded.unwrap()) is LogisticRegression
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    # Column order does not matter: the signature reorders.
    np.testing.assert_array_equal(loaded.predict(X[X.columns[::-1]]), clf.predict(X))


def test_mlmodel_keys_match_mlflow_sklearn_cloudpickle(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    flavors.save_model(clf, tmp_path / "ours", input_example=X.head(3), metadata={"team": "a"})
    mlflow.sklearn.save_model(
        clf,
        tmp_path / "theirs",
        serialization_format="cloudpickle",
        input_example=X.head(3),
        pip_requirements=FAST,
    )
    ours, theirs = mlmodel(tmp_path / "ours"), mlmodel(tmp_path / "theirs")
    assert ours["flavors"] == theirs["flavors"]
    assert ours["signature"] == theirs["signature"]
    assert ours["saved_input_example_info"] == theirs["saved_input_example_info"]
    assert ours["metadata"] == {"team": "a"}
    assert "mlflow_version" not in ours
    for key in ("model_uuid", "utc_time_created", "artifact_path", "model_size_bytes"):
        assert ours[key]
    for name in ("input_example.json", "serving_input_example.json"):
        a = json.loads((tmp_path / "ours" / name).read_text())
        assert a == json.loads((tmp_path / "theirs" / name).read_text())
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        assert (tmp_path / "ours" / name).is_file()
    py_env = yaml.safe_load((tmp_path / "ours" / "python_env.yaml").read_text())
    assert py_env["dependencies"] == ["-r requirements.txt"]


def test_save_model_accepts_mlflow_signature(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    theirs = mlflow.models.infer_signature(X.head(2), clf.predict(X.head(2)))
    info = flavors.save_model(clf, tmp_path / "m", signature=theirs)
    assert info.signature is not None
    assert info.signature.to_mlmodel_dict() == theirs.to_dict()
    assert mlmodel(tmp_path / "m")["signature"] == theirs.to_dict()


def test_function_save_load_predict(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = iris
    info = flavors.save_model(row_sum, tmp_path / "m", input_example=X.head(3))
    assert info.flavor == "python_function"
    assert info.signature is not None
    assert info.signature.outputs == [{"type": "double", "required": True}]
    conf = mlmodel(tmp_path / "m")["flavors"]
    assert list(conf) == ["python_function"]
    assert conf["python_function"]["loader_module"] == "mlflow.pyfunc.model"
    assert conf["python_function"]["python_model"] == "python_model.pkl"

    loaded = flavors.load_model(tmp_path / "m")
    assert loaded.flavor == "python_function"
    assert loaded.unwrap() is row_sum
    pd.testing.assert_series_equal(loaded.predict(X), row_sum(X))


def test_object_with_predict_save_load(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = iris
    flavors.save_model(Doubler(2.0), tmp_path / "m", input_example=X.head(3))
    loaded = flavors.load_model(tmp_path / "m")
    assert isinstance(loaded.unwrap(), Doubler)
    np.testing.assert_allclose(loaded.predict(X), X.to_numpy().sum(axis=1) * 2.0)


def test_tensor_signature_from_ndarray_example(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = iris
    clf = LogisticRegression(max_iter=1000).fit(X.to_numpy(), load_iris().target)
    info = flavors.save_model(clf, tmp_path / "m", input_example=X.to_numpy()[:3])
    assert info.signature is not None and info.signature.is_tensor_based()
    assert info.signature.inputs == [
        {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}
    ]
    loaded = flavors.load_model(tmp_path / "m")
    expected = clf.predict(X.to_numpy())
    np.testing.assert_array_equal(loaded.predict(X.to_numpy()), expected)
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(X.to_numpy())), expected)
    with pytest.raises(InvalidInput, match="expects 4"):
        loaded.predict(X.iloc[:, :3])
    theirs = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(theirs.predict(X.to_numpy()), expected)


def test_dict_and_records_inputs(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    flavors.save_model(clf, tmp_path / "m", input_example=X.head(2).to_dict(orient="list"))
    loaded = flavors.load_model(tmp_path / "m")
    rows = X.head(4).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(rows), clf.predict(X.head(4)))
    np.testing.assert_array_equal(
        loaded.predict(X.head(4).to_dict(orient="list")), clf.predict(X.head(4))
    )


# --------------------------------------------------------------------------- opsloop -> mlflow


@pytest.mark.parametrize("kind", ["sklearn", "function", "object"])
def test_opsloop_model_loads_in_mlflow(
    kind: str, iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    model: Any = {"sklearn": clf, "function": row_sum, "object": Doubler(3.0)}[kind]
    flavors.save_model(model, tmp_path / "m", input_example=X.head(3))
    ours = flavors.load_model(tmp_path / "m").predict(X)
    theirs_model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    theirs = theirs_model.predict(X)
    np.testing.assert_allclose(np.asarray(theirs), np.asarray(ours))
    # mlflow reads the example and signature opsloop wrote.
    pd.testing.assert_frame_equal(theirs_model.input_example, X.head(3))
    assert (
        theirs_model.metadata.signature.to_dict()["inputs"]
        == (mlflow.models.infer_signature(X.head(3)).to_dict()["inputs"])
    )


def test_opsloop_callable_model_loads_in_mlflow_without_opsloop(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = iris

    def plus_one(df: pd.DataFrame) -> pd.Series:
        return df.sum(axis=1) + 1

    flavors.save_model(plus_one, tmp_path / "m", input_example=X.head(3))
    script = (
        "import sys; sys.modules['opsloop'] = None\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({str(tmp_path / 'm')!r})\n"
        "print(float(m.predict(m.input_example).iloc[0]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(X.iloc[0].sum() + 1)


# --------------------------------------------------------------------------- mlflow -> opsloop


def test_mlflow_default_sklearn_serialization_is_skops(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    mlflow.sklearn.save_model(
        clf, str(tmp_path / "m"), input_example=X.head(3), pip_requirements=FAST
    )
    assert mlmodel(tmp_path / "m")["flavors"]["sklearn"]["serialization_format"] == "skops"
    loaded = flavors.load_model(tmp_path / "m")
    assert loaded.flavor == "sklearn"
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@pytest.mark.parametrize("fmt", ["skops", "cloudpickle", "pickle"])
def test_mlflow_sklearn_formats_load_in_opsloop(
    fmt: str, iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    mlflow.sklearn.save_model(
        clf, str(tmp_path / "m"), serialization_format=fmt, pip_requirements=FAST
    )
    loaded = flavors.load_model(tmp_path / "m")
    assert loaded.signature is None
    assert type(loaded.unwrap()) is LogisticRegression
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_mlflow_skops_trusted_types_are_honoured(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    hgb = HistGradientBoostingClassifier(max_iter=3).fit(X, y)
    trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    mlflow.sklearn.save_model(
        hgb,
        str(tmp_path / "m"),
        serialization_format="skops",
        skops_trusted_types=trusted,
        pip_requirements=FAST,
    )
    np.testing.assert_array_equal(flavors.load_model(tmp_path / "m").predict(X), hgb.predict(X))

    meta = mlmodel(tmp_path / "m")
    meta["flavors"]["sklearn"]["skops_trusted_types"] = None
    (tmp_path / "m" / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(InvalidInput, match="TreePredictor"):
        flavors.load_model(tmp_path / "m")


def test_mlflow_python_model_loads_in_opsloop(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, _ = iris
    (tmp_path / "offset.txt").write_text("10")
    mlflow.pyfunc.save_model(
        str(tmp_path / "m"),
        python_model=SumModel(),
        artifacts={"offset": str(tmp_path / "offset.txt")},
        input_example=X.head(3),
        pip_requirements=FAST,
    )
    loaded = flavors.load_model(tmp_path / "m")
    assert loaded.flavor == "python_function"
    assert isinstance(loaded.unwrap(), SumModel)
    assert loaded.signature is not None and loaded.signature.input_names() == list(X.columns)
    np.testing.assert_allclose(loaded.predict(X), X.sum(axis=1) + 10)

    mlflow.pyfunc.save_model(
        str(tmp_path / "n"), python_model=NoContextModel(), pip_requirements=FAST
    )
    np.testing.assert_allclose(flavors.load_model(tmp_path / "n").predict(X), X.max(axis=1))


# --------------------------------------------------------------------------- signatures


def test_signature_matches_mlflow_for_dataframes_and_arrays() -> None:
    df = pd.DataFrame(
        {
            "s": ["a", "b"],
            "l": [1, 2],
            "d": [1.5, None],
            "t": pd.to_datetime(["2020-01-01", "2021-06-01"]),
            "b": [True, False],
            "i": np.array([1, 2], dtype="int32"),
            "f": np.array([1, 2], dtype="float32"),
            "bin": [b"x", b"y"],
        }
    )
    cases: list[Any] = [
        df,
        pd.DataFrame(np.zeros((2, 3))),
        df["l"],
        np.zeros((3, 4)),
        np.arange(5),
        np.array([["a", "b"]]),
        [{"a": 1, "b": "x"}, {"a": None, "b": "y"}],
    ]
    for data in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlflow's hint about integer columns
            expected = mlflow.models.infer_signature(data, np.arange(2)).to_dict()
        ours = infer_signature(data, np.arange(2)).to_mlmodel_dict()
        assert ours["inputs"] == expected["inputs"], data
        assert ours["outputs"] == expected["outputs"]


def test_signature_round_trips() -> None:
    sig = infer_signature(pd.DataFrame({"x": [1.0], "y": ["a"]}), pd.Series([1]))
    assert Signature.from_mlmodel_dict(sig.to_mlmodel_dict()) == sig
    assert Signature.from_json(sig.to_json()) == sig
    assert json.loads(sig.to_json()) == sig.to_mlmodel_dict()
    assert sig.input_names() == ["x", "y"]
    assert infer_signature(np.zeros((2, 2))).input_names() is None
    assert sig.to_mlmodel_dict()["params"] is None


@pytest.mark.parametrize(
    "bad",
    [object(), [], {}, 3, [[1, 2], [3, 4]], np.float64(1.0), pd.DataFrame({"x": [None, None]})],
)
def test_infer_signature_rejects_unsupported_input(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        infer_signature(bad)


def test_infer_signature_names_bad_column() -> None:
    with pytest.raises(InvalidInput, match="'mixed'"):
        infer_signature([{"mixed": 1}, {"mixed": "a"}])
    with pytest.raises(InvalidInput, match="'delta'"):
        infer_signature(pd.DataFrame({"delta": pd.to_timedelta([1, 2], unit="s")}))


# --------------------------------------------------------------------------- enforce_schema


SIG = infer_signature(pd.DataFrame({"a": [1.0], "n": [1], "s": ["x"]}))


def test_enforce_schema_reorders_casts_and_drops_extra() -> None:
    df = pd.DataFrame({"extra": [0], "s": ["y", "z"][:1], "n": [3.0], "a": [2]})
    out = enforce_schema(df, SIG)
    assert list(out.columns) == ["a", "n", "s"]
    assert out["a"].dtype == np.float64 and out["n"].dtype == np.int64
    assert out.iloc[0].tolist() == [2.0, 3, "y"]


def test_enforce_schema_missing_column_is_named() -> None:
    with pytest.raises(InvalidInput, match="'n'"):
        enforce_schema(pd.DataFrame({"a": [1.0], "s": ["x"]}), SIG)


@pytest.mark.parametrize(
    ("column", "values"),
    [("a", ["text"]), ("n", [1.5]), ("n", [np.nan]), ("s", [1.0]), ("a", [2**60 + 1])],
)
def test_enforce_schema_wrong_type_is_named(column: str, values: list[Any]) -> None:
    df = pd.DataFrame({"a": [1.0], "n": [1], "s": ["x"]})
    df[column] = pd.Series(values)
    with pytest.raises(InvalidInput, match=f"'{column}'"):
        enforce_schema(df, SIG)


def test_enforce_schema_optional_column_may_be_absent() -> None:
    sig = infer_signature(
        pd.DataFrame({"a": [1.0], "opt": [None], "s": ["x"]}).astype({"opt": float})
    )
    assert sig.inputs[1] == {"type": "double", "name": "opt", "required": False}
    out = enforce_schema(pd.DataFrame({"s": ["q"], "a": [1.0]}), sig)
    assert list(out.columns) == ["a", "s"]


def test_predict_enforces_signature(
    iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    X, clf = iris
    flavors.save_model(clf, tmp_path / "m", input_example=X.head(2))
    loaded = flavors.load_model(tmp_path / "m")
    with pytest.raises(InvalidInput, match="petal width"):
        loaded.predict(X.drop(columns=["petal width (cm)"]))


# --------------------------------------------------------------------------- errors


def test_save_model_errors(iris: tuple[pd.DataFrame, LogisticRegression], tmp_path: Path) -> None:
    _, clf = iris
    with pytest.raises(InvalidInput):
        flavors.save_model(42, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Conflict):
        flavors.save_model(clf, tmp_path / "full")
    with pytest.raises(InvalidInput):
        flavors.save_model(clf, tmp_path / "b", input_example=object())
    with pytest.raises(InvalidInput):
        flavors.save_model(clf, tmp_path / "c", pip_requirements="scikit-learn")
    (tmp_path / "empty").mkdir()
    info = flavors.save_model(clf, tmp_path / "empty", pip_requirements=["scikit-learn"])
    assert info.environment["requirements"] == ["scikit-learn"]
    assert info.signature is None


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        flavors.load_model(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidInput, match="MLmodel"):
        flavors.load_model(tmp_path / "plain")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "MLmodel").write_text(
        yaml.safe_dump(
            {"flavors": {"xgboost": {}, "python_function": {"loader_module": "mlflow.xgboost"}}}
        )
    )
    with pytest.raises(InvalidInput, match="python_function, xgboost"):
        flavors.load_model(tmp_path / "odd")
    (tmp_path / "esc").mkdir()
    (tmp_path / "esc" / "MLmodel").write_text(
        yaml.safe_dump(
            {
                "flavors": {
                    "sklearn": {"pickled_model": "../x.pkl", "serialization_format": "pickle"}
                }
            }
        )
    )
    with pytest.raises(InvalidInput, match="outside"):
        flavors.load_model(tmp_path / "esc")


def test_opsloop_does_not_import_mlflow() -> None:
    script = (
        "import sys\n"
        "import opsloop.registry.flavors, opsloop.registry.signature\n"
        "print('mlflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
