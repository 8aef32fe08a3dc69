"""``drift(reference, current)``: per-column tests, separate signals, multivariate checks.

**Default test per column** (Evidently's rule, but by the size of the *smaller* side:
the reference column or the current batch's column):

- numeric with more than 5 distinct values: ``ks`` (drift when p < 0.05) when either
  side has at most 1,000 values, ``wasserstein`` normalised by the reference std
  (drift above 0.1) when both have more;
- categorical, or numeric with at most 5 distinct values (tested as categories of
  those values): ``chisquare`` (p < 0.05) when either side has at most 1,000 values,
  ``jensenshannon`` (above 0.1) when both have more. (Evidently uses a proportion
  Z-test for two categories at small sizes; chi-square with Yates' correction is the
  same test there.)

"Size" is the count of values present in a column (numeric: finite). Evidently goes by
the reference's size alone; but a fixed distance bound on a small current batch
mostly measures its sampling noise (the normalised Wasserstein distance of 100 normal
values from a large sample of their own distribution is over 0.1 two times in three,
measured), where a p-value test accounts for the batch's size. Missing values (null,
NaN) are left out of every statistic and reported as the missing share; so are +-inf
(reported as the infinite share). ``tests`` overrides the default: one name for every
column (``"psi"``; a numeric-only test - ``ks``, ``wasserstein`` - keeps the default
on categorical columns, noted in the entry), or a mapping ``{column: test}``. The
tests: ``ks``, ``wasserstein`` (divided by the reference's std), ``psi``,
``jensenshannon`` (base 2), ``hellinger``, ``chisquare``; numeric columns are binned
at the reference's deciles for the last four (see ``opsloop.monitoring.stats``).

**Thresholds** (``threshold=``): ``None`` gives each test its default - p-value tests
alert when the *adjusted* p-value is below 0.05, distances when above 0.1 (PSI 0.1,
Jensen-Shannon 0.1, Hellinger 0.1, normalised Wasserstein 0.1, as Evidently); a
number applies to every column (an alpha for p-value tests, a bound for the others);
``"learned"`` uses the reference's own variation: ``mean + 3 std`` of the statistic
(for KS and chi-square too: the statistic, not the p-value) between each of 10
contiguous chunks of its rows (time order, if the rows are in it) and the rest (``Reference.fit(..., learn_thresholds=True)``
stores them; a DataFrame reference is fitted so), scaled from the chunk size to the
current batch's by sampling noise (``sqrt((1/m + 1/n) / (1/m_c + 1/(n - m_c)))`` for
KS, Wasserstein, Jensen-Shannon and Hellinger; without the square root for PSI; none
for chi-square); a mapping ``{column: number | "learned"}`` sets columns one by one.

**Many columns**: p-values are adjusted across the columns tested with p-value tests,
by Benjamini-Hochberg (``correction="bh"``, the default: it controls the expected
share of false alarms among the drifted columns, and loses less power than
Bonferroni on 200 columns), ``"bonferroni"`` (controls the chance of any false alarm)
or ``"none"``. Each entry keeps the raw and the adjusted p-value.

**Signals**, always reported per column and never folded into the test: the missing
share (reference, current, change), the infinite share, the share of current values
outside the reference's [min, max], unseen categories (their count, share and the
most frequent 20), mixed Python types in an object column, type changes; and at the
table level the columns added and removed. ``report.alerts`` lists the signals past
their alert levels (missing share change over 0.05, unseen share over 0.01, an
out-of-range share past the test below, any type change, added or removed column).

**Out of range** is a test, not a fixed share: with ``n`` reference values a fresh
value from the same distribution falls outside their [min, max] with probability
``2 / (n + 1)`` (1% of a 200-row batch against 200 reference values is what to
expect). The count outside is compared with that by its exact distribution under no
drift (``stats.out_of_range_pvalue``: beta-binomial, the binomial ``Bin(m, 2/(n+1))``
widened for the reference's own chance extremes), the p-values adjusted across the
numeric columns by ``correction`` as the tests' are; the column alerts when the
adjusted p-value is below 0.05 (``OUT_OF_RANGE_ALPHA``) *and* the share is over 0.01
(``OUT_OF_RANGE_ALERT``: on a large batch a significant but tiny excess is not worth
an alert). The signals keep the count, the expected share and both p-values.

**Cost**: against a fitted (stored) reference a check reads each current column
once and does not sort it (KS, the default only when a side has at most 1,000
values, is the one test that does). A numeric column is one compiled pass
(``_kernels.numeric_scan``): its missing, infinite and out-of-range counts and the
exact Wasserstein distance from the reference's stored cells
(``stats.wasserstein_unsorted``); a string column is counted against the reference's
labels (``columns.read(..., known)``); each column check also encodes its part of the
multivariate sample from what it read. The reference sample's classifier bins are
the fit's too. What a stored reference saves is the fit (sorting every reference
column, its bins, cells and category counts, the multivariate model); what remains
is the check's own reading and counting of every current value - for a string
column the same hashing of every value the fit's count does - and the domain
classifier, trained on the current rows by nature.

**Robustness**: every column's work is guarded: a column that cannot be tested (all
missing, a kind change, an error reading it) gets an entry with ``error`` set and
``drifted=None`` instead of failing the report.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from opsloop.data.profile import CATEGORICAL, NUMERIC
from opsloop.errors import InvalidInput
from opsloop.monitoring import columns as cols
from opsloop.monitoring import stats
from opsloop.monitoring.columns import Floats, Ints
from opsloop.monitoring.multivariate import sample_rows
from opsloop.monitoring.reference import (
    CATEGORICAL_TESTS,
    NUMERIC_TESTS,
    P_VALUE_TESTS,
    ColumnRef,
    NumericRef,
    Reference,
)

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": 0.1,
    "hellinger": 0.1,
}
DRIFT_SHARE = 0.5
MISSING_ALERT = 0.05
UNSEEN_ALERT = 0.01
OUT_OF_RANGE_ALERT = 0.01  # the least out-of-range share that alerts ...
OUT_OF_RANGE_ALPHA = 0.05  # ... when its adjusted p-value is also below this
LEARNED_SIGMAS = 3.0
TOP_UNSEEN = 20
WORKERS = min(2, os.cpu_count() or 1)
_NO_F: Floats = np.zeros(0)
_NO_I: Ints = np.zeros(0, np.int64)

ThresholdSpec = float | str | Mapping[str, float | str] | None


@dataclass
class ColumnDrift:
    """One column's result. ``drifted`` is None when the column was not tested
    (``error`` says why)."""

    column: str
    kind: str | None
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    threshold: float | None = None
    threshold_on: str | None = None  # "p_value" or "statistic"
    drifted: bool | None = None
    n_reference: int = 0
    n_current: int = 0
    signals: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass
class DriftReport:
    """The result of ``drift``: per-column entries and table-level results.

    Example::

        r = drift(ref, cur)
        r.drifted_columns, r.share_drifted, r.alerts
        r.to_frame()          # one row per column
        r.to_json()
    """

    columns: dict[str, ColumnDrift]
    added: list[str]
    removed: list[str]
    share_drifted: float
    dataset_drift: bool
    multivariate: dict[str, dict[str, Any]]
    alerts: list[str]
    correction: str
    reference_rows: int
    current_rows: int
    reference_source: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c for c, e in self.columns.items() if e.drifted]

    @property
    def tested(self) -> int:
        return sum(1 for e in self.columns.values() if e.drifted is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "share_drifted": self.share_drifted,
            "drifted_columns": self.drifted_columns,
            "tested_columns": self.tested,
            "added": self.added,
            "removed": self.removed,
            "alerts": self.alerts,
            "correction": self.correction,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "reference_source": self.reference_source,
            "multivariate": _jsonable(self.multivariate),
            "columns": [e.to_dict() for e in self.columns.values()],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = []
        for e in self.columns.values():
            d = e.to_dict()
            sig = d.pop("signals")
            d.update(
                {
                    f"signal.{k}": (json.dumps(v) if isinstance(v, list) else v)
                    for k, v in sig.items()
                }
            )
            rows.append(d)
        return pd.DataFrame(rows)


def drift(
    reference: object,
    current: object,
    columns: list[str] | None = None,
    tests: str | Mapping[str, str] | None = None,
    threshold: ThresholdSpec = None,
    *,
    correction: str = "bh",
    multivariate: bool | tuple[str, ...] = ("pca", "classifier"),
    drift_share: float = DRIFT_SHARE,
    seed: int = 0,
    workers: int = WORKERS,
) -> DriftReport:
    """Compare ``current`` with ``reference`` column by column and as a whole.

    ``reference`` is a DataFrame, a pyarrow Table, a fitted ``Reference`` or a dataset
    reference (``"sensors@3"``, fitted once and cached in the artifact store);
    ``current`` a DataFrame, a Table or a dataset reference. See the module docstring for the default tests,
    the thresholds and the correction. ``multivariate`` names the table-level checks
    (``"pca"``, ``"classifier"``; False for none); ``workers`` threads share the columns
    (two by default).

    Example::

        report = opsloop.monitoring.drift("sensors@3", todays_df)
        report.drifted_columns            # ["temp", "site"]
        report.columns["temp"].statistic  # 0.31 (normalised Wasserstein)
        report.alerts                     # ["site: 4.0% of values are unseen categories", ...]
    """
    if correction not in ("bh", "bonferroni", "none"):
        raise InvalidInput(f"correction must be 'bh', 'bonferroni' or 'none', not {correction!r}")
    _check_tests(tests)
    mv_kinds: tuple[str, ...]
    if multivariate is True:
        mv_kinds = ("pca", "classifier")
    elif multivariate is False:
        mv_kinds = ()
    else:
        mv_kinds = tuple(multivariate)
    stats.preload()
    if "classifier" in mv_kinds:
        from opsloop.monitoring.multivariate import preload

        preload()
    if isinstance(current, str):
        current = read_dataset(current)
    cur_names = cols.names(current)
    ref = _as_reference(reference, columns, threshold, tests, bool(mv_kinds), seed, workers)
    ref_names = list(ref.columns)
    if columns is not None:
        unknown = [c for c in columns if c not in ref.columns and c not in cur_names]
        if unknown:
            raise InvalidInput(f"no column(s) {unknown} in the reference or the current data")
        wanted = set(columns)
        ref_names = [c for c in ref_names if c in wanted]
        cur_names = [c for c in cur_names if c in wanted]
    cur_set = set(cur_names)
    ref_set = set(ref_names)
    added = [c for c in cur_names if c not in ref_set]
    removed = [c for c in ref_names if c not in cur_set]
    entries: dict[str, ColumnDrift] = {}
    # The multivariate checks' sample of the current rows: each column check encodes
    # its column's share of it from what it read (no second read of the column).
    model = ref.multivariate if mv_kinds else None
    mv_rows = sample_rows(cols.num_rows(current), seed) if model is not None else None
    encoded: dict[str, Floats] = {}

    def one(name: str) -> ColumnDrift:
        cref = ref.columns[name]
        if name not in cur_set:
            return ColumnDrift(
                name,
                cref.kind,
                error="the column is missing from the current data",
                signals={"removed": True, "type_reference": cref.type},
            )

        def sample(c: cols.Column) -> None:
            if model is not None and mv_rows is not None:
                enc = model.encode_column(c, mv_rows)
                if enc is not None:
                    encoded[name] = enc

        return check_column(cref, current, name, tests, threshold, on_read=sample)

    # Columns on `workers` threads (the compiled passes and Arrow's kernels release
    # the GIL), then the multivariate checks: PCA and one fold of the classifier on
    # the pool's threads, the other fold on this one.
    mv: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="opsloop-drift") as pool:
        for name, entry in zip(ref_names, pool.map(one, ref_names), strict=True):
            entries[name] = entry
        if mv_kinds:
            mv = _multivariate(ref, current, mv_kinds, seed, encoded, pool if workers > 1 else None)
    for name in added:
        try:
            c = cols.read(current, name)
            ctype, ckind = c.type, c.kind
        except Exception as exc:
            ctype, ckind = f"unreadable: {exc}", None
        entries[name] = ColumnDrift(
            name,
            ckind,
            error="the column is not in the reference",
            signals={"added": True, "type_current": ctype},
        )
    _decide(entries, correction)
    _adjust_out_of_range(entries, correction)
    tested = [e for e in entries.values() if e.drifted is not None]
    share = sum(1 for e in tested if e.drifted) / len(tested) if tested else 0.0
    alerts = _alerts(entries, added, removed)
    for kind, res in mv.items():
        if res.get("drifted"):
            alerts.append(f"multivariate {kind}: drift ({res.get('summary', '')})")
    return DriftReport(
        columns=entries,
        added=added,
        removed=removed,
        share_drifted=share,
        dataset_drift=bool(tested) and share >= drift_share,
        multivariate=mv,
        alerts=alerts,
        correction=correction,
        reference_rows=ref.num_rows,
        current_rows=cols.num_rows(current),
        reference_source=ref.source,
    )


def _as_reference(
    reference: object,
    columns: list[str] | None,
    threshold: ThresholdSpec,
    tests: str | Mapping[str, str] | None,
    multivariate: bool,
    seed: int,
    workers: int,
) -> Reference:
    if isinstance(reference, Reference):
        return reference
    learn = _wants_learned(threshold)
    if isinstance(reference, str):
        return Reference.from_dataset(reference, learn_thresholds=learn)
    if not cols.is_table(reference):
        cols.names(reference)  # raises the clear error
    names = cols.names(reference)
    fit_cols = None if columns is None else [c for c in names if c in set(columns)]
    return Reference.fit(
        reference,
        columns=fit_cols,
        multivariate=multivariate,
        learn_thresholds=learn,
        tests=dict(tests) if isinstance(tests, Mapping) else tests,
        seed=seed,
        workers=workers,
    )


def read_dataset(ref: str) -> object:
    """A registered dataset version's table (``"sensors@4"``) from the default store."""
    from opsloop.data.service import DatasetService
    from opsloop.store import default_service

    svc = default_service(DatasetService)
    return svc.read_table(svc.get_version(ref))


