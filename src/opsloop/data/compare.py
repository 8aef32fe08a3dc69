"""What changed between two dataset versions: schema, row counts, distributions.

It works from the two stored profiles alone (no data is read), so diffing two
versions of a billion rows is as fast as diffing two of ten. Version ``a`` is the
reference, ``b`` the one compared with it.

Formulas, per column present in both versions:

- **missing rate**: ``missing / (count + missing)`` of each.
- **numeric** (both numeric):
  - ``psi``, the population stability index over the reference's histogram bins:
    ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)``, where ``p_i`` is the share of the
    reference's values in bin ``i`` and ``q_i`` the share of ``b``'s values in the
    same bin. ``b``'s histogram is re-binned onto the reference's edges assuming its
    values are spread uniformly within each of its own bins (a zero-width bin is a
    point); the reference's first and last bins are open-ended, so every value of
    ``b`` lands somewhere. Shares are floored at ``1e-4`` so empty bins stay finite.
    When the reference has one value ``v``, its bins are ``< v``, ``= v`` and ``> v``.
    Reading it (the usual rule of thumb): < 0.1 stable, 0.1-0.25 moderate shift,
    > 0.25 major shift.
  - ``mean_shift = (mean_b - mean_a) / std_a`` and ``std_change = (std_b - std_a) /
    std_a``, both in units of the reference's standard deviation (None when it is 0).
- **categorical** (both categorical), from the top categories of each profile, with
  everything outside them pooled as one "other" bucket:
  - ``tvd``, the total-variation distance ``0.5 * sum_c |p_c - q_c|`` of the category
    shares (0: same mix, 1: disjoint);
  - ``psi`` over the same buckets, as above;
  - ``category_change``, the share of categories that changed: ``|A xor B| / |A or B|``
    over the two sets of top categories; ``categories_added`` / ``categories_removed``
    list them (up to 20 each).
  All of them are exact when both columns have at most ``top_k`` (50) distinct
  values, and approximations beyond.
- **datetime**: the min and max of each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opsloop.data.entities import ColumnSchema, DatasetVersion
from opsloop.data.profile import (
    CATEGORICAL,
    DATETIME,
    NUMERIC,
    CategoricalStats,
    ColumnProfile,
    Histogram,
)

PSI_FLOOR = 1e-4
MAX_LISTED_CATEGORIES = 20


@dataclass(frozen=True, slots=True)
class ColumnShift:
    """How one column's distribution moved from ``a`` to ``b`` (fields by kind; None: n/a)."""

    column: str
    kind: str  # numeric | categorical | datetime | other | mixed
    missing_rate_a: float
    missing_rate_b: float
    psi: float | None = None
    mean_shift: float | None = None
    std_change: float | None = None
    tvd: float | None = None
    category_change: float | None = None
    categories_added: tuple[str, ...] = ()
    categories_removed: tuple[str, ...] = ()
    min_a: str | float | None = None
    max_a: str | float | None = None
    min_b: str | float | None = None
    max_b: str | float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "missing_rate_a": self.missing_rate_a,
            "missing_rate_b": self.missing_rate_b,
            "psi": self.psi,
            "mean_shift": self.mean_shift,
            "std_change": self.std_change,
            "tvd": self.tvd,
            "category_change": self.category_change,
            "categories_added": list(self.categories_added),
            "categories_removed": list(self.categories_removed),
            "min_a": self.min_a,
            "max_a": self.max_a,
            "min_b": self.min_b,
            "max_b": self.max_b,
        }


@dataclass(frozen=True, slots=True)
class Retyped:
    column: str
    type_a: str
    type_b: str

    def to_dict(self) -> dict[str, str]:
        return {"column": self.column, "type_a": self.type_a, "type_b": self.type_b}


