"""Finding a pipeline by name, as the shell and the scheduler give it: ``module:name`` or
``path/to/file.py:name``, imported with a folder first on the path (as ``uvicorn`` and
``prefect`` do), and shell or JSON params typed by the pipeline's annotations."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import typing
from pathlib import Path
from typing import Any

from opsloop.errors import InvalidInput


def load_target(spec: str, workdir: str | None = None) -> Any:
    """The object ``module:name`` (or ``file.py:name``, relative to ``workdir``) names,
    imported with ``workdir`` (default: the current folder) first on the path.

    Example::

        load_target("flows:churn")          # flows.py in the current folder
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"{spec!r}: give MODULE:PIPELINE, e.g. flows.churn:train_pipeline")
    folder = os.path.abspath(workdir or os.getcwd())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    where = f" (from {folder})" if workdir else ""
    try:
        if module_name.endswith(".py"):
            path = Path(folder, module_name).resolve()
            if not path.is_file():
                raise InvalidInput(f"{module_name}: no such file{where}")
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None:
                raise InvalidInput(f"{module_name}: cannot be imported")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[path.stem] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InvalidInput(f"cannot import {module_name!r}{where}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise InvalidInput(f"module {module_name!r} has no {attr!r}") from None


def load_pipeline(spec: str, workdir: str | None = None) -> Any:
    """The ``@pipeline`` that ``spec`` names (see ``load_target``); anything else is an
    error naming what it is.

    Example::

        pipe = load_pipeline("flows:churn")
    """
    from opsloop.pipelines.pipeline import Pipeline

    pipe = load_target(spec, workdir)
    if not isinstance(pipe, Pipeline):
        raise InvalidInput(f"{spec!r} is not an @opsloop.pipeline (got {type(pipe).__name__})")
    return pipe


def typed_params(fn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """String values for parameters annotated ``Path`` become paths, so a file given on
    the command line (or in a schedule) counts by its content in the cache, as it does
    from Python.

    Example::

        typed_params(churn.fn, {"path": "churn.csv"})     # {"path": Path("churn.csv")}
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    out = dict(params)
    for key, value in params.items():
        hint = hints.get(key)
        if (
            isinstance(value, str)
            and hint is not None
            and (hint is Path or Path in typing.get_args(hint))
        ):
            out[key] = Path(value)
    return out
