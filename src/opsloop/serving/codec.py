"""Requests in, predictions out: the Open Inference Protocol v2 and MLflow's ``/invocations``.

Decoding turns a request body into :class:`Rows` (numpy columns, or one 2-D block, checked
against the model's :class:`~opsloop.serving.schema.InputSchema`); the batcher
concatenates the rows of several requests, :func:`model_input` turns them into what the
model takes (a DataFrame, or a numpy array for a tensor signature), and
:func:`split_outputs` cuts the predictions back into each request's share. Encoding writes
the answer in the protocol the request came in.

Checks (every failure is :class:`~opsloop.errors.InvalidInput`, a 400, naming the column):

* a required column missing, an unknown column (V2; ``/invocations`` drops extra columns
  as MLflow's server does), columns of different lengths, a value that is not a scalar;
* types: numbers are cast only when no value changes (an int to double unless beyond
  2**53, a double to long only when integral and in range, ...), strings never become
  numbers, booleans are booleans - the rules of the registry's ``enforce_schema``, which
  the non-numeric types (string, binary, datetime) go through;
* missing values (JSON ``null``, NaN) in a column the signature marks ``required``: the
  example it was inferred from had none, so a missing value there is an error, not
  something to hand the model;
* V2: every input's ``shape`` must hold its ``data``; a tensor model's input must have
  the tensor's shape.

V2 requests may use the binary tensor extension (``Inference-Header-Content-Length``;
what ``tritonclient`` sends by default), and may ask for binary outputs.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped]

from opsloop.errors import InvalidInput
from opsloop.registry.signature import Signature, enforce_schema
from opsloop.serving.schema import V2_DTYPES, Column, InputSchema, v2_datatype

_JSON_OPTS: Final = orjson.OPT_SERIALIZE_NUMPY
_INVOCATION_KEYS: Final = ("dataframe_split", "dataframe_records", "instances", "inputs")
_NUMBER_KINDS: Final = frozenset("iuf")
_FLOAT_EXACT_INT: Final = {2: 2**11, 4: 2**24, 8: 2**53}


class PredictError(Exception):
    """The model raised, or returned something the server cannot split: a 500."""


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class Rows:
    """Checked input of one request (or a batch): ``n`` rows.

    Either ``block``, a 2-D array whose columns are the schema's columns in order (or the
    tensor of a tensor model), or ``columns``, label -> 1-D array. ``key`` tells which
    requests can be concatenated (same columns, same dtypes).
    """

    n: int
    block: np.ndarray[Any, Any] | None = None
    columns: dict[Any, np.ndarray[Any, Any]] | None = None
    key: tuple[Any, ...] = ()


def _block_rows(block: np.ndarray[Any, Any]) -> Rows:
    return Rows(int(block.shape[0]), block=block, key=("block", block.dtype.str, block.shape[1:]))


def _column_rows(columns: dict[Any, np.ndarray[Any, Any]]) -> Rows:
    n = -1
    for label, values in columns.items():
        if n == -1:
            n = len(values)
        elif len(values) != n:
            lengths = {str(k): len(v) for k, v in columns.items()}
            raise InvalidInput(
                f"Columns have different numbers of rows ({lengths}); column {str(label)!r} "
                f"has {len(values)}, the first has {n}."
            )
    key = ("columns", *((k, v.dtype.str) for k, v in columns.items()))
    return Rows(max(n, 0), columns=columns, key=key)


def concat(parts: Sequence[Rows]) -> Rows:
    """One :class:`Rows` of the parts' rows in order (parts share one ``key``)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if first.block is not None:
        return _block_rows(np.concatenate([p.block for p in parts if p.block is not None]))
    assert first.columns is not None
    labels = list(first.columns)
    return Rows(
        sum(p.n for p in parts),
        columns={
            k: np.concatenate([p.columns[k] for p in parts if p.columns is not None])
            for k in labels
        },
        key=first.key,
    )