def _wants_learned(threshold: ThresholdSpec) -> bool:
    if isinstance(threshold, str):
        return threshold == "learned"
    if isinstance(threshold, Mapping):
        return any(v == "learned" for v in threshold.values())
    return False


def _check_tests(tests: str | Mapping[str, str] | None) -> None:
    names = [tests] if isinstance(tests, str) else list(tests.values()) if tests else []
    for t in names:
        if t not in NUMERIC_TESTS:
            raise InvalidInput(f"unknown drift test {t!r}; use one of {', '.join(NUMERIC_TESTS)}")


def resolve_test(
    cref: ColumnRef, tests: str | Mapping[str, str] | None, n_current: int | None = None
) -> tuple[str | None, str | None]:
    """The test for a column: (test, note). The default depends on the smaller of the
    reference's and the current batch's (``n_current``) sizes. A test that does not
    apply to the column's kind, asked for all columns at once, leaves the default (and
    says so)."""
    default = cref.default_test(n_current)
    if default is None:
        return None, None
    if isinstance(tests, Mapping):
        t = tests.get(cref.name)
        return (t, None) if t else (default, None)
    if isinstance(tests, str):
        if cref.kind == CATEGORICAL and tests not in CATEGORICAL_TESTS:
            return default, f"{tests} does not apply to a categorical column; used {default}"
        return tests, None
    return default, None


