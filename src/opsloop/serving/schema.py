"""A model signature compiled for serving: columns, numpy dtypes and V2 datatypes.

Why a compiled form: the registry's :class:`~opsloop.registry.signature.Signature` holds
MLflow's spec dicts; checking a request against them column by column through pandas
costs ~0.5 ms for a 30-column row. The server compiles the signature once into
:class:`InputSchema` (names, numpy dtypes, V2 datatypes, which columns may be missing)
so the hot path checks plain numpy arrays.

V2 datatypes (Open Inference Protocol) for MLflow's types::

    boolean -> BOOL    integer -> INT32   long -> INT64   float -> FP32   double -> FP64
    string, binary, datetime -> BYTES     tensors: by their numpy dtype (int8 -> INT8, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

import numpy as np

from opsloop.registry.signature import Signature

#: V2 datatype -> numpy dtype (BYTES -> object: Python str/bytes).
V2_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_MLFLOW_TO_V2: Final[dict[str, str]] = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (strings, bytes, objects and dates -> BYTES)."""
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in ("i", "u", "f"):
        prefix = {"i": "INT", "u": "UINT", "f": "FP"}[kind]
        return f"{prefix}{dtype.itemsize * 8}"
    return "BYTES"


def _tensor_numpy_dtype(name: Any) -> np.dtype[Any]:
    if name in ("str", "bytes", "object", None):
        return np.dtype(object)
    try:
        return np.dtype(str(name))
    except TypeError:
        return np.dtype(object)


@dataclass(frozen=True, slots=True)
class Column:
    """One model input (a signature column or named tensor), or one output.

    ``key`` is the label the model sees (a str, or an int for a frame built from an
    array); ``name`` is its V2 name. ``dtype`` is the numpy dtype the model gets; object
    for strings/bytes/dates (checked by the registry's ``enforce_schema``). ``shape`` is
    the V2 shape, batch dimension first (-1).
    """

    name: str
    key: Any
    type: str
    dtype: np.dtype[Any]
    datatype: str
    shape: tuple[int, ...]
    required: bool
    spec: dict[str, Any] = field(repr=False, compare=False)

    @property
    def numeric(self) -> bool:
        """True when the hot path checks and casts the values itself (numbers, bools)."""
        return self.dtype.kind in ("b", "i", "u", "f")

    def metadata(self) -> dict[str, Any]:
        """The V2 tensor metadata: ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _column(spec: dict[str, Any], position: int, default_name: str) -> Column:
    type_ = str(spec.get("type"))
    raw_name = spec.get("name")
    name = str(raw_name) if raw_name is not None else default_name
    key = raw_name if raw_name is not None else position
    if type_ == "tensor":
        tspec = spec.get("tensor-spec") or {}
        dtype = _tensor_numpy_dtype(tspec.get("dtype"))
        shape = tuple(int(n) for n in (tspec.get("shape") or [-1]))
        return Column(name, key, type_, dtype, v2_datatype(dtype), shape, True, spec)
    if type_ in _MLFLOW_TO_V2:
        datatype = _MLFLOW_TO_V2[type_]
        dtype = V2_DTYPES[datatype]
    else:  # MLflow's array/object/map/any: passed through to the model unchecked
        datatype, dtype = "BYTES", np.dtype(object)
    return Column(name, key, type_, dtype, datatype, (-1,), bool(spec.get("required", True)), spec)


Layout = Literal["columns", "tensor", "any"]


@dataclass(frozen=True)
class InputSchema:
    """What a model takes, compiled from its signature's inputs.

    ``layout`` is ``"columns"`` (named columns, or named tensors: the model gets a
    DataFrame), ``"tensor"`` (one unnamed tensor: the model gets a numpy array) or
    ``"any"`` (no signature: whatever columns the request has).
    """

    layout: Layout
    columns: tuple[Column, ...]

    @cached_property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The columns' V2 names, in order (computed once: the prediction log's hot path
        names a request's block of columns with it)."""
        return tuple(c.name for c in self.columns)

    @classmethod
    def from_signature(cls, signature: Signature | None) -> InputSchema:
        specs = signature.inputs if signature is not None else []
        if not specs:
            return cls("any", ())
        if len(specs) == 1 and specs[0].get("type") == "tensor" and specs[0].get("name") is None:
            return cls("tensor", (_column(specs[0], 0, "input-0"),))
        return cls("columns", tuple(_column(s, i, f"input-{i}") for i, s in enumerate(specs)))

    def metadata(self) -> list[dict[str, Any]]:
        return [c.metadata() for c in self.columns]


def output_columns(signature: Signature | None) -> tuple[Column, ...]:
    """The model's outputs as the signature declares them (an unnamed one is ``predict``)."""
    specs = (signature.outputs if signature is not None else None) or []
    if len(specs) == 1:
        return (_column(specs[0], 0, "predict"),)
    return tuple(_column(s, i, f"output-{i}") for i, s in enumerate(specs))


__all__ = ["V2_DTYPES", "Column", "InputSchema", "output_columns", "v2_datatype"]
