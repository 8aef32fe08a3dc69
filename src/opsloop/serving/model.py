"""A model ready to serve: loaded once, with its name, version, signature and V2 metadata.

Loading goes through the registry (``models:/name@alias``, ``models:/name/3``,
``runs:/id/path``) and :mod:`opsloop.registry.flavors` (every MLmodel folder opsloop or the
stock ``mlflow`` client writes: sklearn in skops/cloudpickle/pickle, pyfunc). Example::

    model = load("models:/churn@production")
    model.name, model.version          # ("churn", "3")
    model.metadata()                   # V2: {"name", "versions", "platform", "inputs", "outputs"}
    model.predict(frame)               # the model's own predict on checked input

A ``models:/`` alias is resolved to its version once, at load: the server serves that
version until it is restarted (or a deployment swaps the model).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsloop.errors import InvalidInput
from opsloop.registry import flavors
from opsloop.registry.signature import Signature
from opsloop.serving.schema import Column, InputSchema, output_columns


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are on this machine, and what the registry says about it."""

    path: Path
    name: str
    version: str
    uri: str
    signature: Signature | None = None


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with what the server needs to describe it and check its input."""

    name: str
    version: str
    uri: str
    platform: str
    signature: Signature | None
    inputs: InputSchema
    outputs: tuple[Column, ...]
    pyfunc: flavors.PyFuncModel = field(repr=False)
    predict: Callable[[Any], Any] = field(repr=False, compare=False)

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata (``GET /v2/models/{name}``)."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": self.inputs.metadata(),
            "outputs": [c.metadata() for c in self.outputs],
        }


def fetch(source: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> ModelSource:
    """Find the model ``source`` names and put its files in a local folder.

    ``source`` is a local MLmodel folder (used in place), ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` (or ``/latest``) or ``runs:/RUN_ID/PATH`` (downloaded from the
    store the environment names into ``dst``, default a new temporary folder).
    """
    text = os.fspath(source)
    if os.path.isdir(text):
        path = Path(text).resolve()
        return ModelSource(path, path.name, "1", str(path))
    from opsloop.registry import api

    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="opsloop-serve-"))
    if text.startswith("models:/") and not text.startswith("models:/m-"):
        registry = api._registry()
        mv = registry.resolve(text)
        pinned = f"models:/{mv.name}/{mv.version}"
        loaded = api._artifact_dir_for(pinned)
        local = registry.store.artifacts.download(loaded, target)
        signature = Signature.from_json(mv.signature) if mv.signature else None
        return ModelSource(Path(local), mv.name, str(mv.version), pinned, signature)
    if text.startswith(("runs:/", "models:/m-")):
        loaded = api._artifact_dir_for(text)
        local = api._registry().store.artifacts.download(loaded, target)
        name = text.rstrip("/").rsplit("/", 1)[-1] or "model"
        return ModelSource(Path(local), name, "1", text)
    raise InvalidInput(
        f"Cannot serve {text!r}: give a local MLmodel folder, models:/NAME@ALIAS, "
        "models:/NAME/VERSION or runs:/RUN_ID/PATH."
    )


def load(
    source: str | os.PathLike[str] | ModelSource,
    *,
    name: str | None = None,
    version: str | None = None,
) -> ServedModel:
    """Load a model to serve (see :func:`fetch` for what ``source`` may be).

    ``name``/``version`` override the V2 name (default: the registered model's name, or the
    folder's) and version (the registered version, or ``"1"``).
    """
    src = source if isinstance(source, ModelSource) else fetch(source)
    pyfunc = flavors.load_model(src.path)
    signature = src.signature if src.signature is not None else pyfunc.signature
    inputs = InputSchema.from_signature(signature)
    return ServedModel(
        name=name or src.name,
        version=version or src.version,
        uri=src.uri,
        platform=_platform(pyfunc),
        signature=signature,
        inputs=inputs,
        outputs=output_columns(signature),
        pyfunc=pyfunc,
        predict=_predict_fn(pyfunc, inputs),
    )


def _platform(pyfunc: flavors.PyFuncModel) -> str:
    if pyfunc.flavor == flavors.FLAVOR_SKLEARN:
        return "mlflow_sklearn"
    return "mlflow_pyfunc"


def _predict_fn(pyfunc: flavors.PyFuncModel, inputs: InputSchema) -> Callable[[Any], Any]:
    """The function the server calls with input the codec has already checked and cast.

    A scikit-learn estimator is called directly: the codec did what ``PyFuncModel.predict``
    would (check the signature, hand a tensor model a numpy array), and doing it again
    through pandas costs more than the prediction of a row. Other models go through
    ``PyFuncModel.predict``, which knows their calling convention.
    """
    if pyfunc.flavor == flavors.FLAVOR_SKLEARN:
        conf = pyfunc.metadata.get("flavors", {}).get(flavors.FLAVOR_PYFUNC) or {}
        fn = getattr(pyfunc.unwrap(), str(conf.get("predict_fn") or "predict"), None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return pyfunc.predict


#: :func:`load` under the name ``opsloop.serving`` exports it by.
load_served_model = load

__all__ = ["ModelSource", "ServedModel", "fetch", "load", "load_served_model"]
