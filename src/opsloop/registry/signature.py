"""Model signatures in MLflow's format, inferred and enforced without importing mlflow.

Why this exists: opsloop stores models as MLflow ``MLmodel`` folders so the stock mlflow
client can load what opsloop logs and opsloop can load what mlflow logs. The ``signature:``
section of an ``MLmodel`` file is part of that contract, so opsloop writes it byte-for-byte
the way ``mlflow.models.infer_signature`` does (same JSON, same type names, same key order),
and reads what mlflow wrote. The serving layer then uses :func:`enforce_schema` to check a
request against the signature before the model sees it.

Format (the ``inputs``/``outputs`` values are JSON *strings* inside the YAML)::

    signature:
      inputs: '[{"type": "double", "name": "x", "required": true}]'   # column-based
      outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
      params: null

Column types are MLflow's ``DataType`` names: ``boolean``, ``integer`` (int32), ``long``
(int64), ``float`` (float32), ``double`` (float64), ``string``, ``binary``, ``datetime``.
Numpy arrays become tensor specs whose first dimension is variable (``-1``).

Where opsloop deliberately differs from MLflow (documented, on purpose):

* a ``dict`` is read as *columns* (``{"x": [1.0, 2.0]}`` is one ``double`` column ``x``),
  the way a DataFrame would be built from it; MLflow would infer an ``array`` column.
* a column mixing ints and floats is inferred as ``double`` instead of being rejected.
* :func:`enforce_schema` checks the actual values when casting between numeric types (see
  its docstring), so it accepts some casts MLflow rejects (``int64`` -> ``double`` when
  every value is exactly representable) and rejects none that MLflow accepts silently lossy.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from opsloop.errors import InvalidInput

#: The scalar column types of MLflow's ``DataType`` enum, in MLflow's order.
COLUMN_TYPES: Final[tuple[str, ...]] = (
    "boolean",
    "integer",
    "long",
    "float",
    "double",
    "string",
    "binary",
    "datetime",
)

_NUMERIC_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "integer": np.dtype("int32"),
    "long": np.dtype("int64"),
    "float": np.dtype("float32"),
    "double": np.dtype("float64"),
}

# Exact Python/numpy scalar type -> MLflow type (mirrors mlflow.types.utils).
_SCALAR_TYPES: Final[dict[type, str]] = {
    bool: "boolean",
    np.bool_: "boolean",
    int: "long",
    float: "double",
    str: "string",
    np.str_: "string",
    bytes: "binary",
    np.bytes_: "binary",
    bytearray: "binary",
}

_NUMERIC_RANK: Final[dict[str, int]] = {"integer": 0, "long": 1, "float": 2, "double": 3}


@dataclass(frozen=True)
class Signature:
    """An MLflow model signature: what a model takes and returns.

    ``inputs``/``outputs`` hold the decoded spec lists exactly as MLflow writes them
    (``{"type": ..., "name": ..., "required": ...}`` or tensor specs). ``params`` is kept
    only so that a signature read from an mlflow-written model round-trips; opsloop never
    infers it.
    """

    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]] | None = None
    params: list[dict[str, Any]] | None = None

    def to_mlmodel_dict(self) -> dict[str, str | None]:
        """The ``signature:`` section of an MLmodel file (spec lists as JSON strings)."""
        return {
            "inputs": json.dumps(self.inputs) if self.inputs else None,
            "outputs": json.dumps(self.outputs) if self.outputs else None,
            "params": json.dumps(self.params) if self.params else None,
        }

    @classmethod
    def from_mlmodel_dict(cls, d: Mapping[str, Any]) -> Signature:
        """Read the ``signature:`` section of an MLmodel file (as written by opsloop or mlflow)."""
        if not isinstance(d, Mapping):
            raise InvalidInput(f"A model signature must be a mapping, got {type(d).__name__}.")
        inputs = _decode_specs(d.get("inputs"), "inputs")
        return cls(
            inputs=inputs or [],
            outputs=_decode_specs(d.get("outputs"), "outputs"),
            params=_decode_specs(d.get("params"), "params"),
        )

    def to_json(self) -> str:
        """One JSON document for a database text column: the MLmodel section, JSON-encoded.

        This is the same text the registry stores when it reads a signature straight out of
        an MLmodel file, so every stored signature has one shape.
        """
        return json.dumps(self.to_mlmodel_dict())

    @classmethod
    def from_json(cls, text: str) -> Signature:
        """Inverse of :meth:`to_json`; also accepts plain lists instead of JSON strings."""
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"A stored model signature is not valid JSON: {e}") from e
        return cls.from_mlmodel_dict(d)

    def input_names(self) -> list[str] | None:
        """The input column (or tensor) names in order, or None if the inputs are unnamed."""
        names = [spec.get("name") for spec in self.inputs]
        if not names or any(n is None for n in names):
            return None
        return [str(n) for n in names]

    def is_tensor_based(self) -> bool:
        """True if the inputs are tensor specs (the model was described by numpy arrays)."""
        return bool(self.inputs) and all(spec.get("type") == "tensor" for spec in self.inputs)


def _decode_specs(value: Any, key: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise InvalidInput(f"Signature {key} is not valid JSON: {e}") from e
    if not isinstance(value, list) or not all(
        isinstance(spec, dict) and isinstance(spec.get("type"), str) for spec in value
    ):
        raise InvalidInput(
            f"Signature {key} must be a list of specs with a 'type' each, got {value!r}."
        )
    return value


# --------------------------------------------------------------------------- inference


def infer_signature(model_input: Any, model_output: Any = None) -> Signature:
    """Infer a signature from an example input (and optionally the model's output for it).

    Accepted: pandas DataFrame, pandas Series, numpy array (1-D or more; a tensor spec),
    dict of column -> list/array/scalar, list of row dicts, list of scalars (one unnamed
    column). For DataFrames and ndarrays the result equals ``mlflow.models.infer_signature``.
    Anything else raises :class:`~opsloop.errors.InvalidInput`.
    """
    inputs = infer_schema(model_input, what="model input")
    outputs = None if model_output is None else infer_schema(model_output, what="model output")
    return Signature(inputs=inputs, outputs=outputs)


def infer_schema(data: Any, *, what: str = "data") -> list[dict[str, Any]]:
    """Infer one schema (the decoded ``inputs`` or ``outputs`` list) from example data."""
    if isinstance(data, pd.DataFrame):
        if data.columns.has_duplicates:
            dupes = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise InvalidInput(f"The {what} has duplicate column names: {', '.join(dupes)}.")
        return [_colspec(col, *_series_type(col, data[col])) for col in data.columns]
    if isinstance(data, pd.Series):
        return [_colspec(data.name, *_series_type(data.name, data))]
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise InvalidInput(f"The {what} is a 0-d numpy array; pass at least one row.")
        return [_tensorspec(data)]
    if isinstance(data, Mapping):
        return _infer_dict(data, what)
    if isinstance(data, list | tuple):
        rows = list(data)
        if not rows:
            raise InvalidInput(f"The {what} is an empty list; cannot infer a schema from it.")
        if all(isinstance(r, Mapping) for r in rows):
            return _infer_records(rows, what)
        if any(isinstance(r, Mapping | list | tuple | np.ndarray) for r in rows):
            raise InvalidInput(
                f"The {what} is a list of lists or mixed values; pass a numpy array "
                "(np.asarray(...)), a DataFrame, or a list of row dicts."
            )
        return [_colspec(None, *_values_type(None, rows))]
    raise InvalidInput(
        f"Cannot infer a schema from {what} of type {type(data).__module__}."
        f"{type(data).__qualname__}; pass a pandas DataFrame or Series, a numpy array, "
        "a dict of column -> values, or a list of row dicts."
    )


def _colspec(name: Any, type_: str, required: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_}
    if name is not None:
        spec["name"] = _json_name(name)
    spec["required"] = required
    return spec


def _json_name(name: Any) -> str | int:
    # mlflow keeps int labels (e.g. a DataFrame built from an ndarray) as JSON ints.
    if isinstance(name, bool):
        return str(name)
    if isinstance(name, int | np.integer):
        return int(name)
    return name if isinstance(name, str) else str(name)


def _tensorspec(arr: np.ndarray[Any, Any]) -> dict[str, Any]:
    dtype = arr.dtype
    dtype_name = "str" if dtype.kind == "U" else "bytes" if dtype.kind == "S" else dtype.name
    shape = [-1, *(int(n) for n in arr.shape[1:])]
    return {"type": "tensor", "tensor-spec": {"dtype": dtype_name, "shape": shape}}


def _infer_dict(data: Mapping[Any, Any], what: str) -> list[dict[str, Any]]:
    if not data:
        raise InvalidInput(f"The {what} is an empty dict; cannot infer a schema from it.")
    specs = []
    for name, value in data.items():
        if not isinstance(name, str):
            raise InvalidInput(f"The {what} dict has a non-string key {name!r}.")
        if isinstance(value, pd.Series):
            specs.append(_colspec(name, *_series_type(name, value)))
        elif isinstance(value, np.ndarray):
            if value.ndim != 1:
                raise InvalidInput(
                    f"Column {name!r} of the {what} is a {value.ndim}-d array; columns must be 1-d."
                )
            specs.append(_colspec(name, *_series_type(name, pd.Series(value))))
        elif isinstance(value, list | tuple):
            specs.append(_colspec(name, *_values_type(name, list(value))))
        else:
            specs.append(_colspec(name, *_values_type(name, [value])))
    return specs


def _infer_records(rows: list[Any], what: str) -> list[dict[str, Any]]:
    columns: dict[Any, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    specs = []
    for name, values in columns.items():
        if not isinstance(name, str):
            raise InvalidInput(f"A row of the {what} has a non-string key {name!r}.")
        type_, required = _values_type(name, values)
        # A row that lacks the key makes the column optional, like a null does.
        required = required and len(values) == len(rows)
        specs.append(_colspec(name, type_, required))
    return specs


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def _scalar_type(name: Any, value: Any) -> str:
    exact = _SCALAR_TYPES.get(type(value))
    if exact is not None:
        return exact
    if isinstance(value, dt.date | np.datetime64):  # pd.Timestamp is a datetime
        return "datetime"
    if isinstance(value, np.generic):
        found = _dtype_type(value.dtype)
        if found is not None:
            return found
    where = f"column {name!r}" if name is not None else "the values"
    if isinstance(value, Mapping | list | tuple | np.ndarray):
        raise InvalidInput(
            f"Cannot infer a type for {where}: it holds {type(value).__name__} values; "
            "only scalar columns are supported."
        )
    raise InvalidInput(
        f"Cannot infer a type for {where}: {type(value).__name__} value {value!r} is not one "
        f"of {', '.join(COLUMN_TYPES)}."
    )


def _values_type(name: Any, values: Sequence[Any]) -> tuple[str, bool]:
    """MLflow type and requiredness of a column given as plain values (nulls skipped)."""
    non_null = [v for v in values if not _is_null(v)]
    where = f"column {name!r}" if name is not None else "the values"
    if not non_null:
        raise InvalidInput(f"Cannot infer a type for {where}: it holds only null values.")
    found = {_scalar_type(name, v) for v in non_null}
    if len(found) > 1:
        if found <= _NUMERIC_RANK.keys():
            found = {"double"}
        else:
            raise InvalidInput(
                f"Cannot infer a type for {where}: it mixes {', '.join(sorted(found))} values."
            )
    return found.pop(), len(non_null) == len(values)


def _dtype_type(dtype: Any) -> str | None:
    """MLflow type for a numpy/pandas dtype, or None (object dtypes need the values)."""
    kind = getattr(dtype, "kind", "O")
    size = int(getattr(dtype, "itemsize", 8) or 8)
    if kind == "b":
        return "boolean"
    if kind in ("i", "u"):
        if size < 4 or (kind == "i" and size == 4):
            return "integer"
        if size < 8 or (kind == "i" and size == 8):
            return "long"
        return None  # uint64 does not fit any MLflow type
    if kind == "f":
        return "float" if size <= 4 else "double" if size <= 8 else None
    if kind == "U":
        return "string"
    if kind == "S":
        return "binary"
    if kind == "M":
        return "datetime"
    return None


def _series_type(name: Any, s: pd.Series) -> tuple[str, bool]:
    required = not bool(s.isna().any())
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        return "string", required
    if dtype.kind == "O":
        inferred = s.infer_objects()
        if inferred.dtype.kind == "O":
            type_, _ = _values_type(name, s.tolist())
            return type_, required
        dtype = inferred.dtype
    found = _dtype_type(dtype)
    if found is None:
        where = f"column {name!r}" if name is not None else "the series"
        raise InvalidInput(
            f"Cannot infer a type for {where}: dtype {dtype} has no MLflow equivalent "
            f"(supported: {', '.join(COLUMN_TYPES)})."
        )
    return found, required


# --------------------------------------------------------------------------- enforcement


def enforce_schema(df: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """Check ``df`` against the signature's inputs and return it in the model's shape.

    Column-based signatures:

    * every ``required`` column must be present (matched by name; ``str(name)`` also matches
      so labels that went through JSON still fit) - else InvalidInput naming the columns;
      optional columns may be absent; columns not in the signature are dropped;
    * the result has the signature's column order (and the signature's labels);
    * types: a column already of the declared type passes. Otherwise, numeric -> numeric is
      cast only when no value changes (int -> double unless beyond 2**53, double -> long
      only if every value is integral and in range, double -> float only if exact), and
      missing values can never go into an integer column. ``string``/``binary`` accept
      object and string columns, ``boolean`` accepts bool columns (or objects holding only
      bools and nulls), ``datetime`` accepts datetime columns and parses object/string
      columns. Anything else raises InvalidInput naming the column. Types opsloop does not
      model (MLflow's array/object/map/any) pass through unchecked.
    * unnamed column specs match the first ``len(inputs)`` columns by position.

    Tensor-based signatures (one unnamed tensor): the number of columns must match the
    tensor's second dimension and every column is cast to the tensor dtype by the same
    rules; the caller turns the frame into an array (see ``PyFuncModel.predict``).
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidInput(f"Model input must be a pandas DataFrame, got {type(df).__name__}.")
    specs = signature.inputs
    if not specs:
        return df
    if signature.is_tensor_based():
        return _enforce_tensor(df, specs)
    if all(spec.get("name") is None for spec in specs):
        if df.shape[1] < len(specs):
            raise InvalidInput(
                f"Model input has {df.shape[1]} column(s); the signature expects {len(specs)}."
            )
        out = {
            df.columns[i]: _cast(df.columns[i], df.iloc[:, i], spec["type"])
            for i, spec in enumerate(specs)
        }
        return pd.DataFrame(out, index=df.index)

    by_key = {str(c): c for c in df.columns}
    missing = [
        spec.get("name")
        for spec in specs
        if str(spec.get("name")) not in by_key and spec.get("required", True)
    ]
    if missing:
        names = ", ".join(repr(n) for n in missing)
        raise InvalidInput(
            f"Model input is missing required column(s) {names}; "
            f"got columns {[str(c) for c in df.columns]}."
        )
    out = {}
    for spec in specs:
        name = spec.get("name")
        label = by_key.get(str(name))
        if label is None:
            continue
        out[name] = _cast(name, df[label], spec["type"])
    return pd.DataFrame(out, index=df.index)


def _enforce_tensor(df: pd.DataFrame, specs: list[dict[str, Any]]) -> pd.DataFrame:
    if len(specs) != 1 or specs[0].get("name") is not None:
        # Named (multi-)tensor signatures: one 1-d column per tensor, matched by name.
        by_key = {str(c): c for c in df.columns}
        missing = [s.get("name") for s in specs if str(s.get("name")) not in by_key]
        if missing:
            names = ", ".join(repr(n) for n in missing)
            raise InvalidInput(f"Model input is missing required column(s) {names}.")
        out = {
            s["name"]: _cast_to_dtype(
                s["name"], df[by_key[str(s["name"])]], _tensor_dtype(s), s["tensor-spec"]["dtype"]
            )
            for s in specs
        }
        return pd.DataFrame(out, index=df.index)
    spec = specs[0]
    shape = list(spec["tensor-spec"].get("shape", []))
    dtype = _tensor_dtype(spec)
    if len(shape) > 2:
        raise InvalidInput(
            f"The model takes a {len(shape)}-d tensor of shape {shape}; a table cannot feed it."
        )
    width = 1 if len(shape) <= 1 else int(shape[1])
    if width != -1 and df.shape[1] != width:
        raise InvalidInput(
            f"Model input has {df.shape[1]} column(s); the model's tensor signature "
            f"(shape {shape}) expects {width}."
        )
    out = {
        col: _cast_to_dtype(col, df[col], dtype, spec["tensor-spec"]["dtype"]) for col in df.columns
    }
    return pd.DataFrame(out, index=df.index)


def _tensor_dtype(spec: Mapping[str, Any]) -> np.dtype[Any]:
    name = spec.get("tensor-spec", {}).get("dtype")
    try:
        dtype: np.dtype[Any] = np.dtype(str(name))
    except TypeError as e:
        raise InvalidInput(f"The signature has an unknown tensor dtype {name!r}.") from e
    return dtype


def _type_error(name: Any, have: Any, want: str, hint: str = "") -> InvalidInput:
    return InvalidInput(
        f"Column {name!r} has type {have}, which cannot be safely converted to {want}.{hint}"
    )


def _cast(name: Any, s: pd.Series, type_: str) -> pd.Series:
    if type_ not in COLUMN_TYPES:
        return s  # array / object / map / any / tensor: not modelled by opsloop
    if type_ in _NUMERIC_DTYPES:
        return _cast_to_dtype(name, s, _NUMERIC_DTYPES[type_], type_)
    kind = s.dtype.kind
    if type_ == "string":
        if kind in ("O", "U"):
            return s
        raise _type_error(name, s.dtype, type_)
    if type_ == "binary":
        if kind in ("O", "S"):
            return s
        raise _type_error(name, s.dtype, type_)
    if type_ == "boolean":
        if kind == "b":
            return s
        if kind == "O" and all(_is_null(v) or isinstance(v, bool | np.bool_) for v in s):
            return s
        raise _type_error(name, s.dtype, type_)
    # datetime
    if kind == "M":
        return s
    if kind in ("O", "U"):
        try:
            return pd.to_datetime(s, errors="raise")
        except (ValueError, TypeError) as e:
            raise _type_error(name, s.dtype, type_, f" ({e})") from e
    raise _type_error(name, s.dtype, type_)


def _cast_to_dtype(name: Any, s: pd.Series, target: np.dtype[Any], want: str) -> pd.Series:
    """Cast ``s`` to ``target`` if no value changes; else InvalidInput naming the column."""
    src = s.dtype
    if src == target:
        return s
    if target.kind in ("U", "S", "O"):
        if src.kind in ("O", "U", "S"):
            return s
        raise _type_error(name, src, want)
    if target.kind == "b":
        if src.kind == "b":
            return s.astype(target)
        raise _type_error(name, src, want)
    if src.kind == "O" and not isinstance(src, pd.StringDtype):
        inferred = s.infer_objects()
        if inferred.dtype.kind in ("i", "u", "f"):
            return _cast_to_dtype(name, inferred, target, want)
    if src.kind not in ("i", "u", "f") or target.kind not in ("i", "u", "f"):
        raise _type_error(name, src, want)

    if target.kind in ("i", "u"):
        if bool(s.isna().any()):
            raise _type_error(
                name,
                src,
                want,
                " It has missing values, which an integer column cannot hold; declare the "
                "column as double in the signature if it can be missing.",
            )
        values = s.to_numpy()
        if values.size:
            if values.dtype.kind == "f" and not bool(np.all(np.mod(values, 1) == 0)):
                raise _type_error(name, src, want, " It has non-integral values.")
            info = np.iinfo(target)
            if values.min() < info.min or values.max() > info.max:
                raise _type_error(name, src, want, " It has values out of range.")
        return pd.Series(values.astype(target), index=s.index, name=s.name)

    # float target: exact for every value, NaN allowed.
    mask = s.notna().to_numpy()
    as_float = s.to_numpy(dtype=np.float64, na_value=np.nan)
    casted = as_float.astype(target)
    if src.kind in ("i", "u"):
        original = s[mask].to_numpy().astype(np.dtype(f"{src.kind}8"))
        with np.errstate(invalid="ignore", over="ignore"):
            exact = np.array_equal(casted[mask].astype(original.dtype), original)
    else:
        exact = np.array_equal(casted.astype(np.float64), as_float, equal_nan=True)
    if not exact:
        raise _type_error(name, src, want, " Some values would change.")
    return pd.Series(casted, index=s.index, name=s.name)


__all__ = [
    "COLUMN_TYPES",
    "Signature",
    "enforce_schema",
    "infer_schema",
    "infer_signature",
]