# -- one column ------------------------------------------------------------------------


def check_column(
    cref: ColumnRef,
    current: object,
    name: str,
    tests: str | Mapping[str, str] | None,
    threshold: ThresholdSpec,
    on_read: Callable[[cols.Column], None] | None = None,
) -> ColumnDrift:
    """One column's entry; never raises. ``on_read`` is given the read column."""
    entry = ColumnDrift(name, cref.kind, n_reference=cref.present)
    if cref.error:
        entry.error = f"could not read the reference column: {cref.error}"
        return entry
    try:
        # A numeric column's missing values are counted by its check's own pass.
        numeric = cref.kind == NUMERIC and cref.numeric is not None
        cur = cols.read(current, name, cref.known_labels(), count_missing=not numeric)
    except Exception as exc:
        entry.error = f"could not read the current column: {type(exc).__name__}: {exc}"
        return entry
    if on_read is not None:
        with contextlib.suppress(Exception):  # the reader reads it again itself
            on_read(cur)
    try:
        _fill(entry, cref, cur, tests, threshold)
    except ValueError as exc:  # the data cannot be tested: the message says why
        entry.error = str(exc)
        entry.drifted = None
    except Exception as exc:  # one bad column must not sink the report
        entry.error = f"{type(exc).__name__}: {exc}"
        entry.drifted = None
    return entry


