"""Save and load models as MLflow ``MLmodel`` folders, without importing mlflow.

Why: opsloop's registry is a drop-in for MLflow's, so a model logged by opsloop must load
in ``mlflow.pyfunc.load_model`` and a model logged by the stock client
(``mlflow.sklearn.log_model``, ``mlflow.pyfunc.log_model``) must load in opsloop. Both
sides therefore share one on-disk format - MLflow's - and this module writes and reads it
by hand. opsloop itself never imports mlflow; the one exception is loading a model the
stock client pickled as an ``mlflow.pyfunc.PythonModel`` subclass: that pickle refers to
mlflow's classes, so mlflow must be importable for that case only.

What :func:`save_model` writes:

* a scikit-learn estimator (has ``predict``, class from ``sklearn.*``): flavors ``sklearn``
  (``pickled_model: model.pkl``, ``serialization_format: cloudpickle``) and
  ``python_function`` (``loader_module: mlflow.sklearn``) - exactly what
  ``mlflow.sklearn.save_model(..., serialization_format="cloudpickle")`` writes;
* any other callable, or object with ``predict``: flavor ``python_function`` in mlflow's
  "python_model" layout (``loader_module: mlflow.pyfunc.model``,
  ``python_model: python_model.pkl``). The pickle holds a small wrapper that duck-types
  ``mlflow.pyfunc.PythonModel`` (``load_context``, ``predict(context, model_input,
  params)``, ``predict_type_hints``); mlflow does no isinstance check when loading, and the
  wrapper class is pickled *by value*, so mlflow can load the model without opsloop
  installed;
* ``MLmodel``, ``requirements.txt``, ``python_env.yaml``, ``conda.yaml`` and, given an
  example, ``input_example.json`` / ``serving_input_example.json`` in MLflow's formats.

:func:`load_model` reads the ``sklearn`` flavor in every serialization mlflow 3 writes
(``skops`` - the default since mlflow 3.x -, ``cloudpickle``, ``pickle``) and
``python_function`` models in the python_model layout (opsloop's wrapper or a stock
``PythonModel``), and gives one :class:`PyFuncModel` with ``predict(DataFrame)``.
"""

from __future__ import annotations

import base64
import bz2
import contextlib
import datetime as dt
import gzip
import importlib.metadata
import inspect
import json
import logging
import lzma
import math
import os
import pickle
import platform
import shutil
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, cast

import cloudpickle
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import yaml

from opsloop.errors import Conflict, InvalidInput, NotFound, PathOutsideRoot
from opsloop.registry.signature import Signature, enforce_schema, infer_schema

_log = logging.getLogger(__name__)

MLMODEL_FILE: Final = "MLmodel"
SKLEARN_MODEL_FILE: Final = "model.pkl"
PYTHON_MODEL_FILE: Final = "python_model.pkl"
EXAMPLE_FILE: Final = "input_example.json"
SERVING_EXAMPLE_FILE: Final = "serving_input_example.json"
REQUIREMENTS_FILE: Final = "requirements.txt"
PYTHON_ENV_FILE: Final = "python_env.yaml"
CONDA_ENV_FILE: Final = "conda.yaml"

FLAVOR_SKLEARN: Final = "sklearn"
FLAVOR_PYFUNC: Final = "python_function"
SKLEARN_FORMATS: Final = ("skops", "cloudpickle", "pickle")

