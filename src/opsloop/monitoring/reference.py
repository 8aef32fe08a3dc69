"""The fitted reference: what every later drift check needs, computed once.

``Reference.fit(df_or_table)`` reads each column once and keeps:

- numeric columns: the finite values, sorted (for KS and Wasserstein); the counts of
  missing, +inf and -inf; mean and population std; the reference-decile bin edges and
  counts (for PSI, Jensen-Shannon, Hellinger); the Wasserstein cells (evenly spaced
  between the 0.1% and 99.9% quantiles, about 4 values each, at most 65,536: each
  cell's count and sum, so that a check gets the exact distance without sorting the
  current batch, ``stats.wasserstein_unsorted``); and, when the column has at most
  five distinct values, those values and their counts (it is then tested as
  categorical);
- categorical columns: every category's count (labels as strings);
- every column's Arrow-style type and kind;
- for the multivariate checks: the feature encoding, a row sample, and a PCA model
  (``opsloop.monitoring.multivariate``);
- optionally (``learn_thresholds=True``), each column's statistic between chunks of
  the reference and the rest of it, from which a check derives a threshold that
  matches the data's own variation (see ``opsloop.monitoring.checks``): for each test
  the column's checks may use (the default test depends on the current batch's size
  too, so a column of more than 1,000 values learns both its small-batch p-value test
  and its distance).

``to_bytes``/``from_bytes`` serialise it as an ``.npz`` of plain arrays plus one JSON
header (no pickle). A numeric column with more than ``max_exact`` (100,000) values is
stored as a ``sketch_size`` (10,000) point quantile sketch - the order statistics at
ranks ``(i + 0.5) n / k`` - so a 1,000,000-row reference takes about 80 KB a column;
statistics against a sketch are those of the sketch (a KS statistic within 1/10,000
of the exact one) while p-values keep the true reference size.

``Reference.from_dataset("sensors@3")`` fits a registered dataset version and caches
the result in the artifact store at ``monitoring/references/<digest>/<options>.npz``
(a blob and its path in the existing artifact index: no new table); the next call
for the same version and options reads that blob and not the dataset.

Example::

    ref = Reference.fit(train_df)
    blob = ref.to_bytes()
    Reference.from_bytes(blob).columns["temp"].numeric.mean
    ref = Reference.from_dataset("sensors@3")        # fitted once, then cached
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from opsloop.data.profile import CATEGORICAL, NUMERIC, OTHER
from opsloop.errors import InvalidInput
from opsloop.monitoring import columns as cols
from opsloop.monitoring import stats
from opsloop.monitoring.columns import Floats, Ints

if TYPE_CHECKING:
    from opsloop.monitoring.multivariate import MultivariateModel
    from opsloop.store import Store

FORMAT = 1
DISCRETE_MAX = 5
SMALL_SAMPLE = 1000
MAX_EXACT = 100_000
SKETCH_SIZE = 10_000
CACHE_ROOT = "monitoring/references"

NUMERIC_TESTS = ("ks", "wasserstein", "psi", "jensenshannon", "hellinger", "chisquare")
CATEGORICAL_TESTS = ("chisquare", "psi", "jensenshannon", "hellinger")
P_VALUE_TESTS = ("ks", "chisquare")


@dataclass
class NumericRef:
    """A numeric column's fitted part."""

    sorted: Floats
    n: int
    pos_inf: int
    neg_inf: int
    mean: float
    std: float
    edges: Floats
    bin_counts: Ints
    discrete: Floats | None = None
    discrete_counts: Ints | None = None
    sketched: bool = False
    # The cells a check uses to get the Wasserstein distance without sorting the
    # current batch (``stats.wasserstein_unsorted``); made on first use if absent.
    grid: stats.WGrid | None = None
    _grid_done: bool = field(default=False, repr=False, compare=False)

    def wgrid(self) -> stats.WGrid | None:
        """The Wasserstein grid of ``sorted`` (None when the values have no spread)."""
        if self.grid is None and not self._grid_done:
            self.grid = stats.wasserstein_grid(self.sorted)
        self._grid_done = True
        return self.grid

    def beyond_ends(self) -> tuple[int, int]:
        """Reference values below ``sorted[0]`` and above ``sorted[-1]``: none, unless
        the column is a sketch, whose ends are the order statistics of ranks
        ``0.5 n / k`` and ``(k - 0.5) n / k`` (``sketch``)."""
        k = len(self.sorted)
        if not self.sketched or k == 0 or self.n <= k:
            return 0, 0
        ends = ((np.asarray([0, k - 1]) + 0.5) * self.n / k).astype(np.int64)
        return int(ends[0]), max(self.n - 1 - int(ends[1]), 0)

    @property
    def min(self) -> float | None:
        return float(self.sorted[0]) if len(self.sorted) else None

    @property
    def max(self) -> float | None:
        return float(self.sorted[-1]) if len(self.sorted) else None