def _fill(
    entry: ColumnDrift,
    cref: ColumnRef,
    cur: cols.Column,
    tests: str | Mapping[str, str] | None,
    threshold: ThresholdSpec,
) -> None:
    sig = entry.signals
    sig["type_reference"] = cref.type
    sig["type_current"] = cur.type
    sig["type_changed"] = cref.type != cur.type
    scan: Scan | None = None
    if cref.numeric is not None and cur.kind == NUMERIC and cur.values is not None:
        # One pass counts the missing, infinite and out-of-range values and, when the
        # test may be Wasserstein (by the present values: the finite ones are not
        # counted yet), computes it.
        guess, _ = resolve_test(cref, tests, cur.rows)
        scan = _scan(cref.numeric, cur.values, guess == "wasserstein")
        cur.missing = scan[0]
    elif cur.missing < 0:  # not counted by the reader
        cur.missing = int(np.count_nonzero(np.isnan(cur.values))) if cur.values is not None else 0
    ms_ref = cref.missing / cref.rows if cref.rows else None
    ms_cur = cur.missing / cur.rows if cur.rows else None
    sig["missing_share_reference"] = ms_ref
    sig["missing_share_current"] = ms_cur
    sig["missing_share_change"] = (
        ms_cur - ms_ref if ms_ref is not None and ms_cur is not None else None
    )
    if cur.mixed_types:
        sig["mixed_types"] = cur.mixed_types
    entry.n_current = cur.rows - cur.missing
    if cref.kind != cur.kind:
        entry.error = (
            f"the column's kind changed from {cref.kind} ({cref.type}) to {cur.kind} "
            f"({cur.type}); not tested"
        )
        return
    size = cur.rows - scan[0] - scan[1] - scan[2] if scan is not None else _size(cur)
    test, note = resolve_test(cref, tests, size)
    entry.note = note
    if test is None:
        entry.note = f"{cref.kind} columns are not tested for drift; signals only"
        return
    if (
        isinstance(tests, Mapping)
        and cref.name in tests
        and cref.kind == CATEGORICAL
        and test not in CATEGORICAL_TESTS
    ):
        entry.test = test
        entry.error = f"{test} does not apply to a categorical column"
        return
    entry.test = test
    statistic, p_value, n_cur = column_statistic(cref, cur, test, signals=sig, scan=scan)
    entry.n_current = n_cur
    entry.statistic = statistic
    entry.p_value = p_value
    spec = threshold.get(cref.name) if isinstance(threshold, Mapping) else threshold
    if spec == "learned":
        learned = cref.learned.get(test)
        if learned is None:
            how = (
                f"the reference learned {', '.join(cref.learned)} only: refit it"
                if cref.learned
                else "fit the reference with learn_thresholds=True"
            )
            entry.note = f"no learned threshold for {test} ({how}); used the default"
            spec = None
        else:
            entry.threshold = _scaled(learned, test, n_cur, cref.present)
            entry.threshold_on = "statistic"
            return
    if spec is not None and not isinstance(spec, (int, float)):
        raise InvalidInput(f"a threshold must be a number or 'learned', not {spec!r}")
    entry.threshold = float(spec) if spec is not None else DEFAULT_THRESHOLDS[test]
    entry.threshold_on = "p_value" if test in P_VALUE_TESTS else "statistic"