_PYFUNC_MODEL_LOADER: Final = "mlflow.pyfunc.model"
_SKLEARN_LOADER: Final = "mlflow.sklearn"
_DECOMPRESSORS: Final[dict[str, Callable[..., Any]]] = {
    "lzma": lzma.open,
    "bzip2": bz2.open,
    "gzip": gzip.open,
}
_PICKLE_BY_VALUE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`save_model` wrote.

    ``flavor`` is ``"sklearn"`` or ``"python_function"``; ``environment`` is
    ``{"python_version": "3.11.7", "requirements": ["numpy==2.4.6", ...]}``.
    """

    path: str
    flavor: str
    signature: Signature | None
    environment: dict[str, Any]
    model_uuid: str
    utc_time_created: str
    mlmodel: dict[str, Any] = field(repr=False, compare=False)


class PyFuncModel:
    """A loaded model: ``predict(DataFrame)`` whatever the flavor it was stored in."""

    def __init__(
        self,
        *,
        raw: Any,
        predict_fn: Callable[[Any], Any],
        flavor: str,
        metadata: dict[str, Any],
        signature: Signature | None,
        path: str,
    ) -> None:
        self._raw = raw
        self._predict_fn = predict_fn
        self._flavor = flavor
        self._metadata = metadata
        self._signature = signature
        self._path = path

    @property
    def flavor(self) -> str:
        """``"sklearn"`` or ``"python_function"`` - the flavor the model was loaded from."""
        return self._flavor

    @property
    def metadata(self) -> dict[str, Any]:
        """The parsed MLmodel file."""
        return self._metadata

    @property
    def signature(self) -> Signature | None:
        """The model's signature, if one was stored."""
        return self._signature

    @property
    def path(self) -> str:
        """The MLmodel folder the model was loaded from."""
        return self._path

    def unwrap(self) -> Any:
        """The underlying model: the estimator, the function/object, or the PythonModel."""
        return self._raw

    def predict(self, data: Any) -> Any:
        """Predict on ``data`` (a DataFrame; dicts, row-dict lists and arrays are converted).

        With a signature, the input is checked and cast first (:func:`enforce_schema`);
        a tensor signature hands the model a numpy array, as mlflow does. Returns whatever
        the underlying model returns (numpy array, Series, DataFrame, ...).
        """
        sig = self._signature
        if sig is None or not sig.inputs:
            if isinstance(data, Mapping | list):
                data = _to_frame(data, "model input")
            return self._predict_fn(data)
        if isinstance(data, np.ndarray):
            data = _array_to_frame(data, sig)
        elif not isinstance(data, pd.DataFrame):
            data = _to_frame(data, "model input")
        checked = enforce_schema(data, sig)
        if sig.is_tensor_based() and len(sig.inputs) == 1 and "name" not in sig.inputs[0]:
            array = checked.to_numpy()
            if len(sig.inputs[0]["tensor-spec"].get("shape", [])) == 1:
                array = array[:, 0]
            return self._predict_fn(array)
        return self._predict_fn(checked)

    def __repr__(self) -> str:
        return f"PyFuncModel(flavor={self._flavor!r}, path={self._path!r})"