@dataclass
class ColumnRef:
    """One column of a fitted reference."""

    name: str
    type: str
    kind: str
    rows: int
    missing: int
    numeric: NumericRef | None = None
    labels: list[str] = field(default_factory=list)
    counts: Ints = field(default_factory=lambda: np.zeros(0, np.int64))
    mixed_types: list[str] | None = None
    learned: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None  # why the column could not be read (it is then "other")
    _known: Any = field(default=None, repr=False, compare=False)

    def known_labels(self) -> Any:
        """The labels as an Arrow string array, which a check counts a string column
        against (``columns.read``); None for a column without labels."""
        if self._known is None and self.kind == CATEGORICAL and self.labels:
            import pyarrow as pa

            self._known = pa.array(self.labels, type=pa.string())
        return self._known

    @property
    def present(self) -> int:
        """Values present (not missing)."""
        return self.rows - self.missing

    @property
    def is_discrete(self) -> bool:
        return self.numeric is not None and self.numeric.discrete is not None

    def default_test(self, n_current: int | None = None) -> str | None:
        """The test used when none is named (the rule is ``drift``'s docstring's): a
        p-value test when the smaller side - this column's values, or ``n_current``
        values of the current batch - has at most ``SMALL_SAMPLE`` values, a distance
        beyond. Without ``n_current``, by the reference's size alone."""
        if self.kind == NUMERIC and self.numeric is not None:
            size = self.numeric.n
        elif self.kind == CATEGORICAL:
            size = self.present
        else:
            return None
        if n_current is not None:
            size = min(size, n_current)
        small = size <= SMALL_SAMPLE
        if self.kind == CATEGORICAL or self.is_discrete:
            return "chisquare" if small else "jensenshannon"
        return "ks" if small else "wasserstein"


def fit_column(c: cols.Column) -> ColumnRef:
    """Fit one read column."""
    ref = ColumnRef(c.name, c.type, c.kind, c.rows, c.missing, mixed_types=c.mixed_types)
    if c.kind == NUMERIC and c.values is not None:
        ref.numeric = fit_numeric(c.values)
    elif c.kind == CATEGORICAL:
        ref.labels = list(c.labels)
        ref.counts = np.asarray(c.counts, dtype=np.int64)
    return ref


def fit_numeric(x: Floats) -> NumericRef:
    finite = np.isfinite(x)
    n_fin = int(np.count_nonzero(finite))
    pos_inf = neg_inf = 0
    if n_fin + int(np.count_nonzero(np.isnan(x))) != len(x):
        pos_inf = int(np.count_nonzero(x == np.inf))
        neg_inf = int(np.count_nonzero(x == -np.inf))
    s = x[finite] if n_fin != len(x) else x.copy()
    s.sort()  # in place: the filtered copy is ours already
    return numeric_from_sorted(s, n_fin, pos_inf, neg_inf)


def numeric_from_sorted(
    s: Floats, n: int, pos_inf: int, neg_inf: int, sketched: bool = False
) -> NumericRef:
    if len(s):
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(np.mean(s))
            std = float(np.std(s))
    else:
        mean = std = math.nan
    edges = stats.quantile_edges(s)
    counts = stats.bin_counts(s, edges)
    discrete = dcounts = None
    if len(s):
        steps = s[1:] != s[:-1]
        if np.count_nonzero(steps) < DISCRETE_MAX:
            change = np.flatnonzero(steps)
            starts = np.concatenate(([0], change + 1))
            discrete = s[starts].copy()
            dcounts = np.diff(np.concatenate((starts, [len(s)]))).astype(np.int64)
    out = NumericRef(s, n, pos_inf, neg_inf, mean, std, edges, counts, discrete, dcounts, sketched)
    out.wgrid()  # fitting work: a check against this reference only reads its cells
    return out


def _fit_guarded(data: object, name: str) -> ColumnRef:
    """Fit one column; a column that cannot be read becomes an "other" one with its
    error, so that one bad column does not sink the fit."""
    try:
        return fit_column(cols.read(data, name))
    except Exception as exc:
        rows = cols.num_rows(data)
        return ColumnRef(name, "unreadable", OTHER, rows, 0, error=f"{type(exc).__name__}: {exc}")


def sketch(s: Floats, k: int) -> Floats:
    """``k`` order statistics of sorted ``s`` at ranks ``(i + 0.5) n / k``."""
    idx = ((np.arange(k) + 0.5) * len(s) / k).astype(np.int64)
    out: Floats = s[np.minimum(idx, len(s) - 1)]
    return out