def _size(cur: cols.Column) -> int:
    """The values of a current column a test compares (numeric: finite ones)."""
    if cur.values is not None:
        return int(np.count_nonzero(np.isfinite(cur.values)))
    return int(cur.counts.sum())


def _scaled(learned: Mapping[str, float], test: str, m: int, n: int) -> float:
    base = learned["mean"] + LEARNED_SIGMAS * learned["std"]
    mc = learned["chunk"]
    if m <= 0 or n <= mc or test == "chisquare":
        return base
    ratio = (1 / m + 1 / n) / (1 / mc + 1 / (n - mc))
    return base * (ratio if test == "psi" else math.sqrt(ratio))


def column_statistic(
    cref: ColumnRef,
    cur: cols.Column,
    test: str,
    *,
    rest: bool = False,
    signals: dict[str, Any] | None = None,
    scan: Scan | None = None,
) -> tuple[float | None, float | None, int]:
    """(statistic, p-value, values compared in ``cur``) of ``test`` on one column.

    ``rest``: ``cur`` is a chunk of the reference itself, compared with the rest of
    it (for learned thresholds). ``scan``: a numeric column's ``_scan``, if done.
    """
    sig = signals if signals is not None else {}
    if cref.kind == NUMERIC:
        nr = cref.numeric
        if nr is None or cur.values is None:
            raise ValueError("no numeric values")
        return _numeric(nr, cur.values, test, rest, sig, scan)
    return _categorical(cref, cur, test, rest, sig)


