"""The drift statistics, written with numpy and equal to scipy's on the same data.

Numeric statistics take the two samples **sorted, finite, non-empty** (a fitted
``Reference`` keeps its columns sorted, so a check sorts only the current batch);
categorical ones take two aligned count vectors over the union of categories. Each
function's docstring names the scipy function it equals (within 1e-9, checked by
``tests/monitoring/test_stats.py`` with hypothesis over random data).

- ``ks(a, b)``: ``scipy.stats.ks_2samp(a, b)`` (two-sided; ``method`` auto/exact/asymp
  as scipy: exact when the larger sample has at most 10,000 values). The statistic
  comes from one merge of the sorted samples (no search over both), the asymptotic
  p-value from ``scipy.stats.kstwo``, the exact one from Hodges' lattice-path
  recursion (scipy's compiled version of it when available).
- ``wasserstein_unsorted(a, b)``: the same for an unsorted ``b``, without sorting it
  (the reference's cells from ``wasserstein_grid``; what a drift check uses).
- ``wasserstein(a, b)``: ``scipy.stats.wasserstein_distance(a, b)``; the drift
  statistic ``wasserstein_norm`` divides it by the reference's population standard
  deviation (ddof=0, as Evidently), or by ``|reference value|`` (else 1) when the
  reference is constant.
- ``quantile_edges``/``bin_counts``: the reference-quantile bins of the binned
  statistics: interior edges at the reference's deciles (numpy "linear" quantiles,
  repeated edges merged), outer bins open, so every finite value has a bin; bin ``i``
  is ``(e[i-1], e[i]]``.
- ``psi(p, q)``: the textbook population stability index
  ``sum((q - p) * ln(q / p))`` on the proportions, each proportion floored at
  ``PSI_EPSILON`` = 1e-4 so an empty bin gives a large but finite term.
- ``jensenshannon(p, q)``: ``scipy.spatial.distance.jensenshannon(p, q, base=2)``
  (in [0, 1]).
- ``hellinger(p, q)``: ``sqrt(sum((sqrt(p) - sqrt(q))**2) / 2)`` on the proportions
  (in [0, 1]).
- ``chisquare(r, c)``: ``scipy.stats.chi2_contingency([r, c])`` (Yates' correction
  when there are two categories, as scipy's default); categories with no count on
  either side are dropped first, so a category seen only in the current batch is one
  more column of the table, never a division by zero.
- ``out_of_range_pvalue(k, m, n)``: the chance of ``k`` or more of ``m`` current
  values falling outside the range of ``n`` reference values when both sides come
  from one continuous distribution: ``scipy.stats.betabinom.sf(k - 1, m, 2, n - 1)``
  (``betabinom_sf``; see its docstring).
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

PSI_EPSILON = 1e-4
PSI_BINS = 10
KS_MAX_AUTO_N = 10_000
GRID_DENSITY = 4  # reference values per cell of the Wasserstein grid, on average
GRID_MAX = 65_536


def preload() -> None:
    """Import the scipy parts the statistics use, on the calling thread.

    The checks run columns on worker threads; scipy.stats imported for the first time
    from two of them at once can trip Python's import-lock deadlock detection
    (``_DeadlockError``), so ``drift`` and ``Reference.fit`` call this first.
    """
    importlib.import_module("scipy.stats")
    importlib.import_module("opsloop.monitoring._kernels")  # numba's, likewise
    with contextlib.suppress(ImportError):
        importlib.import_module("scipy.stats._stats_pythran")


# -- numeric -------------------------------------------------------------------


def _merge_counts(a: Floats, b: Floats) -> tuple[Floats, Floats, Floats]:
    """Merge sorted ``a`` and ``b``: the merged values and, at each position, how many
    values of ``a`` and of ``b`` are at or before it."""
    n, m = len(a), len(b)
    # Where each value of b lands in the merge (after a's equal values: side="right").
    pos = np.searchsorted(a, b, side="right") + np.arange(m)
    from_b = np.zeros(n + m, dtype=bool)
    from_b[pos] = True
    merged = np.empty(n + m, dtype=np.float64)
    merged[pos] = b
    merged[~from_b] = a
    cb = np.cumsum(from_b, dtype=np.int64)
    ca = np.arange(1, n + m + 1, dtype=np.int64) - cb
    return merged, ca.astype(np.float64), cb.astype(np.float64)


def ks_statistic(a: Floats, b: Floats) -> float:
    """The two-sided KS statistic of sorted ``a`` and ``b`` (``ks_2samp(a, b).statistic``)."""
    merged, ca, cb = _merge_counts(a, b)
    # The ECDFs step at the end of each run of equal values: evaluate there only,
    # which is what scipy's searchsorted(..., side="right") on every value amounts to.
    ends = np.empty(len(merged), dtype=bool)
    np.not_equal(merged[:-1], merged[1:], out=ends[:-1])
    ends[-1] = True
    diff = ca[ends] / len(a) - cb[ends] / len(b)
    return float(max(float(diff.max()), min(max(-float(diff.min()), 0.0), 1.0)))


def ks(a: Floats, b: Floats, method: str = "auto") -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of sorted finite samples: (statistic, p-value),
    as ``scipy.stats.ks_2samp(a, b, method=method)``.

    Example::

        ks(np.sort(x), np.sort(y))          # (0.12, 0.034)
    """
    if method not in ("auto", "exact", "asymp"):
        raise ValueError(f"method must be auto, exact or asymp, not {method!r}")
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    d = ks_statistic(a, b)
    g = math.gcd(n1, n2)
    mode = method
    if mode == "auto":
        mode = "exact" if max(n1, n2) <= KS_MAX_AUTO_N else "asymp"
    elif mode == "exact" and (n1 // g) >= np.iinfo(np.int32).max / (n2 // g):
        mode = "asymp"
    if mode == "exact":
        ok, d, prob = _ks_exact(n1, n2, g, d)
        if ok:
            return d, float(min(max(prob, 0.0), 1.0))
    return d, ks_pvalue_asymp(d, n1, n2)


def ks_pvalue_asymp(d: float, n1: int, n2: int) -> float:
    """The asymptotic two-sided KS p-value (``scipy.stats.kstwo`` at the effective size)."""
    from scipy.stats import kstwo  # type: ignore[import-untyped]

    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    with np.errstate(divide="ignore", invalid="ignore"):  # en rounds to 0 for 1 vs 1 value
        prob = float(kstwo.sf(d, np.round(en)))
    return float(min(max(prob, 0.0), 1.0))


def _ks_exact(n1: int, n2: int, g: int, d: float) -> tuple[bool, float, float]:
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return True, d, 1.0
    try:
        with np.errstate(invalid="raise", over="raise"):
            prob = _prob_outside_square(n1, h) if n1 == n2 else _outer_prob_inside(n1, n2, g, h)
    except (FloatingPointError, OverflowError):
        return False, d, math.nan
    if not 0 <= prob <= 1:
        return False, d, prob
    return True, d, prob


def _prob_outside_square(n: int, h: int) -> float:
    # Pr(D_{n,n} >= h/n), Horner-like to avoid cancellation (as scipy).
    p = 0.0
    k = int(np.floor(n / h))
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


def _outer_prob_inside(m: int, n: int, g: int, h: int) -> float:
    """1 - Pr(paths stay strictly inside |x/m - y/n| < h/lcm): Hodges' inside method,
    written for 1 - p directly (Viehmann 2021), as scipy's compiled helper."""
    try:
        from scipy.stats._stats_pythran import (  # type: ignore[import-untyped]
            _compute_outer_prob_inside_method,
        )

        return float(_compute_outer_prob_inside_method(m, n, g, h))
    except ImportError:  # pragma: no cover - a scipy without its compiled helper
        return _outer_prob_inside_py(m, n, g, h)


def _outer_prob_inside_py(m: int, n: int, g: int, h: int) -> float:
    """The same recursion in Python (slow: for a scipy without the compiled helper)."""
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    minj, maxj = 0, min(math.ceil(h / mg), n + 1)
    curlen = maxj - minj
    a = np.ones(min(2 * maxj + 2, n + 1))
    a[minj:maxj] = 0.0
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(math.floor((ng * i - h) / mg) + 1, 0), n)
        maxj = min(math.ceil((ng * i + h) / mg), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (a[jj + minj - lastminj] * i + val * j) / (i + j)
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            a[maxj - minj : maxj - minj + (lastlen - curlen)] = 1
    return float(a[maxj - minj - 1])


def wasserstein(a: Floats, b: Floats) -> float:
    """The 1-Wasserstein distance of sorted finite samples, as
    ``scipy.stats.wasserstein_distance(a, b)``."""
    # The same integral taken over probability instead of values:
    # W = int_0^1 |Q_a(t) - Q_b(t)| dt, whose breakpoints are i/n and j/m. Their order
    # is known by arithmetic (no search, no sort), so this is a few passes over n + m
    # integers; scipy's form needs a merge sort and two searches.
    n, m = len(a), len(b)
    if n == m:
        return float(np.abs(a - b).sum() / n)
    t = np.empty(n + m, dtype=np.int64)  # breakpoints in units of 1/(n m), sorted
    # a's k-th breakpoint k*m comes after the j*n < k*m; b's k-th after the i*m <= k*n.
    k = np.arange(1, n + 1, dtype=np.int64)
    v = k * m
    pos = v + (n - 1)
    pos //= n
    pos += k - 2
    t[pos] = v
    k = np.arange(1, m + 1, dtype=np.int64)
    v = k * n
    pos = v // m
    pos += k - 1
    t[pos] = v
    width = np.empty(n + m, dtype=np.float64)
    width[0] = t[0]
    np.subtract(t[1:], t[:-1], out=width[1:])
    idx = t + (m - 1)
    idx //= m
    idx -= 1
    q = a.take(idx)
    np.add(t, n - 1, out=idx)
    idx //= n
    idx -= 1
    q -= b.take(idx)
    np.abs(q, out=q)
    q *= width
    return float(q.sum() / (float(n) * float(m)))


@dataclass
class WGrid:
    """A sorted reference cut into cells, for ``wasserstein_unsorted``.

    ``edges`` (length ``g + 3``): the reference's minimum, ``g + 1`` evenly spaced
    points from its 0.1% to its 99.9% quantile, its maximum; cell ``k`` is
    ``[edges[k], edges[k + 1])``. ``starts[k]``: how many reference values are below
    ``edges[k]``; ``sums[k]``: the sum of ``value - edges[k]`` over the reference
    values in cell ``k``.
    """

    edges: Floats
    starts: Ints
    sums: Floats


def wasserstein_grid(sorted_ref: Floats, sums: Floats | None = None) -> WGrid | None:
    """The cells of a sorted finite reference (None when it has no spread to cut).

    The edges and starts follow from ``sorted_ref`` alone; ``sums`` (stored with a
    fitted reference) saves the one pass over the values that gives them."""
    n = len(sorted_ref)
    if n < 2:
        return None
    g = int(min(max(n // GRID_DENSITY, 1), GRID_MAX))
    t = n // 1000
    lo, hi = float(sorted_ref[t]), float(sorted_ref[n - 1 - t])
    with np.errstate(over="ignore", invalid="ignore"):
        w = (hi - lo) / g
        if not (w > 0 and math.isfinite(w) and math.isfinite(1.0 / w)):
            return None
        inner = np.minimum(lo + np.arange(g + 1, dtype=np.float64) * w, hi)
    inner[-1] = hi
    edges = np.concatenate(([sorted_ref[0]], inner, [sorted_ref[-1]]))
    starts = np.searchsorted(sorted_ref, edges, side="left").astype(np.int64)
    if sums is None or len(sums) != g + 2:
        cell = np.repeat(np.arange(g + 2), np.diff(starts))
        sums = np.bincount(
            cell, weights=sorted_ref[: starts[-1]] - edges.take(cell), minlength=g + 2
        ).astype(np.float64)
    return WGrid(edges, starts, sums)


def wasserstein_unsorted(sorted_ref: Floats, cur: Floats, grid: WGrid | None = None) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur)`` for a sorted finite reference and
    an *unsorted* finite ``cur``, without sorting ``cur``.

    W is the integral of ``|F_ref - F_cur|``. Each current value is put in its cell of
    the reference's grid by arithmetic (the cells are evenly spaced between the
    reference's 0.1% and 99.9% quantiles; a value rounding puts one cell off is found
    by search), which gives every cell's count and sum in one pass. In a cell where
    the two ECDFs cannot cross (their ranges over the cell do not overlap) the
    integral follows exactly from those counts and sums; only the values in the few
    cells where they can cross are sorted and merged. The result is the exact
    distance (to rounding), as ``wasserstein``; without a grid (a reference with no
    spread) ``cur`` is sorted and ``wasserstein`` used. The loops are compiled
    (``_kernels.numeric_scan``, which a drift check calls directly: the same pass
    counts the column's missing and infinite values and those out of range).

    Example::

        wasserstein_unsorted(np.sort(ref), cur)   # == wasserstein(np.sort(ref), np.sort(cur))
    """
    n, m = len(sorted_ref), len(cur)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    if grid is None:
        grid = wasserstein_grid(sorted_ref)
    if grid is None:
        return wasserstein(sorted_ref, np.sort(cur))
    from opsloop.monitoring._kernels import numeric_scan

    out = numeric_scan(
        np.ascontiguousarray(cur, dtype=np.float64),
        float(sorted_ref[0]),
        float(sorted_ref[-1]),
        grid.edges,
        grid.starts,
        grid.sums,
        sorted_ref,
        True,
    )
    return float(out[5])


def wasserstein_norm(a: Floats, b: Floats, ref_std: float | None = None) -> float:
    """Wasserstein distance over the reference's (``a``'s) standard deviation."""
    std = float(np.std(a)) if ref_std is None else ref_std
    return wasserstein(a, b) / _norm(std, a)


def _norm(std: float, a: Floats) -> float:
    if std > 0 and math.isfinite(std):
        return std
    v = abs(float(a[0])) if len(a) else 0.0
    return v if v > 0 and math.isfinite(v) else 1.0


def quantile_edges(sorted_ref: Floats, bins: int = PSI_BINS) -> Floats:
    """Interior bin edges at the reference's quantiles (repeated edges merged)."""
    if len(sorted_ref) == 0:
        return np.empty(0)
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    with np.errstate(over="ignore", invalid="ignore"):  # values near +-1.8e308
        edges = np.quantile(sorted_ref, qs)
    return np.unique(edges[~np.isnan(edges)])


def bin_counts(sorted_values: Floats, edges: Floats) -> Ints:
    """Counts of sorted values in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], cuts, [len(sorted_values)]))).astype(np.int64)


def bin_counts_unsorted(values: Floats, edges: Floats) -> Ints:
    """``bin_counts`` of unsorted values: one comparison pass per edge (there are at
    most ``PSI_BINS - 1``), no sort."""
    le = [int(np.count_nonzero(values <= e)) for e in edges.tolist()]
    return np.diff(np.asarray([0, *le, len(values)], dtype=np.int64)).astype(np.int64)


def _props(counts: npt.ArrayLike) -> Floats:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("a distribution needs at least one count")
    out: Floats = c / total
    return out


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = PSI_EPSILON) -> float:
    """Population stability index of two count vectors over the same bins."""
    p = np.maximum(_props(ref_counts), eps)
    q = np.maximum(_props(cur_counts), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def jensenshannon(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance, base 2, as ``scipy.spatial.distance.jensenshannon``."""
    p = _props(ref_counts)
    q = _props(cur_counts)
    m = (p + q) / 2.0
    js = float(np.sum(_rel_entr(p, m)) + np.sum(_rel_entr(q, m))) / math.log(2.0)
    return math.sqrt(max(js, 0.0) / 2.0)


def _rel_entr(x: Floats, y: Floats) -> Floats:
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log(x[pos] / y[pos])
    return out


def hellinger(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Hellinger distance of two count vectors (in [0, 1])."""
    p = _props(ref_counts)
    q = _props(cur_counts)
    return float(math.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2.0))


# -- categorical -----------------------------------------------------------------


def chisquare(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float, int]:
    """Chi-square test of homogeneity on the 2 x k table: (statistic, p-value, dof), as
    ``scipy.stats.chi2_contingency([ref_counts, cur_counts])`` after dropping the
    categories empty on both sides."""
    obs = np.vstack([np.asarray(ref_counts, np.float64), np.asarray(cur_counts, np.float64)])
    obs = obs[:, obs.sum(axis=0) > 0]
    rows = obs.sum(axis=1)
    if obs.shape[1] == 0 or np.any(rows == 0):
        raise ValueError("both sides need at least one count")
    k = obs.shape[1]
    dof = k - 1
    if dof == 0:
        return 0.0, 1.0, 0
    expected = np.outer(rows, obs.sum(axis=0)) / obs.sum()
    if dof == 1:
        diff = expected - obs
        obs = obs + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((obs - expected) ** 2 / expected))
    from scipy.stats import chi2

    return stat, float(chi2.sf(stat, dof)), dof


# -- the reference's range ------------------------------------------------------------


def out_of_range_pvalue(k: int, m: int, n: int, below: int = 0, above: int = 0) -> float:
    """P(at least ``k`` of ``m`` current values fall outside the reference's range) when
    the ``n`` reference values and the current ones come from one continuous
    distribution.

    One fresh value falls outside ``[min, max]`` of ``n`` values with probability
    ``2 / (n + 1)``; but the ``m`` current values share the one reference, so the share
    outside is not fixed: it is the mass of two of the ``n + 1`` spacings of the
    reference, ``Beta(2, n - 1)``, and the count is beta-binomial,
    ``scipy.stats.betabinom(m, 2, n - 1)`` - the binomial ``Bin(m, 2 / (n + 1))`` when
    ``m`` is small beside ``n``, wider when it is not (200 values against 426: four
    outside has p 0.038, not the binomial's 0.015). ``below``/``above``: reference
    values below the lowest and above the highest bound (the bounds of a sketched
    reference are its order statistics of rank ``below + 1`` and ``n - above``): the
    mass outside is then ``Beta(below + above + 2, n - 1 - below - above)``. Ties in
    the data (values equal to a bound are inside) only make the test conservative.

    Example::

        out_of_range_pvalue(4, 200, 426)   # 0.038
    """
    if k <= 0:
        return 1.0
    if m <= 0 or n <= 0:
        raise ValueError("both samples need at least one value")
    b = n - 1 - below - above
    if b <= 0:  # one reference value: every other value is outside its "range"
        return 1.0
    return betabinom_sf(k, m, float(below + above + 2), float(b))


TAIL_BLOCKS = (64, 65_536)  # the first block of tail terms, and the largest


def betabinom_sf(k: int, m: int, a: float, b: float) -> float:
    """``P(K >= k)`` for ``K ~ BetaBinomial(m, a, b)``, ``a >= 1``: as
    ``scipy.stats.betabinom.sf(k - 1, m, a, b)``, about ten times faster (no
    distribution-object overhead, for one call per column) and accurate far in the
    upper tail (scipy's is ``1 - cdf``). The smaller tail is summed from ``k`` outward
    in doubling blocks of terms until they no longer count (the terms shrink away from
    the mean: the mode is below it when ``a >= 1``)."""
    if k <= 0:
        return 1.0
    if k > m:
        return 0.0
    from scipy.special import betaln, gammaln  # type: ignore[import-untyped]

    const = float(gammaln(m + 1.0) - betaln(a, b))

    def terms(lo: int, hi: int) -> Floats:  # P(K = j) for j in [lo, hi)
        j = np.arange(lo, hi, dtype=np.float64)
        out: Floats = np.exp(
            const - gammaln(j + 1.0) - gammaln(m - j + 1.0) + betaln(j + a, m - j + b)
        )
        return out

    upper = k > m * a / (a + b)  # above the mean: the upper tail, from k up
    total = 0.0
    block, top = TAIL_BLOCKS
    edge = k  # upper: the terms [edge, edge + block); lower: [edge - block, edge)
    while (edge <= m) if upper else (edge > 0):
        if upper:
            t = terms(edge, min(edge + block, m + 1))
            edge += block
            last = t[-1]
        else:
            t = terms(max(edge - block, 0), edge)
            edge -= block
            last = t[0]
        total += float(t.sum())
        if last <= 1e-18 * total:
            break
        block = min(2 * block, top)
    return min(max(total if upper else 1.0 - total, 0.0), 1.0)


# -- multiple testing ----------------------------------------------------------------


def adjust_pvalues(p: npt.ArrayLike, method: str = "bh") -> Floats:
    """P-values adjusted for testing many columns: ``"bh"`` (Benjamini-Hochberg, as
    ``scipy.stats.false_discovery_control``), ``"bonferroni"`` or ``"none"``."""
    pv = np.asarray(p, dtype=np.float64)
    if method == "none" or pv.size == 0:
        return pv.copy()
    if method == "bonferroni":
        out: Floats = np.minimum(pv * pv.size, 1.0)
        return out
    if method != "bh":
        raise ValueError(f"correction must be 'bh', 'bonferroni' or 'none', not {method!r}")
    order = np.argsort(pv)
    ranked = pv[order] * pv.size / np.arange(1, pv.size + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty_like(pv)
    res[order] = np.minimum(ranked, 1.0)
    return res
