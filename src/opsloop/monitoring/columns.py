"""Reading one column at a time from a pandas DataFrame or a pyarrow Table.

The drift engine never converts a whole table: it takes one column, turns it into
what its statistics need (a float64 array with NaN for missing values, or category
labels with counts) and lets it go, so the memory a check needs beyond its inputs is
a few columns' worth.

Kinds follow ``opsloop.data.profile.column_kind``: ``numeric`` (integers, floats,
decimals), ``categorical`` (strings, booleans, dictionary/category columns, and
pandas object columns, whatever they hold: values become labels with ``str``,
booleans ``"true"``/``"false"``, and a column mixing Python types is flagged),
``datetime`` and ``other`` (not tested; their missing share is still compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from opsloop.data.profile import CATEGORICAL, DATETIME, NUMERIC, OTHER, column_kind
from opsloop.errors import InvalidInput

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass
class Column:
    """One column, read: ``values`` for numeric, ``labels``/``counts`` for categorical."""

    name: str
    type: str
    kind: str
    rows: int
    missing: int = 0
    values: Floats | None = None
    labels: list[str] = field(default_factory=list)
    counts: Ints = field(default_factory=lambda: np.zeros(0, np.int64))
    mixed_types: list[str] | None = None
    # A string column counted against known labels (``read(..., known)``): they are
    # the first ``n_known`` labels, and ``codes`` holds each row's position among
    # them, ``n_known`` where missing or unseen.
    codes: npt.NDArray[np.integer[Any]] | None = None
    n_known: int = 0


def is_table(data: object) -> bool:
    import pandas as pd  # type: ignore[import-untyped]

    return isinstance(data, (pd.DataFrame, pa.Table, pa.RecordBatch))


def names(data: object) -> list[str]:
    """The column names of a DataFrame or Arrow table, as strings."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns]
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return list(data.schema.names)
    raise InvalidInput(
        f"cannot check drift on a {type(data).__name__}: give a pandas DataFrame, a pyarrow "
        "Table, a fitted Reference or a dataset reference such as 'sensors@3'"
    )


def num_rows(data: object) -> int:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return len(data)
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return int(data.num_rows)
    raise InvalidInput(f"not a table: {type(data).__name__}")


