"""The profile of a dataset version: what its columns hold, in numbers.

Every registered version stores one. ``diff`` compares two of them, and monitoring
uses a version's profile as the reference its drift checks compare live data with,
so the structure is a documented, versioned, JSON-serialisable format
(``to_dict``/``from_dict``; ``format`` is bumped on any incompatible change).

The JSON shape (``DatasetProfile.to_dict()``)::

    {
      "format": 1,
      "num_rows": 1000000,
      "bins": 20, "top_k": 50,
      "quantiles": [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99],
      "columns": [                                  # in the table's column order
        {"name": "temp", "type": "double", "kind": "numeric",
         "count": 950000,                           # values present (not null, not NaN)
         "missing": 50000,                          # nulls + NaN; count + missing = num_rows
         "numeric": {
           "min": -3.1, "max": 41.7,                # over finite values
           "mean": 20.2, "std": 5.1,                # sample std (ddof=1), finite values
           "infinite": 0,                           # +inf and -inf among the values
           "quantiles": {"0.01": 8.3, ..., "0.99": 32.0},   # numpy "linear" method
           "histogram": {"edges": [21 floats], "counts": [20 ints]}},
         "categorical": null, "datetime": null},
        {"name": "site", "type": "string", "kind": "categorical", "count": ..., "missing": ...,
         "categorical": {"distinct": 200,           # distinct present values (exact)
                         "top": [{"value": "site-007", "count": 5123}, ...]}},  # top_k, most frequent first
        {"name": "ts", "type": "timestamp[us]", "kind": "datetime", ...,
         "datetime": {"min": "2026-01-01T00:02:09", "max": "2026-12-31T23:59:08"}}
      ]
    }

Rules worth knowing:

- Kinds: ``numeric`` (integers, floats, decimals), ``categorical`` (strings, booleans,
  dictionary-encoded columns), ``datetime`` (timestamps and dates), ``other``
  (binary, nested, time-of-day, durations, all-null columns: count and missing only).
- Histogram: ``bins`` equal-width bins from min to max; bin ``i`` holds values in
  ``[edges[i], edges[i+1])``, the last bin is closed, and -inf/+inf are counted in the
  first/last bin, so the counts sum to ``count``. A column with one distinct finite
  value has one zero-width bin (``edges == [v, v]``).
- Category values are strings (booleans as ``"true"``/``"false"``); ties in count keep
  the order of first appearance. Datetimes are ISO 8601 (tz-aware columns in UTC, with
  a ``Z``; dates as ``YYYY-MM-DD``).
- Every number is finite or null, so the JSON is strict JSON.

Speed: each column is profiled with vectorised numpy/pyarrow.compute passes (one
partition for all quantiles, one histogram pass, one hash pass for categories);
1,000,000 rows x 20 columns take about half a second on two cores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PROFILE_FORMAT = 1
DEFAULT_BINS = 20
DEFAULT_TOP_K = 50
DEFAULT_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATETIME = "datetime"
OTHER = "other"


def _num(v: Any) -> float | None:
    """A float for JSON: None for NaN/inf/None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True, slots=True)
class Histogram:
    """Equal-width bins: ``len(edges) == len(counts) + 1``."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        return cls(tuple(float(e) for e in d["edges"]), tuple(int(c) for c in d["counts"]))


@dataclass(frozen=True, slots=True)
class NumericStats:
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    infinite: int
    quantiles: dict[float, float | None]
    histogram: Histogram | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "infinite": self.infinite,
            "quantiles": {repr(q): v for q, v in self.quantiles.items()},
            "histogram": self.histogram.to_dict() if self.histogram else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericStats:
        h = d.get("histogram")
        return cls(
            min=_num(d.get("min")),
            max=_num(d.get("max")),
            mean=_num(d.get("mean")),
            std=_num(d.get("std")),
            infinite=int(d.get("infinite", 0)),
            quantiles={float(q): _num(v) for q, v in (d.get("quantiles") or {}).items()},
            histogram=Histogram.from_dict(h) if h else None,
        )


@dataclass(frozen=True, slots=True)
class CategoricalStats:
    distinct: int
    top: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "distinct": self.distinct,
            "top": [{"value": v, "count": c} for v, c in self.top],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalStats:
        return cls(int(d["distinct"]), tuple((str(t["value"]), int(t["count"])) for t in d["top"]))


@dataclass(frozen=True, slots=True)
class DatetimeStats:
    min: str | None
    max: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatetimeStats:
        return cls(d.get("min"), d.get("max"))


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """One column's profile; exactly one of the kind-specific parts is set (none for ``other``)."""

    name: str
    type: str
    kind: str
    count: int
    missing: int
    numeric: NumericStats | None = None
    categorical: CategoricalStats | None = None
    datetime: DatetimeStats | None = None

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "numeric": self.numeric.to_dict() if self.numeric else None,
            "categorical": self.categorical.to_dict() if self.categorical else None,
            "datetime": self.datetime.to_dict() if self.datetime else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        return cls(
            name=str(d["name"]),
            type=str(d["type"]),
            kind=str(d["kind"]),
            count=int(d["count"]),
            missing=int(d["missing"]),
            numeric=NumericStats.from_dict(d["numeric"]) if d.get("numeric") else None,
            categorical=(
                CategoricalStats.from_dict(d["categorical"]) if d.get("categorical") else None
            ),
            datetime=DatetimeStats.from_dict(d["datetime"]) if d.get("datetime") else None,
        )