class _CallableModel:
    """Duck-types ``mlflow.pyfunc.PythonModel`` around a function or an object with predict.

    Pickled by value into ``python_model.pkl`` so mlflow can load it without opsloop. Keep
    it free of references to module globals: only what it names itself travels.
    """

    _opsloop_callable = True

    def __init__(self, target: Any, method: str | None) -> None:
        self.target = target
        self.method = method
        # mlflow's wrapper reads ``.input`` of this to special-case list[str] hints.
        self.predict_type_hints = types.SimpleNamespace(input=None, output=None)

    def load_context(self, context: Any) -> None:
        """Nothing to load: the target was pickled with the wrapper."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        if self.method is None:
            return self.target(model_input)
        return getattr(self.target, self.method)(model_input)


@dataclass(frozen=True)
class _Context:
    """What ``PythonModel.load_context`` and ``predict`` get as ``context`` in opsloop."""

    artifacts: dict[str, str]
    model_config: dict[str, Any]


# --------------------------------------------------------------------------- save


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    input_example: Any = None,
    signature: Signature | Mapping[str, Any] | None = None,
    pip_requirements: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    artifact_path: str | None = None,
) -> ModelInfo:
    """Write ``model`` as an MLmodel folder at ``path`` (which must not exist, or be empty).

    A scikit-learn estimator gets the ``sklearn`` + ``python_function`` flavors; any other
    callable (``f(DataFrame)``) or object with ``predict`` gets ``python_function``. Without
    ``signature``, one is inferred from ``input_example`` (inputs) and the model's output on
    it (outputs; if predicting fails, outputs are left out with a warning). ``signature``
    may also be an MLmodel ``signature:`` mapping or an ``mlflow.models.ModelSignature``
    (read through its ``to_dict()``; opsloop does not import mlflow).
    ``pip_requirements`` replaces the detected pinned requirements. ``artifact_path``
    defaults to the folder's name. Raises Conflict if ``path`` is not empty, InvalidInput
    for a model or example opsloop cannot store.
    """
    is_sklearn = _is_sklearn_estimator(model)
    method: str | None = None
    if not is_sklearn:
        if callable(getattr(model, "predict", None)):
            method = "predict"
        elif not callable(model):
            raise InvalidInput(
                f"Cannot save a {type(model).__qualname__}: a model must be a scikit-learn "
                "estimator, a function taking a DataFrame, or an object with .predict()."
            )
    signature = _coerce_signature(signature)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInput(f"metadata must be a mapping, got {type(metadata).__qualname__}.")
    if isinstance(pip_requirements, str | bytes):
        raise InvalidInput("pip_requirements must be a list of requirement strings.")
    requirements = None if pip_requirements is None else [str(r) for r in pip_requirements]

    example = None if input_example is None else _normalize_example(input_example)
    if signature is None and example is not None:
        signature = _infer_from_example(model, method, is_sklearn, example)

    root = Path(path)
    created = _prepare_target(root)
    try:
        return _write_model(
            model,
            root,
            method=method,
            is_sklearn=is_sklearn,
            example=example,
            signature=signature,
            requirements=requirements,
            metadata=dict(metadata) if metadata is not None else None,
            artifact_path=artifact_path if artifact_path is not None else root.name,
        )
    except BaseException:
        _discard(root, created)
        raise


def _write_model(
    model: Any,
    root: Path,
    *,
    method: str | None,
    is_sklearn: bool,
    example: pd.DataFrame | np.ndarray[Any, Any] | None,
    signature: Signature | None,
    requirements: list[str] | None,
    metadata: dict[str, Any] | None,
    artifact_path: str,
) -> ModelInfo:
    python_version = platform.python_version()
    env_files = {"conda": CONDA_ENV_FILE, "virtualenv": PYTHON_ENV_FILE}
    flavors: dict[str, Any]
    if is_sklearn:
        _dump(model, root / SKLEARN_MODEL_FILE)
        flavors = {
            FLAVOR_PYFUNC: {
                "env": env_files,
                "loader_module": _SKLEARN_LOADER,
                "model_path": SKLEARN_MODEL_FILE,
                "predict_fn": "predict",
                "python_version": python_version,
            },
            FLAVOR_SKLEARN: {
                "code": None,
                "pickled_model": SKLEARN_MODEL_FILE,
                "serialization_format": "cloudpickle",
                "sklearn_version": _version("scikit-learn"),
                "skops_trusted_types": None,
            },
        }
        flavor = FLAVOR_SKLEARN
    else:
        wrapper = _CallableModel(model, method)
        with _PICKLE_BY_VALUE_LOCK:
            this_module = sys.modules[__name__]
            cloudpickle.register_pickle_by_value(this_module)
            try:
                _dump(wrapper, root / PYTHON_MODEL_FILE)
            finally:
                cloudpickle.unregister_pickle_by_value(this_module)
        flavors = {
            FLAVOR_PYFUNC: {
                "cloudpickle_version": cloudpickle.__version__,
                "code": None,
                "env": env_files,
                "loader_module": _PYFUNC_MODEL_LOADER,
                "python_model": PYTHON_MODEL_FILE,
                "python_version": python_version,
                "streamable": False,
            }
        }
        flavor = FLAVOR_PYFUNC

    mlmodel: dict[str, Any] = {
        "artifact_path": artifact_path,
        "flavors": flavors,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": str(dt.datetime.now(dt.UTC).replace(tzinfo=None)),
    }
    if example is not None:
        mlmodel["saved_input_example_info"] = _write_example(root, example)
    if signature is not None:
        mlmodel["signature"] = signature.to_mlmodel_dict()
    if metadata is not None:
        mlmodel["metadata"] = metadata

    if requirements is None:
        requirements = _detect_requirements(model if not is_sklearn else None, is_sklearn)
    (root / REQUIREMENTS_FILE).write_text("\n".join(requirements), encoding="utf-8")
    _write_yaml(root / PYTHON_ENV_FILE, _python_env(python_version))
    _write_yaml(root / CONDA_ENV_FILE, _conda_env(python_version, requirements))
    mlmodel["model_size_bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    try:
        _write_yaml(root / MLMODEL_FILE, mlmodel)
    except yaml.YAMLError as e:
        raise InvalidInput(f"metadata must hold only YAML-serializable values: {e}") from e
    return ModelInfo(
        path=str(root),
        flavor=flavor,
        signature=signature,
        environment={"python_version": python_version, "requirements": list(requirements)},
        model_uuid=mlmodel["model_uuid"],
        utc_time_created=mlmodel["utc_time_created"],
        mlmodel=mlmodel,
    )


def _coerce_signature(signature: Any) -> Signature | None:
    if signature is None or isinstance(signature, Signature):
        return signature
    if isinstance(signature, Mapping):
        return Signature.from_mlmodel_dict(signature)
    to_dict = getattr(signature, "to_dict", None)
    if callable(to_dict):  # mlflow.models.ModelSignature and look-alikes
        as_dict = to_dict()
        if isinstance(as_dict, Mapping):
            return Signature.from_mlmodel_dict(as_dict)
    raise InvalidInput(
        f"signature must be an opsloop Signature or an MLmodel signature mapping, got "
        f"{type(signature).__qualname__}."
    )


def _is_sklearn_estimator(model: Any) -> bool:
    module = type(model).__module__ or ""
    return module.startswith("sklearn.") and callable(getattr(model, "predict", None))


def _prepare_target(root: Path) -> bool:
    """Make ``root`` an empty directory; True if we created it (so a failure removes it)."""
    if root.exists():
        if not root.is_dir():
            raise Conflict(f"Cannot save a model to {root}: a file exists there.")
        if any(root.iterdir()):
            raise Conflict(f"Cannot save a model to {root}: the folder is not empty.")
        return False
    root.mkdir(parents=True)
    return True


def _discard(root: Path, created: bool) -> None:
    with contextlib.suppress(OSError):
        if created:
            shutil.rmtree(root)
        else:
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def _dump(obj: Any, target: Path) -> None:
    try:
        with target.open("wb") as f:
            # Python's default protocol, as mlflow does, for older readers.
            cloudpickle.dump(obj, f, protocol=pickle.DEFAULT_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise InvalidInput(f"Cannot serialize the model with cloudpickle: {e}") from e


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _detect_requirements(target: Any, is_sklearn: bool) -> list[str]:
    """Pinned requirements for loading the model: the libraries the flavor needs, plus
    the distribution that provides the model's own class or function (if installed)."""
    dists = ["cloudpickle", "numpy", "pandas"]
    if is_sklearn:
        dists += ["scikit-learn", "scipy"]
    if target is not None:
        owner = target if inspect.isfunction(target) or inspect.isclass(target) else type(target)
        top = (getattr(owner, "__module__", None) or "").split(".")[0]
        if top and top not in sys.stdlib_module_names and top not in ("__main__", "builtins"):
            dists += importlib.metadata.packages_distributions().get(top, [])
    pinned = {}
    for dist in dists:
        version = _version(dist)
        if version is not None:
            pinned[dist.lower()] = f"{dist}=={version}"
    return sorted(pinned.values(), key=str.lower)


