"""Small current windows from the reference's distribution do not alarm; drift still does.

(a) out-of-range is a significance test, not a fixed share; (b) the domain classifier's
folds keep identical rows together; (c) the default test goes by the smaller side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as sps

from opsloop.monitoring import Reference, drift
from opsloop.monitoring import stats as ost
from opsloop.monitoring.checks import OUT_OF_RANGE_ALERT, DriftReport
from opsloop.monitoring.multivariate import group_folds, row_groups
from opsloop.monitoring.reference import SMALL_SAMPLE


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "y": rng.exponential(1.0 + shift, n),
            "k": rng.integers(0, 3, n),
            "site": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def range_alerts(report: DriftReport) -> list[str]:
    return [a for a in report.alerts if "outside the reference's range" in a]


# -- (a) out of range ----------------------------------------------------------------


def test_out_of_range_pvalue_is_the_exact_null_distribution() -> None:
    # n reference and m current values from one distribution, counted as the check
    # does; the tail of the simulated counts is the beta-binomial's, not the binomial's.
    rng = np.random.default_rng(0)
    n, m, trials = 40, 30, 40_000
    ref = rng.random((trials, n))
    cur = rng.random((trials, m))
    lo, hi = ref.min(axis=1, keepdims=True), ref.max(axis=1, keepdims=True)
    k = np.count_nonzero((cur < lo) | (cur > hi), axis=1)
    for kk in (1, 3, 5, 8):
        simulated = float(np.mean(k >= kk))
        exact = ost.out_of_range_pvalue(kk, m, n)
        assert exact == pytest.approx(simulated, abs=4 * np.sqrt(exact * (1 - exact) / trials))
    # The binomial with p = 2/(n+1) is too small in the tail: it would over-alert.
    assert sps.binom.sf(7, m, 2 / (n + 1)) < 0.6 * ost.out_of_range_pvalue(8, m, n)
    assert ost.out_of_range_pvalue(0, m, n) == 1.0
    assert ost.out_of_range_pvalue(1, 5, 1) == 1.0  # one reference value: all outside


def _just_outside(ref: np.ndarray, m: int, k: int, seed: int) -> np.ndarray:
    """``m`` values inside the range of ``ref``, ``k`` of them moved just past it."""
    rng = np.random.default_rng(seed)
    cur = rng.choice(ref[(ref > ref.min()) & (ref < ref.max())], m)
    cur[:k] = ref.max() + 1e-6 * (1 + np.arange(k))
    return cur


def test_a_few_values_out_of_range_are_not_an_alert_when_expected() -> None:
    # The demo's case: 200 current values against ~430 reference values. 2/(n+1) is
    # 0.5%, so 1-3 values (0.5-1.5%) outside is ordinary; the old fixed 1% alerted.
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({f"c{j}": rng.normal(size=430) for j in range(30)})
    cur = pd.DataFrame({c: _just_outside(ref[c].to_numpy(), 200, 3, j) for j, c in enumerate(ref)})
    rep = drift(ref, cur, multivariate=False)
    sig = rep.columns["c0"].signals
    assert sig["out_of_range_share"] == pytest.approx(0.015) and sig["out_of_range_count"] == 3
    assert sig["out_of_range_share"] > OUT_OF_RANGE_ALERT
    assert sig["out_of_range_expected_share"] == pytest.approx(2 / 431)
    assert sig["out_of_range_p_value"] == pytest.approx(ost.out_of_range_pvalue(3, 200, 430))
    assert range_alerts(rep) == []
    # A real excess alerts, and says what was expected.
    cur["c5"] = _just_outside(ref["c5"].to_numpy(), 200, 30, 5)
    rep = drift(ref, cur, multivariate=False)
    assert [a.split(":")[0] for a in range_alerts(rep)] == ["c5"]
    assert "expected 0.5%" in range_alerts(rep)[0]


def test_out_of_range_p_values_are_corrected_across_columns() -> None:
    # 5 of 200 outside one column: p 0.014 alone, not after 30 columns' correction.
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({f"c{j}": rng.normal(size=430) for j in range(30)})
    cur = pd.DataFrame({c: _just_outside(ref[c].to_numpy(), 200, 0, j) for j, c in enumerate(ref)})
    cur["c0"] = _just_outside(ref["c0"].to_numpy(), 200, 5, 0)
    raw = ost.out_of_range_pvalue(5, 200, 430)
    assert 0.01 < raw < 0.05
    for correction in ("bh", "bonferroni"):
        rep = drift(ref, cur, multivariate=False, correction=correction)
        assert range_alerts(rep) == []
        assert rep.columns["c0"].signals["out_of_range_p_value_adjusted"] == pytest.approx(
            min(1.0, 30 * raw)
        )
    rep = drift(ref, cur, multivariate=False, correction="none")
    assert [a.split(":")[0] for a in range_alerts(rep)] == ["c0"]


def test_a_significant_but_tiny_excess_on_a_large_window_does_not_alert() -> None:
    # 0.5% outside where 0.02% is expected: significant, but under the 1% floor.
    ref = pd.DataFrame({"v": np.linspace(0.0, 1.0, 10_000)})
    cur = np.random.default_rng(3).uniform(0.0, 1.0, 200_000)
    cur[:1000] = 2.0
    rep = drift(ref, pd.DataFrame({"v": cur}), multivariate=False)
    sig = rep.columns["v"].signals
    assert sig["out_of_range_p_value_adjusted"] < 1e-6
    assert sig["out_of_range_share"] == pytest.approx(0.005)
    assert range_alerts(rep) == []
    cur[:4000] = 2.0  # 2%: past both
    rep = drift(ref, pd.DataFrame({"v": cur}), multivariate=False)
    assert len(range_alerts(rep)) == 1


def test_a_sketched_reference_expects_the_values_beyond_its_ends() -> None:
    # A stored reference of 200,000 values keeps 10,000 order statistics; its ends are
    # the 11th smallest and 10th largest values, so ~21 in 200,000 fall outside by chance.
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"v": rng.normal(size=200_000)})
    back = Reference.from_bytes(Reference.fit(ref, multivariate=False).to_bytes())
    nr = back.columns["v"].numeric
    assert nr is not None and nr.sketched
    assert nr.beyond_ends() == (10, 9)
    exact = Reference.fit(ref, multivariate=False).columns["v"].numeric
    assert exact is not None and exact.beyond_ends() == (0, 0)
    rep = drift(back, pd.DataFrame({"v": rng.normal(size=200_000)}), multivariate=False)
    sig = rep.columns["v"].signals
    assert sig["out_of_range_expected_share"] == pytest.approx(21 / 200_001)
    assert sig["out_of_range_p_value"] > 1e-3
    assert range_alerts(rep) == []


# -- (b) the domain classifier ------------------------------------------------------------


def test_row_groups_match_identical_rows_with_nan() -> None:
    x = np.array([[1.0, np.nan], [2.0, 0.0], [1.0, np.nan], [2.0, -0.0], [np.nan, np.nan]])
    g = row_groups(x)
    assert g[0] == g[2] and g[1] == g[3]
    assert len(set(g.tolist())) == 3


def wide(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 20)), columns=[f"c{j}" for j in range(20)])


def test_group_folds_keep_copies_together_and_stratify() -> None:
    y = np.repeat([0, 1], 300)
    # the reference side distinct; the current side 120 rows cycled, a few shared
    groups = np.concatenate([np.arange(300), 300 + np.arange(300) % 120])
    groups[300:310] = groups[:10]  # rows seen on both sides
    splits = group_folds(y, groups, 2, seed=0)
    assert splits is not None and len(splits) == 2
    tests = np.concatenate([te for _, te in splits])
    assert sorted(tests.tolist()) == list(range(600))  # a partition
    for train, test in splits:
        assert not set(groups[train].tolist()) & set(groups[test].tolist())
        for label in (0, 1):
            assert abs(int(np.sum(y[test] == label)) - 150) <= 3
    assert group_folds(y, groups, 2, seed=1) is not None
    # one distinct row on a side: no split can train on both sides
    assert group_folds(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 3, 3, 3]), 2, 0) is None


def _repeated(n_distinct: int, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` requests cycling through ``n_distinct`` rows, as the demo's traffic."""
    base = wide(n_distinct, seed)
    return base.iloc[[i % n_distinct for i in range(rows)]].reset_index(drop=True)