Scan = tuple[int, int, int, int, int, float]


def _scan(nr: NumericRef, x: Floats, wasserstein: bool) -> Scan:
    """One compiled pass over a current numeric column (``_kernels.numeric_scan``):
    (missing, +inf, -inf, below the reference's minimum, above its maximum,
    Wasserstein distance - NaN unless asked for and the reference has its cells)."""
    from opsloop.monitoring._kernels import numeric_scan

    grid = nr.wgrid() if wasserstein and nr.n else None
    lo_ref = float(nr.sorted[0]) if nr.n else math.nan
    hi_ref = float(nr.sorted[-1]) if nr.n else math.nan
    if grid is not None:
        g_edges, g_starts, g_sums = grid.edges, grid.starts, grid.sums
    else:
        g_edges, g_starts, g_sums = _NO_F, _NO_I, _NO_F
    out: Scan = numeric_scan(
        x, lo_ref, hi_ref, g_edges, g_starts, g_sums, nr.sorted, grid is not None
    )
    return out


def _numeric(
    nr: NumericRef,
    x: Floats,
    test: str,
    rest: bool,
    sig: dict[str, Any],
    scan: Scan | None = None,
) -> tuple[float | None, float | None, int]:
    # The current values are not sorted unless the test is KS: one compiled pass
    # counts the missing, infinite and out-of-range values and, for Wasserstein, reads
    # the exact distance off the reference's sorted values and cells (the sort is the
    # fit's work, done once); the binned tests compare with the reference's edges.
    wasserstein = test == "wasserstein"
    if scan is None or (wasserstein and math.isnan(scan[5]) and nr.wgrid() is not None):
        scan = _scan(nr, x, wasserstein)
    n_nan, n_pinf, n_ninf, lo, hi, w = scan
    present = len(x) - n_nan
    n_fin = present - n_pinf - n_ninf
    ref_present = nr.n + nr.pos_inf + nr.neg_inf
    sig["infinite_share_reference"] = (
        (nr.pos_inf + nr.neg_inf) / ref_present if ref_present else None
    )
    sig["infinite_share_current"] = (present - n_fin) / present if present else None
    if nr.n and n_fin:
        sig["out_of_range_share"] = (lo + hi) / n_fin
        if not rest:
            below, above = nr.beyond_ends()
            sig["out_of_range_count"] = lo + hi
            sig["out_of_range_expected_share"] = (below + above + 2) / (nr.n + 1)
            sig["out_of_range_p_value"] = stats.out_of_range_pvalue(
                lo + hi, n_fin, nr.n, below, above
            )
    if nr.n == 0:
        raise ValueError("the reference has no finite values in this column")
    if n_fin == 0:
        raise ValueError("the current data has no finite values in this column")
    factor = 1.0
    if rest and test in ("ks", "wasserstein"):
        # chunk vs the whole = (1 - m/n) x chunk vs the rest, for ECDF gaps
        factor = 1.0 / max(1.0 - n_fin / nr.n, 1e-12)
    if test == "wasserstein":
        if math.isnan(w):  # a reference with no spread: no cells
            w = stats.wasserstein(nr.sorted, np.sort(x[np.isfinite(x)]))
        return w * factor / stats._norm(nr.std, nr.sorted), None, n_fin
    cur = x[np.isfinite(x)] if n_fin != len(x) else x  # read only: maybe the caller's memory
    if test == "ks":
        srt = np.sort(cur)
        if nr.sketched:
            d = stats.ks_statistic(nr.sorted, srt) * factor
            return d, stats.ks_pvalue_asymp(d, nr.n, n_fin), n_fin
        d, p = stats.ks(nr.sorted, srt)
        return d * factor, (None if rest else p), n_fin
    if nr.discrete is not None and nr.discrete_counts is not None:
        ref_c, cur_c, unseen_vals, unseen_n = _discrete_counts(nr.discrete, nr.discrete_counts, cur)
        sig["unseen_values"] = [float(v) for v in unseen_vals[:TOP_UNSEEN]]
        sig["unseen_share"] = unseen_n / n_fin
    else:
        ref_c = nr.bin_counts
        cur_c = stats.bin_counts_unsorted(cur, nr.edges)
    if rest:
        ref_c = ref_c - cur_c[: len(ref_c)]
        ref_c = np.concatenate((ref_c, np.zeros(len(cur_c) - len(ref_c), np.int64)))
    return (*_binned(test, _pad(ref_c, len(cur_c)), cur_c), n_fin)