def _python_env(python_version: str) -> dict[str, Any]:
    build = []
    for dist in ("pip", "setuptools", "wheel"):
        version = _version(dist)
        build.append(f"{dist}=={version}" if version else dist)
    return {
        "python": python_version,
        "build_dependencies": build,
        "dependencies": [f"-r {REQUIREMENTS_FILE}"],
    }


def _conda_env(python_version: str, requirements: list[str]) -> dict[str, Any]:
    pip_version = _version("pip")
    return {
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={python_version}",
            f"pip<={pip_version}" if pip_version else "pip",
            {"pip": list(requirements)},
        ],
        "name": "mlflow-env",
    }


def _write_yaml(target: Path, data: Any) -> None:
    text = yaml.safe_dump(data, default_flow_style=False)
    target.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- examples


def _normalize_example(example: Any) -> pd.DataFrame | np.ndarray[Any, Any]:
    """The example as the model will see it: a DataFrame, or a numpy array."""
    if isinstance(example, np.ndarray):
        if example.ndim == 0:
            raise InvalidInput("input_example is a 0-d numpy array; pass at least one row.")
        return example
    if isinstance(example, pd.DataFrame):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame()
    return _to_frame(example, "input_example")


def _to_frame(data: Any, what: str) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a dict of columns (or of scalars: one row), or rows."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        if not data:
            raise InvalidInput(f"The {what} is an empty dict.")
        columnar = any(isinstance(v, list | tuple | np.ndarray | pd.Series) for v in data.values())
        try:
            return pd.DataFrame(dict(data)) if columnar else pd.DataFrame([dict(data)])
        except ValueError as e:
            raise InvalidInput(f"The {what} dict is not a table: {e}") from e
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        return pd.DataFrame([dict(r) for r in data])
    raise InvalidInput(
        f"The {what} must be a pandas DataFrame, a dict of column -> values or a list of "
        f"row dicts, got {type(data).__qualname__}."
    )