def model_input(rows: Rows, schema: InputSchema) -> Any:
    """What the model's predict takes: a DataFrame, or a numpy array for a tensor model."""
    if schema.layout == "tensor":
        assert rows.block is not None
        return rows.block
    if rows.block is not None:
        return pd.DataFrame(rows.block, columns=[c.key for c in schema.columns], copy=False)
    assert rows.columns is not None
    return pd.DataFrame(rows.columns, copy=False)


# --------------------------------------------------------------------------- checks


def _what(col: Column | None, label: Any) -> str:
    if col is not None and col.type == "tensor" and col.spec.get("name") is None:
        return f"input {col.name!r}"
    return f"column {str(label)!r}"


def _type_error(
    col: Column | None, label: Any, have: str, want: str, why: str = ""
) -> InvalidInput:
    what = _what(col, label)
    return InvalidInput(
        f"{what[0].upper()}{what[1:]} has {have} values, which cannot be safely converted "
        f"to {want}.{why}"
    )


def _missing_error(col: Column | None, label: Any) -> InvalidInput:
    what = _what(col, label)
    return InvalidInput(
        f"{what[0].upper()}{what[1:]} has missing values (null or NaN), which its signature "
        "does not allow (the column is required)."
    )


def _objects_to_numbers(col: Column | None, label: Any, values: np.ndarray[Any, Any]) -> Any:
    """An object array (JSON with nulls or mixed values) as float64, or an error."""
    out = np.empty(values.shape, dtype=np.float64)
    flat_in = values.ravel()
    flat_out = out.ravel()
    want = col.type if col is not None else "a number"
    for i, v in enumerate(flat_in):
        t = type(v)
        if v is None:
            flat_out[i] = math.nan
        elif t is float or t is int or (isinstance(v, np.number) and not isinstance(v, np.bool_)):
            flat_out[i] = v
        else:
            kind = (
                "boolean"
                if isinstance(v, bool | np.bool_)
                else "string"
                if isinstance(v, str)
                else type(v).__name__
            )
            raise _type_error(col, label, kind, want)
    return out