def _pad(a: Ints, n: int) -> Ints:
    if len(a) >= n:
        return a
    return np.concatenate((a, np.zeros(n - len(a), np.int64)))


def _discrete_counts(values: Floats, counts: Ints, cur: Floats) -> tuple[Ints, Ints, Floats, int]:
    # At most DISCRETE_MAX reference values: one comparison pass each.
    cur_c = np.asarray([np.count_nonzero(cur == v) for v in values.tolist()], dtype=np.int64)
    unseen_n = len(cur) - int(cur_c.sum())
    unseen_vals: Floats = np.empty(0)
    if unseen_n:
        u, uc = np.unique(cur[~np.isin(cur, values)], return_counts=True)
        order = np.argsort(-uc, kind="stable")
        unseen_vals = u[order]
        # Unseen values are extra categories, with a zero reference count.
        cur_c = np.concatenate((cur_c, uc[order].astype(np.int64)))
    return counts, cur_c, unseen_vals, unseen_n


def _categorical(
    cref: ColumnRef, cur: cols.Column, test: str, rest: bool, sig: dict[str, Any]
) -> tuple[float | None, float | None, int]:
    index = {lab: i for i, lab in enumerate(cref.labels)}
    k = len(cref.labels)
    cur_c = np.zeros(k, dtype=np.int64)
    unseen: list[tuple[str, int]] = []
    for lab, c in zip(cur.labels, cur.counts.tolist(), strict=True):
        i = index.get(lab)
        if i is None:
            unseen.append((lab, int(c)))
        else:
            cur_c[i] += c
    n_cur = int(cur.counts.sum())
    unseen.sort(key=lambda t: -t[1])
    unseen_n = sum(c for _, c in unseen)
    sig["unseen_categories"] = [lab for lab, _ in unseen[:TOP_UNSEEN]]
    sig["unseen_count"] = len(unseen)
    sig["unseen_share"] = unseen_n / n_cur if n_cur else None
    if cref.mixed_types:
        sig["mixed_types_reference"] = cref.mixed_types
    ref_c = cref.counts
    if rest:
        ref_c = ref_c - cur_c
    if int(ref_c.sum()) == 0:
        raise ValueError("the reference has no values in this column")
    if n_cur == 0:
        raise ValueError("the current data has no values in this column")
    if unseen:
        ref_c = np.concatenate((ref_c, np.zeros(len(unseen), np.int64)))
        cur_c = np.concatenate((cur_c, np.asarray([c for _, c in unseen], np.int64)))
    return (*_binned(test, ref_c, cur_c), n_cur)