def _array_to_frame(data: np.ndarray[Any, Any], sig: Signature) -> pd.DataFrame:
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    if data.ndim != 2:
        raise InvalidInput(f"Model input is a {data.ndim}-d array; pass a table (2-d).")
    names = sig.input_names() if not sig.is_tensor_based() else None
    if names is not None:
        labels = [spec["name"] for spec in sig.inputs]
        if data.shape[1] != len(labels):
            raise InvalidInput(
                f"Model input has {data.shape[1]} column(s); the signature expects "
                f"{len(labels)} ({', '.join(names)})."
            )
        return pd.DataFrame(data, columns=labels)
    return pd.DataFrame(data)


def _infer_from_example(
    model: Any, method: str | None, is_sklearn: bool, example: pd.DataFrame | np.ndarray[Any, Any]
) -> Signature:
    inputs = infer_schema(example, what="input_example")
    outputs = None
    try:
        if is_sklearn:
            prediction = model.predict(example.copy())
        elif method is not None:
            prediction = getattr(model, method)(example.copy())
        else:
            prediction = model(example.copy())
        # A 1-d array from a table is one value per row: one column, as mlflow infers it.
        if (
            isinstance(example, pd.DataFrame)
            and isinstance(prediction, np.ndarray)
            and prediction.ndim == 1
        ):
            prediction = pd.Series(prediction)
        outputs = infer_schema(prediction, what="model output")
    except Exception as e:
        _log.warning("Could not infer the model's output schema from input_example: %r", e)
    return Signature(inputs=inputs, outputs=outputs)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(bytes(value)).decode("ascii")
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    if isinstance(value, dt.date | dt.time):  # pd.Timestamp is a datetime
        return value.isoformat()
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


def _null_to_none(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    return value


def _write_example(root: Path, example: pd.DataFrame | np.ndarray[Any, Any]) -> dict[str, Any]:
    """Write MLflow's ``input_example.json`` and ``serving_input_example.json``."""
    info: dict[str, Any] = {"artifact_path": EXAMPLE_FILE}
    payload: Any
    if isinstance(example, pd.DataFrame):
        split = example.to_dict(orient="split")
        payload = {}
        if list(example.columns) != list(range(example.shape[1])):
            payload["columns"] = [
                c if isinstance(c, str | int) else str(c) for c in split["columns"]
            ]
        payload["data"] = [[_null_to_none(v) for v in row] for row in split["data"]]
        serving = {"dataframe_split": payload}
        info.update(type="dataframe", pandas_orient="split" if "columns" in payload else "values")
    else:
        values: np.ndarray[Any, Any] = example
        if np.issubdtype(values.dtype, np.number):
            nan = np.isnan(values)
            values = values.astype(object)
            values[nan] = None
        payload = values.tolist()
        serving = {"inputs": payload}
        info["type"] = "ndarray"
    try:
        text = json.dumps(payload, default=_json_default)
        serving_text = json.dumps(serving, default=_json_default, indent=2)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"input_example is not JSON-serializable: {e}") from e
    (root / EXAMPLE_FILE).write_text(text, encoding="utf-8")
    (root / SERVING_EXAMPLE_FILE).write_text(serving_text, encoding="utf-8")
    info["serving_input_path"] = SERVING_EXAMPLE_FILE
    return info