@dataclass(frozen=True)
class DatasetProfile:
    """The profile of a table: its row count and one ``ColumnProfile`` per column, in order.

    Example::

        prof = profile_table(pa.table({"x": [1.0, 2.0, None]}))
        prof["x"].missing                     # 1
        DatasetProfile.from_dict(prof.to_dict()) == prof   # True
    """

    num_rows: int
    columns: dict[str, ColumnProfile]
    bins: int = DEFAULT_BINS
    top_k: int = DEFAULT_TOP_K
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    format: int = PROFILE_FORMAT

    def __getitem__(self, column: str) -> ColumnProfile:
        return self.columns[column]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "num_rows": self.num_rows,
            "bins": self.bins,
            "top_k": self.top_k,
            "quantiles": list(self.quantiles),
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetProfile:
        fmt = int(d.get("format", PROFILE_FORMAT))
        if fmt > PROFILE_FORMAT:
            raise ValueError(
                f"profile format {fmt} is newer than this opsloop understands "
                f"({PROFILE_FORMAT}); upgrade opsloop"
            )
        cols = [ColumnProfile.from_dict(c) for c in d["columns"]]
        return cls(
            num_rows=int(d["num_rows"]),
            columns={c.name: c for c in cols},
            bins=int(d.get("bins", DEFAULT_BINS)),
            top_k=int(d.get("top_k", DEFAULT_TOP_K)),
            quantiles=tuple(float(q) for q in d.get("quantiles", DEFAULT_QUANTILES)),
            format=fmt,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> DatasetProfile:
        return cls.from_dict(json.loads(text))


# -- computing a profile ----------------------------------------------------------


def column_kind(t: pa.DataType) -> str:
    """Which part of the profile a column of Arrow type ``t`` gets."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return NUMERIC
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_boolean(t)
        or pa.types.is_dictionary(t)
    ):
        return CATEGORICAL
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return DATETIME
    return OTHER


def profile_table(
    table: pa.Table,
    *,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
) -> DatasetProfile:
    """Profile every column of ``table``.

    Example::

        prof = profile_table(pa.table({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
        prof["x"].numeric.mean                # 2.0
        prof["c"].categorical.top             # (("a", 2), ("b", 1))
    """
    if bins < 1 or top_k < 1:
        raise ValueError("bins and top_k must be at least 1")
    cols: dict[str, ColumnProfile] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        cols[name] = profile_column(name, col, bins=bins, top_k=top_k, quantiles=quantiles)
    return DatasetProfile(table.num_rows, cols, bins, top_k, tuple(quantiles))


def profile_column(
    name: str,
    column: pa.ChunkedArray | pa.Array,
    *,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
) -> ColumnProfile:
    """Profile one column (see the module docstring for what each kind records)."""
    arr = _one_array(column)
    kind = column_kind(arr.type)
    tname = str(arr.type)
    if kind == NUMERIC:
        return _numeric(name, tname, arr, bins, quantiles)
    if kind == CATEGORICAL:
        return _categorical(name, tname, arr, top_k)
    missing = arr.null_count
    count = len(arr) - missing
    if kind == DATETIME:
        return ColumnProfile(name, tname, kind, count, missing, datetime=_datetime(arr))
    return ColumnProfile(name, tname, OTHER, count, missing)


def _one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()
    return column


def _numeric(
    name: str, tname: str, arr: pa.Array, bins: int, quantiles: tuple[float, ...]
) -> ColumnProfile:
    if arr.type != pa.float64():
        # Integers above 2**53 lose their last digits: fine for a profile.
        arr = pc.cast(arr, pa.float64(), safe=False)
    # Nulls come out as NaN, so one array answers missing, infinite and finite.
    x = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    nan = np.isnan(x)
    missing = int(nan.sum())
    count = len(x) - missing
    finite_mask = np.isfinite(x)
    n_finite = int(finite_mask.sum())
    infinite = count - n_finite
    xf = x if n_finite == len(x) else x[finite_mask]
    if n_finite == 0:
        stats = NumericStats(None, None, None, None, infinite, dict.fromkeys(quantiles), None)
        return ColumnProfile(name, tname, NUMERIC, count, missing, numeric=stats)
    lo = float(xf.min())
    hi = float(xf.max())
    mean = float(xf.mean())
    std = float(xf.std(ddof=1)) if n_finite > 1 else None
    qv = np.quantile(xf, list(quantiles)) if quantiles else np.empty(0)
    neg_inf = int(np.count_nonzero(x == -np.inf)) if infinite else 0
    hist = _histogram(xf, lo, hi, bins, neg_inf, infinite - neg_inf)
    stats = NumericStats(
        min=lo,
        max=hi,
        mean=_num(mean),
        std=_num(std),
        infinite=infinite,
        quantiles={float(q): _num(v) for q, v in zip(quantiles, qv, strict=True)},
        histogram=hist,
    )
    return ColumnProfile(name, tname, NUMERIC, count, missing, numeric=stats)


def _histogram(
    xf: np.ndarray[Any, np.dtype[np.float64]],
    lo: float,
    hi: float,
    bins: int,
    neg_inf: int,
    pos_inf: int,
) -> Histogram | None:
    if lo == hi:
        return Histogram((lo, hi), (len(xf) + neg_inf + pos_inf,))
    if not math.isfinite(hi - lo):
        # The range overflows float64 (values near ±1.8e308): no meaningful bins.
        return None
    counts, edges = np.histogram(xf, bins=bins, range=(lo, hi))
    c = [int(v) for v in counts]
    c[0] += neg_inf
    c[-1] += pos_inf
    return Histogram(tuple(float(e) for e in edges), tuple(c))


def _categorical(name: str, tname: str, arr: pa.Array, top_k: int) -> ColumnProfile:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string_view(arr.type):
        arr = pc.cast(arr, pa.string())
    missing = arr.null_count
    count = len(arr) - missing
    vc = pc.value_counts(arr)
    values = vc.field("values")
    counts = vc.field("counts").to_numpy(zero_copy_only=False)
    if values.null_count:
        keep = values.is_valid()
        values = values.filter(keep)
        counts = counts[keep.to_numpy(zero_copy_only=False)]
    order = np.argsort(-counts, kind="stable")[:top_k]
    labels = values.take(pa.array(order, type=pa.int64())).to_pylist()
    top = tuple((_label(v), int(c)) for v, c in zip(labels, counts[order].tolist(), strict=True))
    return ColumnProfile(
        name, tname, CATEGORICAL, count, missing, categorical=CategoricalStats(len(values), top)
    )


def _label(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return str(v)


_NP_UNITS = {"s": "s", "ms": "ms", "us": "us", "ns": "ns"}


def _datetime(arr: pa.Array) -> DatetimeStats:
    if arr.null_count == len(arr):
        return DatetimeStats(None, None)
    t = arr.type
    if pa.types.is_timestamp(t):
        ints = pc.cast(arr, pa.int64())
        unit = _NP_UNITS[t.unit]
        suffix = "Z" if t.tz else ""
    elif pa.types.is_date32(t):
        ints = pc.cast(arr, pa.int32())
        unit, suffix = "D", ""
    else:  # date64: milliseconds, whole days
        ints = pc.cast(arr, pa.int64())
        ints = pc.divide(ints, 86_400_000)
        unit, suffix = "D", ""
    mm = pc.min_max(ints)

    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}.get(unit)

    def iso(v: Any) -> str | None:
        if v is None:
            return None
        stamp = np.array([int(v)], dtype=f"datetime64[{unit}]")
        # Whole seconds print as seconds, others with the column's precision (as pandas).
        shown = "s" if per_second and int(v) % per_second == 0 else unit
        return str(np.datetime_as_string(stamp, unit=shown)[0]) + suffix  # type: ignore[call-overload]

    return DatetimeStats(iso(mm["min"].as_py()), iso(mm["max"].as_py()))