def test_the_classifier_is_not_fooled_by_repeated_rows() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = 240
    old_threshold = 0.5 + 4 * np.sqrt((2 * n + 1) / (12 * n * n))  # before: rows as if distinct
    for seed in range(3):
        ref = Reference.fit(wide(450, 100 + seed))
        cur = _repeated(120, n, seed)  # each row twice
        mv = drift(ref, cur, multivariate=("classifier",), seed=seed).multivariate["classifier"]
        assert not mv["drifted"], mv
        assert mv["statistic"] < 0.6
        assert mv["rows_per_side"] == n and mv["effective_rows"] == [n, 120]
        # Folds that split copies apart tell the sides apart by memory: the leak is real.
        model = ref.multivariate
        assert model is not None
        rng = np.random.default_rng(seed)
        xr = model.sample[rng.choice(len(model.sample), n, replace=False)]
        x = np.vstack([xr, model.encode(cur, seed)])
        y = np.repeat([0, 1], n)
        clf = HistGradientBoostingClassifier(
            max_iter=30, max_leaf_nodes=15, max_bins=63, early_stopping=False, random_state=0
        )
        cv = StratifiedKFold(2, shuffle=True, random_state=seed)
        leaky = roc_auc_score(y, cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1])
        assert leaky > old_threshold, leaky