# --------------------------------------------------------------------------- load


def load_model(path: str | os.PathLike[str]) -> PyFuncModel:
    """Load the MLmodel folder at ``path`` (written by opsloop or by the stock mlflow client).

    Supported: the ``sklearn`` flavor in ``skops``, ``cloudpickle`` and ``pickle``
    serialization, and ``python_function`` models in mlflow's python_model layout.
    Raises NotFound if there is no folder, InvalidInput if it is not a loadable MLmodel.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotFound(f"No model folder at {root}.")
    mlmodel_file = root / MLMODEL_FILE
    if not mlmodel_file.is_file():
        raise InvalidInput(f"{root} is not an MLmodel folder: it has no {MLMODEL_FILE} file.")
    try:
        meta = yaml.safe_load(mlmodel_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InvalidInput(f"The MLmodel file at {mlmodel_file} is not valid YAML: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise InvalidInput(f"The MLmodel file at {mlmodel_file} has no flavors section.")
    flavors: dict[str, Any] = meta["flavors"]
    signature = (
        Signature.from_mlmodel_dict(meta["signature"])
        if isinstance(meta.get("signature"), dict)
        else None
    )
    pyfunc_conf = flavors.get(FLAVOR_PYFUNC) or {}
    if not isinstance(pyfunc_conf, dict):
        raise InvalidInput(f"The python_function flavor in {mlmodel_file} is not a mapping.")

    if isinstance(flavors.get(FLAVOR_SKLEARN), dict):
        conf = flavors[FLAVOR_SKLEARN]
        _add_code_path(root, conf)
        file_name = conf.get("pickled_model") or pyfunc_conf.get("model_path")
        fmt = conf.get("serialization_format", "pickle")
        estimator = _load_sklearn(root, file_name, fmt, conf.get("skops_trusted_types"))
        fn_name = pyfunc_conf.get("predict_fn", "predict")
        fn = getattr(estimator, fn_name, None)
        if not callable(fn):
            raise InvalidInput(f"The scikit-learn model at {root} has no method {fn_name!r}.")
        return PyFuncModel(
            raw=estimator,
            predict_fn=fn,
            flavor=FLAVOR_SKLEARN,
            metadata=meta,
            signature=signature,
            path=str(root),
        )

    loader = pyfunc_conf.get("loader_module")
    if loader == _PYFUNC_MODEL_LOADER:
        _add_code_path(root, pyfunc_conf)
        raw, fn = _load_python_model(root, pyfunc_conf)
    elif loader == _SKLEARN_LOADER:
        # A python_function-only sklearn model: mlflow assumes pickle then.
        _add_code_path(root, pyfunc_conf)
        file_name = pyfunc_conf.get("model_path") or pyfunc_conf.get("data")
        raw = _load_sklearn(root, file_name, "pickle", None)
        fn_name = pyfunc_conf.get("predict_fn", "predict")
        fn = getattr(raw, fn_name, None)
        if not callable(fn):
            raise InvalidInput(f"The scikit-learn model at {root} has no method {fn_name!r}.")
    else:
        found = ", ".join(sorted(flavors)) or "none"
        detail = f" (python_function loader_module {loader!r})" if loader else ""
        raise InvalidInput(
            f"Cannot load the model at {root}: it has flavors {found}{detail}; opsloop loads "
            "the sklearn flavor and python_function models written with a python_model."
        )
    return PyFuncModel(
        raw=raw,
        predict_fn=fn,
        flavor=FLAVOR_PYFUNC,
        metadata=meta,
        signature=signature,
        path=str(root),
    )


def _inside(root: Path, rel: Any, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise InvalidInput(f"The MLmodel file at {root} does not name the {what} file.")
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PathOutsideRoot(f"The MLmodel file at {root} points {what} outside the model.")
    if not target.exists():
        raise InvalidInput(f"The {what} file {rel!r} is missing from {root}.")
    return target


def _add_code_path(root: Path, conf: Mapping[str, Any]) -> None:
    """Put the model's logged ``code`` folder first on sys.path, as mlflow does."""
    code = conf.get("code")
    if code:
        code_dir = str(_inside(root, code, "code"))
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)