def _binned(test: str, ref_c: Ints, cur_c: Ints) -> tuple[float, float | None]:
    if test == "chisquare":
        s, p, _ = stats.chisquare(ref_c, cur_c)
        return s, p
    if test == "psi":
        return stats.psi(ref_c, cur_c), None
    if test == "jensenshannon":
        return stats.jensenshannon(ref_c, cur_c), None
    if test == "hellinger":
        return stats.hellinger(ref_c, cur_c), None
    raise ValueError(f"{test} does not apply here")


# -- the decision ------------------------------------------------------------------------


def _decide(entries: dict[str, ColumnDrift], correction: str) -> None:
    pv = [e for e in entries.values() if e.error is None and e.threshold_on == "p_value"]
    adj = stats.adjust_pvalues([e.p_value or 0.0 for e in pv], correction)
    for e, a in zip(pv, adj.tolist(), strict=True):
        e.p_value_adjusted = float(a)
        assert e.threshold is not None
        e.drifted = bool(a < e.threshold)
    for e in entries.values():
        if e.error is None and e.threshold_on == "statistic" and e.statistic is not None:
            assert e.threshold is not None
            e.drifted = bool(e.statistic > e.threshold)


def _adjust_out_of_range(entries: dict[str, ColumnDrift], correction: str) -> None:
    """The out-of-range p-values adjusted across the columns that have one."""
    sigs = [e.signals for e in entries.values() if "out_of_range_p_value" in e.signals]
    adj = stats.adjust_pvalues([s["out_of_range_p_value"] for s in sigs], correction)
    for s, a in zip(sigs, adj.tolist(), strict=True):
        s["out_of_range_p_value_adjusted"] = float(a)


def _alerts(entries: dict[str, ColumnDrift], added: list[str], removed: list[str]) -> list[str]:
    out: list[str] = [f"{c}: column added" for c in added]
    out += [f"{c}: column removed" for c in removed]
    for name, e in entries.items():
        s = e.signals
        if s.get("added") or s.get("removed"):
            continue
        if s.get("type_changed"):
            out.append(f"{name}: type changed from {s['type_reference']} to {s['type_current']}")
        ch = s.get("missing_share_change")
        if ch is not None and abs(ch) > MISSING_ALERT:
            out.append(
                f"{name}: missing share {s['missing_share_reference']:.1%} -> "
                f"{s['missing_share_current']:.1%}"
            )
        us = s.get("unseen_share")
        if us is not None and us > UNSEEN_ALERT:
            out.append(f"{name}: {us:.1%} of values are unseen in the reference")
        oor = s.get("out_of_range_share")
        oor_p = s.get("out_of_range_p_value_adjusted")
        if (
            oor is not None
            and oor > OUT_OF_RANGE_ALERT
            and oor_p is not None
            and oor_p < OUT_OF_RANGE_ALPHA
        ):
            out.append(
                f"{name}: {oor:.1%} of values are outside the reference's range "
                f"(expected {s['out_of_range_expected_share']:.1%}, p {oor_p:.2g})"
            )
        if e.drifted:
            out.append(f"{name}: drift ({e.test} {e.statistic:.4g})")
    return out


def _multivariate(
    ref: Reference,
    current: object,
    kinds: tuple[str, ...],
    seed: int,
    encoded: dict[str, Floats] | None = None,
    pool: Executor | None = None,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    model = ref.multivariate
    if model is None:
        if ref.multivariate_error:
            return {k: {"error": ref.multivariate_error} for k in kinds}
        return {
            k: {"error": "the reference was fitted without the multivariate model"} for k in kinds
        }
    try:
        x_cur = model.encode(current, seed, done=encoded)
    except Exception as exc:
        return {k: {"error": f"{type(exc).__name__}: {exc}"} for k in kinds}

    def run(k: str) -> dict[str, Any]:
        try:
            if k == "pca":
                return model.pca_check(x_cur)
            if k == "classifier":
                return model.classifier_check(x_cur, seed, pool)
            return {"error": f"unknown multivariate check {k!r}; use 'pca' or 'classifier'"}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    # The PCA check on the pool while this thread runs the classifier.
    pending = {k: pool.submit(run, k) for k in kinds if k == "pca"} if pool is not None else {}
    for k in kinds:
        out[k] = pending[k].result() if k in pending else run(k)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v
