"""Every statistic equals scipy's (or the textbook formula's) within 1e-9, over random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from opsloop.monitoring import stats

TOL = 1e-9
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(a: float, b: float) -> bool:
    if math.isnan(b):  # scipy's asymptotic p-value of two one-value samples
        return math.isnan(a)
    return abs(a - b) <= TOL * max(1.0, abs(b))


# Values with many ties (rounded), wide ranges and tiny ones.
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-5, 5).map(float),
    st.floats(-1, 1, allow_nan=False).map(lambda v: round(v, 2)),
)
samples = st.lists(values, min_size=1, max_size=80)


def _sorted(xs: list[float]) -> np.ndarray:
    return np.sort(np.asarray(xs, dtype=np.float64))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's, on the same edge cases
@SETTINGS
@given(samples, samples, st.sampled_from(["auto", "exact", "asymp"]))
def test_ks_equals_scipy(a: list[float], b: list[float], method: str) -> None:
    d, p = stats.ks(_sorted(a), _sorted(b), method=method)
    ref = sps.ks_2samp(a, b, method=method)
    assert close(d, float(ref.statistic))
    assert close(p, float(ref.pvalue))


@settings(max_examples=25, deadline=None)
@given(st.integers(10_001, 30_000), st.integers(50, 20_000), st.integers(0, 2**32 - 1))
def test_ks_large_samples_asymptotic(n1: int, n2: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(size=n1), 2)
    b = np.round(rng.normal(0.02, size=n2), 2)
    d, p = stats.ks(np.sort(a), np.sort(b))
    ref = sps.ks_2samp(a, b)
    assert close(d, float(ref.statistic)) and close(p, float(ref.pvalue))


@SETTINGS
@given(samples, samples)
def test_wasserstein_equals_scipy(a: list[float], b: list[float]) -> None:
    w = stats.wasserstein(_sorted(a), _sorted(b))
    assert close(w, float(sps.wasserstein_distance(a, b)))
    std = float(np.std(a))
    if std > 0:
        expected = float(sps.wasserstein_distance(a, b)) / std
        assert close(stats.wasserstein_norm(_sorted(a), _sorted(b)), expected)


@SETTINGS
@given(samples, samples)
def test_wasserstein_of_an_unsorted_batch_equals_scipy(a: list[float], b: list[float]) -> None:
    # The check's path: the reference sorted and cut into cells, the batch unsorted.
    ra = _sorted(a)
    w = stats.wasserstein_unsorted(ra, np.asarray(b, dtype=np.float64))
    assert close(w, float(sps.wasserstein_distance(a, b)))
    edges = stats.quantile_edges(ra)
    assert np.array_equal(
        stats.bin_counts_unsorted(np.asarray(b, dtype=np.float64), edges),
        stats.bin_counts(_sorted(b), edges),
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 5000),
    st.integers(1, 5000),
    st.sampled_from(["normal", "rounded", "lognormal", "outliers"]),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_wasserstein_unsorted_on_large_batches(
    n: int, m: int, shape: str, shift: float, seed: int
) -> None:
    # Large enough for many cells, some where the ECDFs cross (merged exactly) and
    # some where they do not (integrated from counts and sums).
    rng = np.random.default_rng(seed)

    def draw(k: int, d: float) -> np.ndarray:
        if shape == "rounded":
            return np.round(rng.normal(d, 1, k), 1)
        if shape == "lognormal":
            return rng.lognormal(d, 2, k)
        x = rng.normal(d, 1, k)
        if shape == "outliers":
            x[rng.random(k) < 0.01] *= 1e5
        return x

    a, b = draw(n, 0.0), draw(m, shift)
    w = stats.wasserstein_unsorted(np.sort(a), b)
    assert close(w, float(sps.wasserstein_distance(a, b)))


def _psi(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    total = 0.0
    for x, y in zip(p / p.sum(), q / q.sum(), strict=True):
        x, y = max(x, eps), max(y, eps)
        total += (y - x) * math.log(y / x)
    return total


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    return math.sqrt(sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(p, q, strict=True)) / 2)


@SETTINGS
@given(samples, samples)
def test_binned_numeric_equal_scipy_and_textbook(a: list[float], b: list[float]) -> None:
    ra, rb = _sorted(a), _sorted(b)
    edges = stats.quantile_edges(ra)
    p, q = stats.bin_counts(ra, edges), stats.bin_counts(rb, edges)
    assert p.sum() == len(a) and q.sum() == len(b)
    # The bins are the reference's deciles, computed as numpy does.
    assert np.array_equal(edges, np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1])))
    assert close(stats.jensenshannon(p, q), float(jensenshannon(p, q, base=2)))
    assert close(stats.psi(p, q), _psi(p.astype(float), q.astype(float), stats.PSI_EPSILON))
    assert close(stats.hellinger(p, q), _hellinger(p.astype(float), q.astype(float)))


counts = st.lists(st.integers(0, 500), min_size=1, max_size=30)


@SETTINGS
@given(counts, counts, st.integers(0, 5))
def test_categorical_equal_scipy(r: list[int], c: list[int], unseen: int) -> None:
    # Union of categories: the current may have categories the reference lacks.
    k = max(len(r), len(c))
    ra = np.array(r + [0] * (k - len(r)) + [0] * unseen)
    ca = np.array(c + [0] * (k - len(c)) + [7] * unseen)
    if ra.sum() == 0 or ca.sum() == 0:
        with pytest.raises(ValueError):
            stats.chisquare(ra, ca)
        return
    stat, p, dof = stats.chisquare(ra, ca)
    table = np.vstack([ra, ca])
    table = table[:, table.sum(axis=0) > 0]
    ref = sps.chi2_contingency(table)
    assert close(stat, float(ref.statistic)) and close(p, float(ref.pvalue))
    assert dof == ref.dof
    assert math.isfinite(stat)
    assert close(stats.jensenshannon(ra, ca), float(jensenshannon(ra, ca, base=2)))
    assert close(stats.psi(ra, ca), _psi(ra.astype(float), ca.astype(float), stats.PSI_EPSILON))
    assert close(stats.hellinger(ra, ca), _hellinger(ra.astype(float), ca.astype(float)))


@SETTINGS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_benjamini_hochberg_equals_scipy(p: list[float]) -> None:
    got = stats.adjust_pvalues(p, "bh")
    assert np.allclose(got, sps.false_discovery_control(p), rtol=0, atol=TOL)
    assert np.allclose(stats.adjust_pvalues(p, "bonferroni"), np.minimum(np.array(p) * len(p), 1))


def test_exact_ks_fallback_recursion_equals_scipy() -> None:
    # The pure-Python inside method (used when scipy's compiled helper is missing).
    from scipy.stats._stats_pythran import _compute_outer_prob_inside_method as compiled

    for m, n, h in [(7, 5, 12), (30, 20, 25), (100, 37, 900), (12, 8, 4)]:
        g = math.gcd(m, n)
        assert close(stats._outer_prob_inside_py(m, n, g, h), float(compiled(m, n, g, h)))


@SETTINGS
@given(
    st.integers(1, 20_000),
    st.integers(1, 200_000),
    st.integers(0, 30),
    st.integers(0, 30),
    st.floats(0, 1),
)
# far in the upper tail: scipy's sf (1 - cdf) says 1.0e-09, its pmf summed 4.036e-17
# (and mpmath at 50 digits 4.0362232617e-17)
@example(m=625, n=173382, below=0, above=23, at=1.0)
def test_out_of_range_pvalue_equals_scipy_betabinom(
    m: int, n: int, below: int, above: int, at: float
) -> None:
    b = n - 1 - below - above
    mean = m * (below + above + 2) / (n + 1)
    k = int(at * min(m, 6 * mean + 10))  # most of the mass, and some of the far tail
    got = stats.out_of_range_pvalue(k, m, n, below, above)
    if b <= 0 or k == 0:
        assert got == 1.0
        return
    a = below + above + 2
    if k > m * a / (a + b):
        # the upper tail: scipy's sf is 1 - cdf there, which loses what is far out (an
        # absolute error up to ~1e-9); its pmf, summed, keeps it
        expected = float(sps.betabinom.pmf(np.arange(k, m + 1), m, a, b).sum())
    else:
        expected = float(sps.betabinom.sf(k - 1, m, a, b))
    assert close(got, expected)