def read(
    data: object, name: str, known: pa.Array | None = None, count_missing: bool = True
) -> Column:
    """Column ``name`` of ``data``, read for the statistics.

    ``known``: the reference's labels of a categorical column (a string array), which
    a string column is then counted against (``_count_known``) instead of hashed into
    a table of its own values; the result is the same. ``count_missing=False``: a
    numeric column's ``missing`` is left at -1 (its reader counts them in its own
    pass over the values).
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        s = _series(data, name)
        if known is not None:
            arrow = _arrow_backed(s)
            if arrow is not None and _stringy(arrow.type):
                return _count_known(name, "string", arrow, known)
        return _from_series(name, s, count_missing)
    assert isinstance(data, (pa.Table, pa.RecordBatch))
    col = data.column(name)
    if known is not None and _stringy(col.type):
        return _count_known(name, "string", col, known)
    return _from_arrow(name, col, count_missing)


def _nan_count(x: Floats, count: bool) -> int:
    return int(np.count_nonzero(np.isnan(x))) if count else -1


def _count_known(name: str, tname: str, arr: pa.ChunkedArray | pa.Array, known: pa.Array) -> Column:
    """A string column counted against the reference's labels ``known``: each value's
    position among them (Arrow's ``index_in``, one hash lookup in a table of the
    reference's few labels), counted; the values not among them (unseen categories)
    counted by value, in the order they first appear, as ``pc.value_counts`` gives."""
    from opsloop.monitoring._kernels import bincount

    k = len(known)
    idx = pc.index_in(arr, value_set=known)
    codes = pc.fill_null(idx, k)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks() if codes.num_chunks != 1 else codes.chunk(0)
    positions = np.asarray(codes.to_numpy(zero_copy_only=False))
    counts = bincount(positions, k + 1)
    missing = int(arr.null_count)
    labels = [str(v) for v in known.to_pylist()]
    out = counts[:k].astype(np.int64)
    if int(counts[k]) > missing:  # unseen values
        rest = pc.filter(arr, pc.and_(pc.is_null(idx), pc.is_valid(arr)))
        vc = pc.value_counts(rest)
        labels += [str(v) for v in pc.cast(vc.field("values"), pa.string()).to_pylist()]
        more = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
        out = np.concatenate((out, more))
    return Column(
        name,
        tname,
        CATEGORICAL,
        len(arr),
        missing,
        labels=labels,
        counts=out,
        codes=positions,
        n_known=k,
    )


def encode_labels(
    data: object, name: str, rows: npt.NDArray[np.intp], codes: dict[str, float]
) -> Floats:
    """``codes[label]`` for some rows of a categorical column (0 where missing or unknown).

    String columns map in one vectorised pass; others go value by value (``label``).
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        full = _series(data, name)
        arrow = _arrow_backed(full)
        if arrow is not None and _stringy(arrow.type):  # no pandas take: Arrow's
            return _string_codes(arrow.take(pa.array(rows, type=pa.int64())), codes)
        s = full.iloc[rows]
        if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
            return _string_codes(pa.array(s), codes)
    else:
        assert isinstance(data, (pa.Table, pa.RecordBatch))
        arr = _one(data.column(name)).take(pa.array(rows, type=pa.int64()))
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if _stringy(arr.type):
            return _string_codes(arr, codes)
        s = pd.Series(arr.to_pylist(), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        mapped = s.astype(object).map(codes)
        return np.asarray(mapped.to_numpy(dtype=np.float64, na_value=0.0), dtype=np.float64)
    labels = [None if _isna(v) else label(v) for v in s.tolist()]
    return np.asarray([codes.get(v, 0.0) if v is not None else 0.0 for v in labels])


def _stringy(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _string_codes(arr: pa.Array | pa.ChunkedArray, codes: dict[str, float]) -> Floats:
    """``codes[value]`` of a string array, 0 where missing or unknown: one hash lookup
    per value in Arrow (a string's label is itself)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    idx = pc.index_in(arr, value_set=pa.array(list(codes), type=arr.type))
    pos = np.asarray(pc.fill_null(idx, len(codes)).to_numpy(zero_copy_only=False), np.intp)
    table = np.append(np.fromiter(codes.values(), np.float64, len(codes)), 0.0)
    out: Floats = table[pos]
    return out


def _arrow_backed(s: Any) -> pa.ChunkedArray | None:
    """The Arrow data of a pandas Series backed by Arrow (``str``, ``string[pyarrow]``,
    ``ArrowDtype``), without a copy; None for other Series."""
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
    ):
        data = getattr(s.array, "_pa_array", None)
        if isinstance(data, pa.ChunkedArray):
            return data
    return None


def read_numeric_rows(data: object, name: str, rows: npt.NDArray[np.intp]) -> Floats:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        full = _series(data, name)
        if isinstance(full.dtype, np.dtype) and full.dtype.kind in "fiu":
            # A numpy column: index it directly (pandas' take costs more than the rows).
            return np.asarray(full.to_numpy()[rows], dtype=np.float64)
        s = full.iloc[rows]
        return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    assert isinstance(data, (pa.Table, pa.RecordBatch))
    col = data.column(name).take(pa.array(rows, type=pa.int64()))
    return _arrow_floats(col)


def _series(df: Any, name: str) -> Any:
    if name in df.columns:
        s = df[name]
    else:  # a non-string column label, matched by its string form
        pos = [str(c) for c in df.columns].index(name)
        s = df.iloc[:, pos]
    if getattr(s, "ndim", 1) != 1:
        raise InvalidInput(f"column {name!r} appears more than once; rename the duplicates")
    return s


def label(v: Any) -> str:
    """A category value as the profile's label: booleans ``true``/``false``, else ``str``."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return str(v)


def _isna(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, pd.NA raises
    except (TypeError, ValueError):
        return v is not None and type(v).__name__ in ("NAType", "NaTType")


def _from_series(name: str, s: Any, count_missing: bool = True) -> Column:
    import pandas as pd

    dtype = s.dtype
    rows = len(s)
    tname = str(dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return _categorical_pandas(name, "bool", s, rows)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        x = np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        missing = _nan_count(x, count_missing)
        return Column(name, _arrowish(tname), NUMERIC, rows, missing, values=x)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        kind = DATETIME if pd.api.types.is_datetime64_any_dtype(dtype) else OTHER
        return Column(name, tname, kind, rows, int(s.isna().sum()))
    if isinstance(dtype, pd.ArrowDtype):
        return _from_arrow(name, pa.array(s), count_missing)
    if pd.api.types.is_complex_dtype(dtype):
        return Column(name, tname, OTHER, rows, int(s.isna().sum()))
    return _categorical_pandas(name, "string" if tname in ("str", "string") else tname, s, rows)


def _categorical_pandas(name: str, tname: str, s: Any, rows: int) -> Column:
    missing = int(s.isna().sum())
    try:
        vc = s.value_counts(dropna=True, sort=False)
    except TypeError:  # unhashable values (lists, dicts): count their text
        vc = s.dropna().map(repr).value_counts(sort=False)
    keys = list(vc.index)
    counts = np.asarray(vc.to_numpy(), dtype=np.int64)
    mixed: list[str] | None = None
    if tname == "object":
        types = sorted({type(k).__name__ for k in keys})
        mixed = types if len(types) > 1 else None
    labels = [label(k) for k in keys]
    labels, counts = _merge_labels(labels, counts)
    return Column(
        name, tname, CATEGORICAL, rows, missing, labels=labels, counts=counts, mixed_types=mixed
    )


def _merge_labels(labels: list[str], counts: Ints) -> tuple[list[str], Ints]:
    """Sum the counts of values whose labels coincide (``1`` and ``"1"`` in one object column)."""
    if len(set(labels)) == len(labels):
        return labels, counts
    acc: dict[str, int] = {}
    for lab, c in zip(labels, counts.tolist(), strict=True):
        acc[lab] = acc.get(lab, 0) + int(c)
    return list(acc), np.asarray(list(acc.values()), dtype=np.int64)


def _arrowish(tname: str) -> str:
    """pandas dtype names as Arrow's, so a DataFrame and a Table of one data agree."""
    mapping = {
        "float64": "double",
        "Float64": "double",
        "float32": "float",
        "Float32": "float",
        "float16": "halffloat",
    }
    if tname in mapping:
        return mapping[tname]
    return tname.lower()


def _one(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _arrow_floats(col: pa.ChunkedArray | pa.Array) -> Floats:
    arr = _one(col)
    if arr.type != pa.float64():
        arr = pc.cast(arr, pa.float64(), safe=False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def _from_arrow(name: str, col: pa.ChunkedArray | pa.Array, count_missing: bool = True) -> Column:
    arr = _one(col)
    t = arr.type
    kind = column_kind(t)
    tname = str(t)
    rows = len(arr)
    if kind == NUMERIC:
        x = _arrow_floats(arr)
        return Column(name, tname, NUMERIC, rows, _nan_count(x, count_missing), values=x)
    if kind == CATEGORICAL:
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
            tname = str(arr.type)
        if pa.types.is_string_view(arr.type) or pa.types.is_large_string(arr.type):
            arr = pc.cast(arr, pa.string())
            tname = "string"
        vc = pc.value_counts(arr)
        values = vc.field("values")
        counts = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
        if values.null_count:
            keep = values.is_valid()
            values = values.filter(keep)
            counts = counts[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)]
        if pa.types.is_boolean(values.type):
            labels = [label(v) for v in values.to_pylist()]
        else:
            labels = [str(v) for v in pc.cast(values, pa.string()).to_pylist()]
        labels, counts = _merge_labels(labels, counts)
        return Column(name, tname, CATEGORICAL, rows, arr.null_count, labels=labels, counts=counts)
    return Column(name, tname, kind if kind == DATETIME else OTHER, rows, arr.null_count)