def _load_sklearn(root: Path, file_name: Any, fmt: Any, trusted: Any) -> Any:
    target = _inside(root, file_name, "model")
    if fmt == "skops":
        try:
            import skops.io  # type: ignore[import-untyped]
        except ImportError as e:
            raise InvalidInput(
                f"The model at {root} is stored in the skops format (mlflow's default); "
                "loading it needs the skops package (pip install skops)."
            ) from e

        try:
            return skops.io.load(target, trusted=trusted)
        except Exception as e:
            if type(e).__name__ == "UntrustedTypesFoundException":
                raise InvalidInput(
                    f"The skops model at {root} uses types its MLmodel does not trust: {e}. "
                    "Save it again with skops_trusted_types listing them."
                ) from e
            raise
    if fmt == "cloudpickle":
        with target.open("rb") as f:
            return cloudpickle.load(f)
    if fmt == "pickle":
        with target.open("rb") as f:
            return pickle.load(f)
    raise InvalidInput(
        f"The sklearn model at {root} uses serialization_format {fmt!r}; "
        f"opsloop reads {', '.join(SKLEARN_FORMATS)}."
    )


def _load_python_model(root: Path, conf: Mapping[str, Any]) -> tuple[Any, Callable[[Any], Any]]:
    if conf.get("model_code_path"):
        raise InvalidInput(
            f"The model at {root} is an mlflow models-from-code model; opsloop cannot load it "
            "without mlflow. Load it with mlflow.pyfunc.load_model instead."
        )
    target = _inside(root, conf.get("python_model"), "python_model")
    compression = conf.get("python_model_compression")
    opener: Callable[..., Any] = open
    if compression:
        if compression not in _DECOMPRESSORS:
            raise InvalidInput(f"The model at {root} uses unknown compression {compression!r}.")
        opener = _DECOMPRESSORS[compression]
    try:
        with opener(target, "rb") as f:
            python_model = cloudpickle.load(cast(IO[bytes], f))
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] == "mlflow":
            raise InvalidInput(
                f"The model at {root} is an mlflow PythonModel; loading it needs the mlflow "
                "package installed (pip install mlflow)."
            ) from e
        raise

    if getattr(python_model, "_opsloop_callable", False):
        target_obj, method = python_model.target, python_model.method
        fn = target_obj if method is None else getattr(target_obj, method)
        return target_obj, fn

    artifacts = {
        name: str(_inside(root, info.get("path"), f"artifact {name!r}"))
        for name, info in (conf.get("artifacts") or {}).items()
    }
    context = _Context(artifacts=artifacts, model_config=dict(conf.get("model_config") or {}))
    python_model.load_context(context)
    params = inspect.signature(python_model.predict).parameters
    takes_context = "context" in params or len([p for p in params if p != "params"]) == 2
    kwargs = {"params": None} if "params" in params else {}

    def predict(model_input: Any) -> Any:
        if takes_context:
            return python_model.predict(context, model_input, **kwargs)
        return python_model.predict(model_input, **kwargs)

    return python_model, predict


__all__ = [
    "FLAVOR_PYFUNC",
    "FLAVOR_SKLEARN",
    "ModelInfo",
    "PyFuncModel",
    "load_model",
    "save_model",
]