def _cast_number(
    col: Column | None, label: Any, values: np.ndarray[Any, Any], target: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """Cast numeric ``values`` to ``target`` if no value changes; else name the column."""
    src = values.dtype
    if src == target:
        return values
    if src.kind == "O":
        values = _objects_to_numbers(col, label, values)
        src = values.dtype
        if src == target:
            return values
    want = col.type if col is not None else target.name
    if target.kind == "b":
        if src.kind == "b":
            return values
        raise _type_error(col, label, _kind_name(src), want)
    if src.kind not in _NUMBER_KINDS:
        raise _type_error(col, label, _kind_name(src), want)
    if target.kind == "f":
        if src.kind in ("i", "u"):
            limit = _FLOAT_EXACT_INT.get(target.itemsize, 2**53)
            if values.size and int(np.abs(values).max()) > limit:
                raise _type_error(col, label, src.name, want, " Some values would change.")
            return values.astype(target)
        out = values.astype(target)
        if target.itemsize < src.itemsize:
            with np.errstate(over="ignore"):
                same = np.array_equal(out.astype(src), values, equal_nan=True)
            if not same:
                raise _type_error(col, label, src.name, want, " Some values would change.")
        return out
    # integer target
    if src.kind == "f":
        if np.isnan(values).any():
            raise _missing_error(col, label)
        if not bool(np.all(np.mod(values, 1) == 0)):
            raise _type_error(col, label, src.name, want, " It has non-integral values.")
    if values.size:
        info = np.iinfo(target)
        low, high = values.min(), values.max()
        if src.kind == "f":  # compare as floats: float(2**63 - 1) rounds up to 2**63
            out_of_range = low < float(info.min) or high >= float(int(info.max) + 1)
        else:
            out_of_range = int(low) < info.min or int(high) > info.max
        if out_of_range:
            raise _type_error(col, label, src.name, want, " It has values out of range.")
    return values.astype(target)


def _kind_name(dtype: np.dtype[Any]) -> str:
    return {"b": "boolean", "U": "string", "S": "bytes", "O": "mixed", "M": "datetime"}.get(
        dtype.kind, dtype.name
    )


def _check_column(col: Column, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """One column's values (1-D) checked and cast to the model's dtype."""
    if values.ndim != 1:
        raise InvalidInput(
            f"Column {col.name!r} must hold one scalar per row; it got an array of shape "
            f"{list(values.shape)}."
        )
    if col.numeric:
        out = _cast_number(col, col.key, values, col.dtype)
        if col.required and out.dtype.kind == "f" and bool(np.isnan(out).any()):
            raise _missing_error(col, col.key)
        return out
    if values.dtype.kind in ("U", "S"):
        values = values.astype(object)
    if col.type not in ("string", "binary", "datetime", "boolean"):
        return values  # MLflow's array/object/map/any: the model checks them
    if col.required and bool(pd.isna(values).any()):
        raise _missing_error(col, col.key)
    frame = pd.DataFrame({col.key: values})
    checked = enforce_schema(frame, Signature(inputs=[col.spec]))
    return np.asarray(checked[col.key].to_numpy())


def _check_block(schema: InputSchema, block: np.ndarray[Any, Any]) -> Rows | None:
    """The fast path: a 2-D numeric block for columns that all share one numeric dtype.

    None when it does not apply (the caller then checks column by column, which also
    gives the precise error).
    """
    cols = schema.columns
    if block.ndim != 2 or block.shape[1] != len(cols) or block.dtype.kind not in "biuf":
        return None
    target = cols[0].dtype
    if not all(c.numeric and c.dtype == target for c in cols):
        return None
    try:
        out = _cast_number(None, None, block, target)
    except InvalidInput:
        return None
    if out.dtype.kind == "f":
        nan = np.isnan(out).any(axis=0)
        if nan.any():
            for j in np.flatnonzero(nan):
                if cols[int(j)].required:
                    raise _missing_error(cols[int(j)], cols[int(j)].key)
    return _block_rows(out)


def _check_tensor(schema: InputSchema, values: np.ndarray[Any, Any], name: str) -> Rows:
    col = schema.columns[0]
    shape = col.shape
    if values.ndim == len(shape) - 1 and len(shape) >= 2 and values.ndim >= 1:
        values = values.reshape(1, *values.shape)  # one row given without its batch dimension
    if values.ndim != len(shape) or any(
        want != -1 and have != want for have, want in zip(values.shape[1:], shape[1:], strict=False)
    ):
        raise InvalidInput(
            f"Input {name!r} has shape {list(values.shape)}; the model takes a tensor of shape "
            f"{list(shape)} (-1: any size)."
        )
    if col.numeric:
        values = _cast_number(col, name, values, col.dtype)
    elif values.dtype.kind in ("U", "S"):
        values = values.astype(object)
    if values.shape[0] == 0:
        raise InvalidInput("The request has no rows.")
    return _block_rows(values)


def _check_columns(
    schema: InputSchema, given: Mapping[str, np.ndarray[Any, Any]], *, strict: bool
) -> Rows:
    """Named columns (V2 inputs, records, a columnar dict, CSV) checked against the schema."""
    if schema.layout == "any":
        columns = {}
        for name, values in given.items():
            if values.ndim != 1:
                raise InvalidInput(
                    f"Column {name!r} must hold one scalar per row; it got an array of shape "
                    f"{list(values.shape)}."
                )
            columns[name] = values.astype(object) if values.dtype.kind in ("U", "S") else values
        rows = _column_rows(columns)
    else:
        by_name = schema.by_name
        if strict:
            unknown = [name for name in given if name not in by_name]
            if unknown:
                raise InvalidInput(
                    f"Unknown input column(s) {_names(unknown)}; the model "
                    f"takes {_names([c.name for c in schema.columns])}."
                )
        missing = [c.name for c in schema.columns if c.required and c.name not in given]
        if missing:
            raise InvalidInput(
                f"Missing required input column(s) {_names(missing)}; got {_names(list(given))}."
            )
        rows = _column_rows(
            {c.key: _check_column(c, given[c.name]) for c in schema.columns if c.name in given}
        )
    if rows.n == 0:
        raise InvalidInput("The request has no rows.")
    return rows


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = len(names) - limit
    return (shown + (f" and {more} more" if more > 0 else "")) or "none"


def _as_array(data: Any, what: str) -> np.ndarray[Any, Any]:
    try:
        arr = np.asarray(data)
    except ValueError as e:  # ragged nested lists
        raise InvalidInput(
            f"{what} is not a regular array (rows of different lengths?): {e}"
        ) from e
    if (
        arr.dtype.kind == "O"
        and arr.size
        and any(isinstance(v, list | dict) for v in arr.ravel()[:64])
    ):
        raise InvalidInput(f"{what} is not a regular array: rows have different lengths or types.")
    return arr


def _check_positional(schema: InputSchema, block: np.ndarray[Any, Any], what: str) -> Rows:
    """A 2-D block of rows (``instances``, unnamed ``dataframe_split``, one V2 tensor)."""
    if schema.layout == "tensor":
        return _check_tensor(schema, block, schema.columns[0].name)
    if block.ndim == 1 and schema.layout == "columns" and len(schema.columns) == 1:
        block = block.reshape(-1, 1)
    if block.ndim == 1 and schema.layout == "columns":
        block = block.reshape(1, -1)  # one row
    if block.ndim != 2:
        raise InvalidInput(
            f"{what} has shape {list(block.shape)}; rows of columns (a 2-D array) are expected."
        )
    if schema.layout == "any":
        return _check_columns(
            schema, {str(j): block[:, j] for j in range(block.shape[1])}, strict=False
        )
    if block.shape[1] != len(schema.columns):
        raise InvalidInput(
            f"{what} has {block.shape[1]} column(s) per row; the model takes "
            f"{len(schema.columns)} ({', '.join(repr(c.name) for c in schema.columns)})."
        )
    if block.shape[0] == 0:
        raise InvalidInput("The request has no rows.")
    fast = _check_block(schema, block)
    if fast is not None:
        return fast
    return _check_columns(
        schema, {c.name: block[:, j] for j, c in enumerate(schema.columns)}, strict=True
    )


# --------------------------------------------------------------------------- MLflow


def decode_invocations(body: bytes, content_type: str, schema: InputSchema) -> Rows:
    """An MLflow ``/invocations`` body (JSON or CSV) as checked rows."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return _decode_csv(body, schema)
    if media not in ("application/json", ""):
        raise InvalidInput(
            f"Content type {media!r} is not supported; send application/json or text/csv."
        )
    doc = _loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput(
            "The body must be a JSON object with one of the keys "
            + ", ".join(_INVOCATION_KEYS)
            + "."
        )
    keys = [k for k in _INVOCATION_KEYS if k in doc]
    if len(keys) != 1:
        unknown = sorted(set(doc) - {"params", *_INVOCATION_KEYS})
        extra = f" (got keys {', '.join(map(repr, unknown))})" if unknown and not keys else ""
        raise InvalidInput(
            "The body must have exactly one of the keys "
            + ", ".join(_INVOCATION_KEYS)
            + extra
            + "."
        )
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        return _decode_split(value, schema)
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise InvalidInput("dataframe_records must be a list of row objects.")
        return _decode_records(value, schema)
    # instances / inputs (TF-serving): a columnar object, row objects, or rows of values
    if isinstance(value, dict):
        return _decode_columnar(value, schema, key)
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return _decode_records(value, schema)
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list of rows or an object of columns.")
    return _check_positional(schema, _as_array(value, key), key)


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        # Python's json module (and so some MLflow callers) writes NaN and Infinity as
        # bare words, which strict JSON - and orjson - refuse; read those the slow way.
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            pass
        raise InvalidInput(f"The body is not valid JSON: {e}") from None


def _decode_split(value: Any, schema: InputSchema) -> Rows:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InvalidInput('dataframe_split must be an object with "data" (a list of rows).')
    data = value["data"]
    names = value.get("columns")
    if names is None:
        return _check_positional(
            schema, _as_array(data, "dataframe_split.data"), "dataframe_split.data"
        )
    if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
        raise InvalidInput("dataframe_split.columns must be a list of column names.")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise InvalidInput("dataframe_split.columns names a column twice.")
    if not data:
        raise InvalidInput("The request has no rows.")
    if schema.layout == "columns" and names == [c.name for c in schema.columns]:
        block = _as_array(data, "dataframe_split.data")
        if block.ndim == 2 and block.shape[1] == len(names):
            fast = _check_block(schema, block)
            if fast is not None:
                return fast
    if not all(isinstance(r, list) and len(r) == len(names) for r in data):
        raise InvalidInput(f"Every row of dataframe_split.data must have {len(names)} values.")
    if schema.layout == "tensor":
        return _check_tensor(
            schema, _as_array(data, "dataframe_split.data"), schema.columns[0].name
        )
    columns = {
        n: _as_array(list(vals), f"column {n!r}")
        for n, vals in zip(names, zip(*data, strict=True), strict=True)
    }
    return _check_columns(schema, columns, strict=False)


def _decode_records(rows: list[dict[str, Any]], schema: InputSchema) -> Rows:
    if not rows:
        raise InvalidInput("The request has no rows.")
    if schema.layout == "tensor":
        frame = pd.DataFrame(rows)
        return _check_tensor(schema, frame.to_numpy(), schema.columns[0].name)
    if schema.layout == "columns":
        names = [c.name for c in schema.columns if any(c.name in r for r in rows)]
    else:
        names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {n: _as_array([r.get(n) for r in rows], f"column {n!r}") for n in names}
    return _check_columns(schema, columns, strict=False)


def _decode_columnar(value: dict[str, Any], schema: InputSchema, key: str) -> Rows:
    if schema.layout == "tensor":
        if len(value) != 1:
            raise InvalidInput(f"{key} names {len(value)} tensors; the model takes one.")
        ((name, data),) = value.items()
        return _check_tensor(schema, _as_array(data, f"{key}.{name}"), str(name))
    columns = {}
    for name, data in value.items():
        arr = _as_array(data if isinstance(data, list) else [data], f"column {name!r}")
        columns[str(name)] = arr
    return _check_columns(schema, columns, strict=False)


def _decode_csv(body: bytes, schema: InputSchema) -> Rows:
    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InvalidInput(f"The body is not valid CSV: {e}") from None
    if schema.layout == "tensor":
        return _check_tensor(schema, frame.to_numpy(), schema.columns[0].name)
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    return _check_columns(schema, columns, strict=False)


# --------------------------------------------------------------------------- V2


@dataclass(slots=True)
class V2Request:
    """A decoded V2 infer request: its rows and how it wants its answer."""

    rows: Rows
    id: str | None = None
    outputs: list[str] | None = None
    binary: set[str] = field(default_factory=set)
    binary_all: bool = False


def decode_v2(body: bytes, schema: InputSchema, header_length: int | None = None) -> V2Request:
    """A V2 infer request (JSON, or JSON + binary tensors) as checked rows."""
    raw = body
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length}, but the body has "
                f"{len(body)} bytes."
            )
        raw, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        binary = memoryview(b"")
    doc = _loads(raw)
    if not isinstance(doc, dict):
        raise InvalidInput('The infer request must be a JSON object with "inputs".')
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('The infer request needs "inputs": a list of tensors.')
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string.')
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        name, arr, offset = _decode_tensor(tensor, i, binary, offset)
        if name in tensors:
            raise InvalidInput(f"Input {name!r} is given twice.")
        tensors[name] = arr
    if offset != len(binary):
        raise InvalidInput(
            f"The body has {len(binary) - offset} bytes of binary data no input claims."
        )
    rows = _v2_rows(schema, tensors)
    req = V2Request(rows, request_id)
    params = doc.get("parameters")
    if isinstance(params, dict) and params.get("binary_data_output"):
        req.binary_all = True
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise InvalidInput('"outputs" must be a list of objects with a "name".')
        req.outputs = [o["name"] for o in outputs]
        for o in outputs:
            p = o.get("parameters")
            if isinstance(p, dict) and p.get("binary_data"):
                req.binary.add(o["name"])
    return req


def _decode_tensor(
    tensor: Any, i: int, binary: memoryview, offset: int
) -> tuple[str, np.ndarray[Any, Any], int]:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype and data.")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f'inputs[{i}] has no "name".')
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidInput(f'Input {name!r} needs a "shape": a list of non-negative integers.')
    datatype = tensor.get("datatype")
    dtype = V2_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInput(
            f"Input {name!r} has datatype {datatype!r}; expected one of {', '.join(V2_DTYPES)}."
        )
    count = math.prod(shape)
    params = tensor.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidInput(f"Input {name!r} has a binary_data_size beyond the body.")
        chunk = binary[offset : offset + size]
        offset += size
        if datatype == "BYTES":
            arr = _deserialize_bytes(chunk, name)
        else:
            if size != count * dtype.itemsize:
                raise InvalidInput(
                    f"Input {name!r} has {size} bytes of {datatype} data; shape {shape} needs "
                    f"{count * dtype.itemsize}."
                )
            arr = np.frombuffer(chunk, dtype=dtype)
    else:
        if "data" not in tensor:
            raise InvalidInput(f'Input {name!r} has no "data".')
        arr = _as_array(tensor["data"], f"Input {name!r}")
        if datatype == "BYTES":
            arr = arr.astype(object) if arr.dtype.kind in ("U", "S") else arr
        elif arr.dtype.kind in ("U", "S"):
            raise InvalidInput(f"Input {name!r} is declared {datatype} but holds strings.")
        elif datatype == "BOOL" and arr.size and arr.dtype.kind != "b":
            raise InvalidInput(f"Input {name!r} is declared BOOL but holds non-boolean values.")
    if arr.size != count:
        raise InvalidInput(
            f"Input {name!r} has {arr.size} values; its shape {shape} needs {count}."
        )
    return name, arr.reshape(shape), offset


def _deserialize_bytes(chunk: memoryview, name: str) -> np.ndarray[Any, Any]:
    """Triton's BYTES encoding: each element a 4-byte little-endian length, then its bytes."""
    data = bytes(chunk)
    items: list[Any] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise InvalidInput(f"Input {name!r} has truncated BYTES data.")
        n = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if pos + n > len(data):
            raise InvalidInput(f"Input {name!r} has truncated BYTES data.")
        raw = data[pos : pos + n]
        pos += n
        try:
            items.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            items.append(raw)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _v2_rows(schema: InputSchema, tensors: dict[str, np.ndarray[Any, Any]]) -> Rows:
    if schema.layout == "tensor":
        if len(tensors) != 1:
            raise InvalidInput(
                f"The model takes one tensor ({schema.columns[0].name!r}); got "
                f"{', '.join(repr(t) for t in tensors)}."
            )
        ((name, arr),) = tensors.items()
        return _check_tensor(schema, arr, name)
    names = schema.by_name
    if len(tensors) == 1:
        ((name, arr),) = tensors.items()
        if name not in names and arr.ndim == 2 and schema.layout == "columns":
            # one [rows, columns] tensor: the signature's columns, in order
            return _check_positional(schema, arr, f"Input {name!r}")
        if name not in names and arr.ndim == 2 and schema.layout == "any":
            return _check_positional(schema, arr, f"Input {name!r}")
    columns = {}
    for name, arr in tensors.items():
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        columns[name] = arr
    return _check_columns(schema, columns, strict=True)


# --------------------------------------------------------------------------- outputs


@dataclass(slots=True)
class Outputs:
    """A model's predictions for some rows: named arrays, row-aligned.

    ``frame`` is True when the model returned a DataFrame (``/invocations`` then answers
    with one object per row, as MLflow does).
    """

    arrays: list[tuple[str, np.ndarray[Any, Any]]]
    frame: bool = False

    def slice(self, start: int, stop: int) -> Outputs:
        return Outputs([(n, a[start:stop]) for n, a in self.arrays], self.frame)


def outputs_of(raw: Any, n: int, declared: Sequence[Column]) -> Outputs:
    """The model's return value as named arrays of ``n`` rows (else :class:`PredictError`)."""
    out: Outputs
    if isinstance(raw, pd.DataFrame):
        out = Outputs([(str(c), raw[c].to_numpy()) for c in raw.columns], frame=True)
    elif isinstance(raw, pd.Series):
        name = (
            declared[0].name
            if len(declared) == 1
            else (str(raw.name) if raw.name is not None else "predict")
        )
        out = Outputs([(name, raw.to_numpy())])
    elif isinstance(raw, dict):
        out = Outputs([(str(k), np.asarray(v)) for k, v in raw.items()])
    else:
        arr = np.asarray(raw)
        if arr.ndim == 0:
            raise PredictError(
                f"The model returned a single {type(raw).__name__} for {n} rows; it must return "
                "one prediction per row."
            )
        if len(declared) > 1 and arr.ndim == 2 and arr.shape[1] == len(declared):
            out = Outputs([(c.name, arr[:, j]) for j, c in enumerate(declared)])
        else:
            out = Outputs([(declared[0].name if len(declared) == 1 else "predict", arr)])
    for name, arr in out.arrays:
        if len(arr) != n:
            raise PredictError(
                f"The model returned {len(arr)} rows of {name!r} for {n} input rows."
            )
    return out


def _json_values(arr: np.ndarray[Any, Any]) -> Any:
    if arr.dtype.kind in "biuf" and arr.dtype != np.float16:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "M":
        return np.datetime_as_string(arr).tolist()
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.tolist()]


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc, option=_JSON_OPTS)
    except TypeError:
        return orjson.dumps(doc, option=_JSON_OPTS, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def encode_invocations(out: Outputs) -> bytes:
    """MLflow's answer: ``{"predictions": [...]}`` (one object per row for a DataFrame)."""
    if out.frame:
        names = [n for n, _ in out.arrays]
        columns = [a.tolist() for _, a in out.arrays]
        records = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        return _dumps({"predictions": records})
    if len(out.arrays) == 1:
        return _dumps({"predictions": _json_values(out.arrays[0][1])})
    return _dumps({"predictions": {n: _json_values(a) for n, a in out.arrays}})


def encode_v2(
    model_name: str, model_version: str, req: V2Request, out: Outputs
) -> tuple[bytes, int | None]:
    """A V2 infer response: the body, and the JSON header's length if tensors follow in binary."""
    arrays = out.arrays
    if req.outputs is not None:
        have = {n: a for n, a in arrays}
        unknown = [n for n in req.outputs if n not in have]
        if unknown:
            raise InvalidInput(
                f"Unknown output(s) {', '.join(map(repr, unknown))}; the model returns "
                f"{', '.join(map(repr, have))}."
            )
        arrays = [(n, have[n]) for n in req.outputs]
    tensors = []
    blobs: list[bytes] = []
    for name, arr in arrays:
        datatype = v2_datatype(arr.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if req.binary_all or name in req.binary:
            blob = _binary(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_values(arr.reshape(-1))
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = tensors
    head = _dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _binary(arr: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(arr).tobytes()
    parts = []
    for v in arr.reshape(-1).tolist():
        raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def v2_error(message: str) -> bytes:
    """The V2 error body: ``{"error": "..."}``."""
    return orjson.dumps({"error": message})


__all__ = [
    "Outputs",
    "PredictError",
    "Rows",
    "V2Request",
    "concat",
    "decode_invocations",
    "decode_v2",
    "encode_invocations",
    "encode_v2",
    "model_input",
    "outputs_of",
    "v2_error",
]