@dataclass
class Reference:
    """A fitted drift reference (see the module docstring).

    Example::

        ref = Reference.fit(df)
        opsloop.monitoring.drift(ref, current_df).share_drifted
    """

    columns: dict[str, ColumnRef]
    num_rows: int
    multivariate: MultivariateModel | None = None
    source: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    multivariate_error: str | None = None

    # -- fitting ------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: object,
        *,
        columns: list[str] | None = None,
        multivariate: bool = True,
        learn_thresholds: bool = False,
        chunks: int = 10,
        tests: str | dict[str, str] | None = None,
        sample_size: int = 4000,
        seed: int = 0,
        workers: int = 2,
    ) -> Reference:
        """Fit a reference on a DataFrame or Arrow table.

        ``learn_thresholds`` also computes each column's statistic (its default test,
        or the one ``tests`` names) between each of ``chunks`` contiguous chunks of the
        rows and the rest, for ``drift(..., threshold="learned")``.
        """
        if isinstance(data, Reference):
            return data
        stats.preload()
        names = cols.names(data)
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise InvalidInput(f"the reference has no column(s) {missing}; it has {names}")
            names = [n for n in names if n in set(columns)]
        fitted: dict[str, ColumnRef] = {}
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="opsloop-fit") as pool:
            for name, c in zip(
                names, pool.map(lambda n: _fit_guarded(data, n), names), strict=True
            ):
                fitted[name] = c
        rows = cols.num_rows(data)
        ref = cls(fitted, rows)
        if multivariate:
            from opsloop.monitoring.multivariate import MultivariateModel

            try:
                ref.multivariate = MultivariateModel.fit(data, fitted, sample_size, seed)
            except Exception as exc:  # reported by each check, never raised
                ref.multivariate_error = f"{type(exc).__name__}: {exc}"
        if learn_thresholds:
            ref.learn(data, chunks=chunks, tests=tests)
        return ref

    def learn(
        self, data: object, *, chunks: int = 10, tests: str | dict[str, str] | None = None
    ) -> None:
        """Learn each column's natural variation from ``chunks`` contiguous chunks of
        ``data`` (the data this reference was fitted on)."""
        from opsloop.monitoring.checks import resolve_test

        rows = cols.num_rows(data)
        if chunks < 2 or rows < 2 * chunks:
            return
        self.chunks = chunks
        bounds = np.linspace(0, rows, chunks + 1).astype(np.int64)
        for cref in self.columns.values():
            # The default test depends on the current batch's size too, unknown here:
            # learn each test the column's checks may use.
            wanted: list[str] = []
            for n_cur in (None, SMALL_SAMPLE):
                test, _ = resolve_test(cref, tests, n_current=n_cur)
                if test is not None and test not in wanted:
                    wanted.append(test)
            for test in wanted:
                self._learn_column(data, cref, test, bounds)

    def _learn_column(
        self, data: object, cref: ColumnRef, test: str, bounds: np.ndarray[Any, Any]
    ) -> None:
        from opsloop.monitoring.checks import column_statistic

        values: list[float] = []
        sizes: list[int] = []
        for lo, hi in itertools.pairwise(bounds):
            try:
                c = cols.read(_slice(data, int(lo), int(hi)), cref.name)
                v, _, n_cur = column_statistic(cref, c, test, rest=True)
            except Exception:  # a chunk that cannot be tested teaches nothing
                continue
            if v is not None and math.isfinite(v):
                values.append(v)
                sizes.append(n_cur)
        if len(values) >= 2:
            arr = np.asarray(values)
            cref.learned[test] = {
                "mean": float(arr.mean()),
                "std": float(arr.std(ddof=1)),
                "chunk": float(np.mean(sizes)),
                "n": len(values),
            }

    # -- stored form ------------------------------------------------------------------

    def to_bytes(self, *, max_exact: int = MAX_EXACT, sketch_size: int = SKETCH_SIZE) -> bytes:
        """Serialise as ``.npz`` (plain arrays and a JSON header; no pickle)."""
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        meta_cols: list[dict[str, Any]] = []
        for i, c in enumerate(self.columns.values()):
            m: dict[str, Any] = {
                "name": c.name,
                "type": c.type,
                "kind": c.kind,
                "rows": c.rows,
                "missing": c.missing,
                "mixed_types": c.mixed_types,
                "learned": c.learned,
                "error": c.error,
            }
            if c.numeric is not None:
                nr = c.numeric
                s = nr.sorted
                sketched = nr.sketched
                grid = nr.wgrid()
                if len(s) > max_exact:
                    s = sketch(s, sketch_size)
                    sketched = True
                    grid = stats.wasserstein_grid(s)
                arrays[f"c{i}_sorted"] = s
                if grid is not None:  # the edges and starts follow from the values
                    arrays[f"c{i}_gsums"] = grid.sums
                m["numeric"] = {
                    "n": nr.n,
                    "pos_inf": nr.pos_inf,
                    "neg_inf": nr.neg_inf,
                    "mean": _f(nr.mean),
                    "std": _f(nr.std),
                    "sketched": sketched,
                }
                arrays[f"c{i}_edges"] = nr.edges
                arrays[f"c{i}_bins"] = nr.bin_counts
                if nr.discrete is not None and nr.discrete_counts is not None:
                    arrays[f"c{i}_discrete"] = nr.discrete
                    arrays[f"c{i}_dcounts"] = nr.discrete_counts
            if c.kind == CATEGORICAL:
                m["labels"] = c.labels
                arrays[f"c{i}_counts"] = c.counts
            meta_cols.append(m)
        meta: dict[str, Any] = {
            "format": FORMAT,
            "num_rows": self.num_rows,
            "source": self.source,
            "chunks": self.chunks,
            "columns": meta_cols,
        }
        if self.multivariate is not None:
            meta["multivariate"] = self.multivariate.to_meta(arrays)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        """Read what ``to_bytes`` wrote."""
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (ValueError, OSError, KeyError) as exc:
            raise InvalidInput(f"not a stored drift reference: {exc}") from exc
        if int(meta.get("format", 0)) > FORMAT:
            raise InvalidInput(
                f"drift reference format {meta['format']} is newer than this opsloop "
                f"understands ({FORMAT}); upgrade opsloop"
            )
        out: dict[str, ColumnRef] = {}
        for i, m in enumerate(meta["columns"]):
            c = ColumnRef(
                m["name"],
                m["type"],
                m["kind"],
                int(m["rows"]),
                int(m["missing"]),
                mixed_types=m.get("mixed_types"),
                learned=m.get("learned") or {},
                error=m.get("error"),
            )
            if "numeric" in m:
                nm = m["numeric"]
                c.numeric = NumericRef(
                    sorted=arrays[f"c{i}_sorted"].astype(np.float64),
                    n=int(nm["n"]),
                    pos_inf=int(nm["pos_inf"]),
                    neg_inf=int(nm["neg_inf"]),
                    mean=_nan(nm["mean"]),
                    std=_nan(nm["std"]),
                    edges=arrays[f"c{i}_edges"],
                    bin_counts=arrays[f"c{i}_bins"].astype(np.int64),
                    discrete=arrays.get(f"c{i}_discrete"),
                    discrete_counts=arrays.get(f"c{i}_dcounts"),
                    sketched=bool(nm["sketched"]),
                )
                if f"c{i}_gsums" in arrays:
                    c.numeric.grid = stats.wasserstein_grid(
                        c.numeric.sorted, arrays[f"c{i}_gsums"].astype(np.float64)
                    )
            if c.kind == CATEGORICAL:
                c.labels = list(m["labels"])
                c.counts = arrays[f"c{i}_counts"].astype(np.int64)
            out[c.name] = c
        ref = cls(out, int(meta["num_rows"]), source=meta.get("source") or {})
        ref.chunks = int(meta.get("chunks", 0))
        if meta.get("multivariate"):
            from opsloop.monitoring.multivariate import MultivariateModel

            ref.multivariate = MultivariateModel.from_meta(meta["multivariate"], arrays)
        return ref

    # -- registered datasets ------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        ref: str,
        *,
        store: Store | None = None,
        learn_thresholds: bool = False,
        chunks: int = 10,
        refresh: bool = False,
    ) -> Reference:
        """The fitted reference of a registered dataset version (``"sensors@3"``),
        read from the artifact store's cache, or fitted and cached there.

        Example::

            ref = Reference.from_dataset("sensors@3")
        """
        from opsloop.data.service import DatasetService
        from opsloop.errors import NotFound
        from opsloop.store import default_store

        st = store or default_store()
        svc = DatasetService(st)
        dv = svc.get_version(ref)
        options = {"format": FORMAT, "learn": learn_thresholds, "chunks": chunks}
        key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_path(dv.digest, key)
        if not refresh:
            try:
                return cls.from_bytes(st.artifacts.get_bytes(path))
            except NotFound:
                pass
        table = svc.read_table(dv)
        fitted = cls.fit(table, learn_thresholds=learn_thresholds, chunks=chunks)
        fitted.source = {"dataset": dv.ref, "digest": dv.digest}
        st.artifacts.put_bytes(path, fitted.to_bytes())
        return fitted


def cache_path(digest: str, key: str) -> str:
    """Where the fitted reference of a dataset digest is cached."""
    return f"{CACHE_ROOT}/{digest}/{key}.npz"


def _slice(data: object, lo: int, hi: int) -> object:
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(data, pd.DataFrame):
        return data.iloc[lo:hi]
    return data.slice(lo, hi - lo)  # type: ignore[attr-defined]


def _f(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)