@dataclass(frozen=True)
class DatasetDiff:
    """Two versions compared: ``a`` is the reference.

    Example::

        d = opsloop.data.diff("sensors@1", "sensors@2")
        d.added, d.removed, d.retyped          # schema changes
        d.rows_b - d.rows_a                    # row count change
        d.columns["temp"].psi                  # distribution shift of one column
    """

    a: str
    b: str
    digest_a: str
    digest_b: str
    rows_a: int
    rows_b: int
    added: tuple[ColumnSchema, ...] = ()
    removed: tuple[ColumnSchema, ...] = ()
    retyped: tuple[Retyped, ...] = ()
    columns: dict[str, ColumnShift] = field(default_factory=dict)

    @property
    def same_content(self) -> bool:
        return self.digest_a == self.digest_b

    @property
    def schema_changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "digest_a": self.digest_a,
            "digest_b": self.digest_b,
            "same_content": self.same_content,
            "rows_a": self.rows_a,
            "rows_b": self.rows_b,
            "added": [c.to_dict() for c in self.added],
            "removed": [c.to_dict() for c in self.removed],
            "retyped": [r.to_dict() for r in self.retyped],
            "columns": [c.to_dict() for c in self.columns.values()],
        }


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Compare two versions from their stored schemas and profiles (``a`` is the reference)."""
    sa = {c.name: c for c in a.schema}
    sb = {c.name: c for c in b.schema}
    added = tuple(c for c in b.schema if c.name not in sa)
    removed = tuple(c for c in a.schema if c.name not in sb)
    retyped = tuple(
        Retyped(c.name, c.type, sb[c.name].type)
        for c in a.schema
        if c.name in sb and sb[c.name].type != c.type
    )
    shifts: dict[str, ColumnShift] = {}
    for c in a.schema:
        if c.name in sb and c.name in a.profile.columns and c.name in b.profile.columns:
            shifts[c.name] = column_shift(a.profile[c.name], b.profile[c.name])
    return DatasetDiff(
        a=a.ref,
        b=b.ref,
        digest_a=a.digest,
        digest_b=b.digest,
        rows_a=a.num_rows,
        rows_b=b.num_rows,
        added=added,
        removed=removed,
        retyped=retyped,
        columns=shifts,
    )


def column_shift(a: ColumnProfile, b: ColumnProfile) -> ColumnShift:
    """The shift of one column from profile ``a`` (reference) to ``b``."""
    base: dict[str, Any] = {
        "column": a.name,
        "missing_rate_a": a.missing_rate,
        "missing_rate_b": b.missing_rate,
    }
    if a.kind != b.kind:
        return ColumnShift(kind="mixed", **base)
    if a.kind == NUMERIC and a.numeric and b.numeric:
        na, nb = a.numeric, b.numeric
        psi_value = None
        if na.histogram and nb.histogram:
            psi_value = psi_histograms(na.histogram, nb.histogram)
        mean_shift = std_change = None
        if na.std and nb.mean is not None and na.mean is not None:
            mean_shift = (nb.mean - na.mean) / na.std
        if na.std and nb.std is not None:
            std_change = (nb.std - na.std) / na.std
        return ColumnShift(
            kind=NUMERIC,
            psi=psi_value,
            mean_shift=mean_shift,
            std_change=std_change,
            min_a=na.min,
            max_a=na.max,
            min_b=nb.min,
            max_b=nb.max,
            **base,
        )
    if a.kind == CATEGORICAL and a.categorical and b.categorical:
        ca, cb = a.categorical, b.categorical
        p, q = category_shares(ca, a.count), category_shares(cb, b.count)
        keys = list(dict.fromkeys([*p, *q]))
        pv = [p.get(k, 0.0) for k in keys]
        qv = [q.get(k, 0.0) for k in keys]
        tvd = 0.5 * sum(abs(x - y) for x, y in zip(pv, qv, strict=True))
        set_a = {v for v, _ in ca.top}
        set_b = {v for v, _ in cb.top}
        union = set_a | set_b
        change = len(set_a ^ set_b) / len(union) if union else 0.0
        return ColumnShift(
            kind=CATEGORICAL,
            psi=psi(pv, qv) if a.count and b.count else None,
            tvd=tvd if a.count and b.count else None,
            category_change=change,
            categories_added=tuple(v for v, _ in cb.top if v not in set_a)[:MAX_LISTED_CATEGORIES],
            categories_removed=tuple(v for v, _ in ca.top if v not in set_b)[
                :MAX_LISTED_CATEGORIES
            ],
            **base,
        )
    if a.kind == DATETIME and a.datetime and b.datetime:
        return ColumnShift(
            kind=DATETIME,
            min_a=a.datetime.min,
            max_a=a.datetime.max,
            min_b=b.datetime.min,
            max_b=b.datetime.max,
            **base,
        )
    return ColumnShift(kind=a.kind, **base)


_OTHER = object()


def category_shares(stats: CategoricalStats, count: int) -> dict[Any, float]:
    """Each top category's share of the present values, plus one pooled "other" share."""
    if count <= 0:
        return {}
    shares: dict[Any, float] = {v: c / count for v, c in stats.top}
    rest = count - sum(c for _, c in stats.top)
    if rest > 0:
        shares[_OTHER] = rest / count
    return shares


def psi(p: Sequence[float], q: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index of two share vectors over the same buckets.

    Example::

        psi([0.5, 0.5], [0.5, 0.5])      # 0.0
        psi([0.9, 0.1], [0.1, 0.9]) > 1  # True
    """
    total = 0.0
    for x, y in zip(p, q, strict=True):
        x, y = max(x, floor), max(y, floor)
        total += (y - x) * math.log(y / x)
    return total


def psi_histograms(ref: Histogram, cur: Histogram) -> float | None:
    """PSI of ``cur`` against ``ref``, ``cur`` re-binned onto ``ref``'s edges."""
    p = _bucket_masses(ref, ref)
    q = _bucket_masses(cur, ref)
    sp, sq = sum(p), sum(q)
    if sp <= 0 or sq <= 0:
        return None
    return psi([x / sp for x in p], [y / sq for y in q])


def _bucket_masses(h: Histogram, ref: Histogram) -> list[float]:
    """The mass of ``h`` in each bucket of ``ref`` (outer buckets open-ended)."""
    total = float(sum(h.counts))
    edges = ref.edges
    if edges[0] == edges[-1]:
        v = edges[0]
        below = _mass_below(h, v, inclusive=False)
        at_most = _mass_below(h, v, inclusive=True)
        return [below, at_most - below, total - at_most]
    cuts = [_mass_below(h, e, inclusive=False) for e in edges[1:-1]]
    out: list[float] = []
    prev = 0.0
    for c in cuts:
        out.append(c - prev)
        prev = c
    out.append(total - prev)
    return out


def _mass_below(h: Histogram, x: float, *, inclusive: bool) -> float:
    """Values of ``h`` below ``x`` (or at most ``x``), spreading each bin's count
    uniformly over it; a zero-width bin is a point."""
    mass = 0.0
    for lo, hi, c in zip(h.edges[:-1], h.edges[1:], h.counts, strict=True):
        if hi <= lo:
            if lo < x or (inclusive and lo == x):
                mass += c
        elif x >= hi:
            mass += c
        elif x > lo:
            mass += c * (x - lo) / (hi - lo)
    return mass