def test_the_classifier_still_sees_drift_in_small_repeated_windows() -> None:
    ref = Reference.fit(wide(450, 7))
    moved = _repeated(120, 240, 8).assign(c0=lambda d: d["c0"] + 1.0)
    mv = drift(ref, moved, multivariate=("classifier",)).multivariate["classifier"]
    assert mv["drifted"], mv


def test_a_stuck_input_is_an_error_of_the_classifier_and_drift_of_the_columns() -> None:
    ref = frame(450, 9)
    stuck = pd.concat([frame(1, 10)] * 100, ignore_index=True)
    rep = drift(ref, stuck)
    assert "error" in rep.multivariate["classifier"]
    assert "x" in rep.drifted_columns


# -- (c) the default test by the smaller side ------------------------------------------------


def test_the_default_test_goes_by_the_smaller_side() -> None:
    big = frame(5000, 0)
    small_cur = drift(big, frame(300, 1), multivariate=False).columns
    assert [small_cur[c].test for c in ("x", "y", "k", "site")] == [
        "ks",
        "ks",
        "chisquare",
        "chisquare",
    ]
    assert small_cur["x"].threshold_on == "p_value"
    large_cur = drift(big, frame(3000, 1), multivariate=False).columns
    assert [large_cur[c].test for c in ("x", "y", "k", "site")] == [
        "wasserstein",
        "wasserstein",
        "jensenshannon",
        "jensenshannon",
    ]
    cref = Reference.fit(big, multivariate=False).columns["x"]
    assert cref.default_test() == "wasserstein"
    assert cref.default_test(SMALL_SAMPLE) == "ks"
    assert cref.default_test(SMALL_SAMPLE + 1) == "wasserstein"
    # A small reference keeps the p-value tests whatever the batch.
    assert drift(frame(500, 0), frame(5000, 1), multivariate=False).columns["x"].test == "ks"


def test_a_small_window_against_a_large_reference_is_quiet() -> None:
    # 100 values against 20,000 from one distribution: the distance bound of 0.1 is
    # mostly noise at that size (over it two times in three); the KS test is not.
    ref = Reference.fit(pd.DataFrame({"v": np.random.default_rng(0).normal(size=20_000)}))
    drifted = 0
    for seed in range(40):
        cur = pd.DataFrame({"v": np.random.default_rng(seed + 1).normal(size=100)})
        e = drift(ref, cur, multivariate=False).columns["v"]
        assert e.test == "ks"
        drifted += bool(e.drifted)
    assert drifted <= 6  # 5% of 40 is 2
    moved = pd.DataFrame({"v": np.random.default_rng(99).normal(0.6, 1.0, size=100)})
    assert drift(ref, moved, multivariate=False).columns["v"].drifted


def test_learned_thresholds_cover_both_default_tests() -> None:
    fitted = Reference.fit(frame(6000, 0), learn_thresholds=True, multivariate=False)
    assert {"wasserstein", "ks"} <= set(fitted.columns["x"].learned)
    assert {"jensenshannon", "chisquare"} <= set(fitted.columns["site"].learned)
    back = Reference.from_bytes(fitted.to_bytes())
    small = drift(back, frame(300, 1), threshold="learned", multivariate=False)
    e = small.columns["x"]
    assert (e.test, e.threshold_on, e.note) == ("ks", "statistic", None)
    assert not small.columns["site"].note
    small_ref = Reference.fit(frame(600, 0), learn_thresholds=True, multivariate=False)
    assert set(small_ref.columns["x"].learned) == {"ks"}
    # A reference stored before both were learned says what it has.
    del back.columns["x"].learned["ks"]
    e = drift(back, frame(300, 1), threshold="learned", multivariate=False).columns["x"]
    assert e.threshold == 0.05 and "learned wasserstein only" in (e.note or "")


# -- the demo's windows --------------------------------------------------------------------


def test_the_demo_windows() -> None:
    # As `opsloop demo`: the training split as the reference, 200 requests cycling
    # through the test split (steady), then the same with three inputs scaled.
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    df = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(df, test_size=0.25, random_state=42, stratify=df["target"])
    x_test = test.drop(columns=["target"]).reset_index(drop=True)
    features = list(x_test.columns)
    ref = Reference.fit(pa.Table.from_pandas(train[features], preserve_index=False))
    steady = x_test.iloc[[i % len(x_test) for i in range(200)]].reset_index(drop=True)
    shifts = {"mean radius": 1.3, "mean texture": 1.4, "worst area": 1.6}
    shifted = steady.assign(**{c: steady[c] * f for c, f in shifts.items()})
    quiet = drift(ref, steady, columns=features)
    assert quiet.drifted_columns == [] and quiet.alerts == [], quiet.alerts
    loud = drift(ref, shifted, columns=features)
    assert sorted(loud.drifted_columns) == sorted(shifts)
