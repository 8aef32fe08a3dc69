"""With no drift, p-value tests alert at their nominal rate (5% +- 1 point over 2,000 trials)."""

from __future__ import annotations

import numpy as np

from opsloop.monitoring import stats

TRIALS = 2000
ALPHA = 0.05


def test_ks_alerts_at_nominal_rate() -> None:
    # Unequal sizes keep the exact null distribution's lattice fine (lcm 300), so the
    # attainable level is close to 5%; equal sizes make the exact test conservative.
    rng = np.random.default_rng(0)
    a = np.sort(rng.normal(size=(TRIALS, 50)), axis=1)
    b = np.sort(rng.normal(size=(TRIALS, 60)), axis=1)
    p = np.array([stats.ks(a[i], b[i])[1] for i in range(TRIALS)])
    rate = float(np.mean(p < ALPHA))
    assert abs(rate - ALPHA) <= 0.01, rate


def test_ks_asymptotic_alerts_at_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    a = np.sort(rng.normal(size=(TRIALS, 120)), axis=1)
    b = np.sort(rng.normal(size=(TRIALS, 90)), axis=1)
    p = np.array([stats.ks(a[i], b[i], method="asymp")[1] for i in range(TRIALS)])
    rate = float(np.mean(p < ALPHA))
    assert abs(rate - ALPHA) <= 0.01, rate


def test_chisquare_alerts_at_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    r = rng.multinomial(200, probs, size=TRIALS)
    c = rng.multinomial(150, probs, size=TRIALS)
    p = np.array([stats.chisquare(r[i], c[i])[1] for i in range(TRIALS)])
    rate = float(np.mean(p < ALPHA))
    assert abs(rate - ALPHA) <= 0.01, rate


def test_drift_report_alerts_at_nominal_rate_through_the_engine() -> None:
    # The same through drift(): one numeric and one categorical column per trial.
    import pandas as pd

    from opsloop.monitoring import drift

    rng = np.random.default_rng(2)
    hits = {"x": 0, "c": 0}
    trials = 400
    for _ in range(trials):
        ref = pd.DataFrame({"x": rng.normal(size=50), "c": rng.choice(list("abcd"), 80)[:50]})
        cur = pd.DataFrame({"x": rng.normal(size=60), "c": rng.choice(list("abcd"), 60)})
        rep = drift(ref, cur, multivariate=False, correction="none")
        for col in hits:
            hits[col] += bool(rep.columns[col].drifted)
    for col, n in hits.items():
        # 400 trials: a 2.5-sigma band around 5%.
        assert abs(n / trials - ALPHA) <= 0.03, (col, n / trials)
