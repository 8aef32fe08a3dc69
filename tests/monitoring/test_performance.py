"""Model performance: the labelled metrics equal scikit-learn's; undefined ones say why;
CBPE's estimate follows the realised accuracy and F1 under covariate shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from opsloop.errors import InvalidInput
from opsloop.monitoring.performance import CBPE, breaches, infer_task, performance


def test_classifier_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    pred = (score >= 0.5).astype(int)
    r = performance(y, pred, score, task="classification")
    m = r.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, score), abs=1e-9)
    assert (r.rows, r.labelled, r.dropped, r.reasons) == (500, 500, 0, {})


def test_regressor_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 2, 300)
    pred = y + rng.normal(0, 1, 300)
    m = performance(y, pred, task="regression").metrics
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), abs=1e-12)
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred), abs=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-12)
    assert infer_task(y, pred) == "regression" and infer_task([0, 1], [1, 1]) == "classification"


def test_missing_labels_nan_predictions_one_class_never_raise() -> None:
    # missing labels are left out; NaN predictions dropped and counted
    r = performance([1, None, 0, 1, np.nan], [1, 1, np.nan, 0, 1], [0.9, 0.8, 0.1, 0.4, 0.7])
    assert (r.labelled, r.dropped) == (3, 1)
    assert r.metrics["accuracy"] == pytest.approx(0.5)
    # no labels at all
    r = performance([None, None], [1, 0])
    assert all(v is None for v in r.metrics.values())
    assert r.reasons["accuracy"] == "no labelled rows in the window"
    # empty window
    r = performance([], [], task="classification")
    assert r.reasons["f1"] == "no rows in the window"
    # one class: ROC AUC undefined, with the reason; accuracy defined
    r = performance([1, 1, 1], [1, 0, 1], [0.9, 0.4, 0.8])
    assert r.metrics["roc_auc"] is None and "one class" in r.reasons["roc_auc"]
    assert r.metrics["accuracy"] == pytest.approx(2 / 3)
    # no predicted positives: precision undefined
    r = performance([1, 0, 0], [0, 0, 0])
    assert r.metrics["precision"] is None and "predicted" in r.reasons["precision"]
    # every prediction NaN
    r = performance([1, 0], [np.nan, None])
    assert r.metrics["accuracy"] is None and "missing" in r.reasons["accuracy"]
    # regression: a zero truth, one row
    r = performance([0.0], [1.0], task="regression")
    assert r.metrics["mape"] is None and r.metrics["r2"] is None and r.metrics["mae"] == 1.0
    # text labels, three classes: macro averages; no ROC AUC, with the reason
    r = performance(["a", "b", "c", "a"], ["a", "b", "b", "a"], task="classification")
    assert (
        r.metrics["f1"]
        == pytest.approx(
            skm.f1_score(
                ["a", "b", "c", "a"], ["a", "b", "b", "a"], average="macro", zero_division=0
            )
        )
        or r.metrics["f1"] is None
    )
    assert r.metrics["roc_auc"] is None and "per-class" in r.reasons["roc_auc"]
    with pytest.raises(InvalidInput):
        performance([1, 0], [1])
    assert breaches(performance([1, 0], [1, 1]), {"accuracy": 0.9, "log_loss": 1.0}) == {
        "accuracy": {"value": 0.5, "threshold": 0.9}
    }


def _world(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Covariate shift: x moves, P(y | x) stays."""
    x = rng.normal(shift, 1.0, (n, 2))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def test_cbpe_estimates_realised_performance_under_covariate_shift() -> None:
    rng = np.random.default_rng(7)
    x_train, y_train = _world(rng, 3000, 0.0)
    model = LogisticRegression().fit(x_train, y_train)
    x_ref, y_ref = _world(rng, 5000, 0.0)
    cbpe = CBPE.fit(y_ref, model.predict_proba(x_ref)[:, 1])
    for shift in (0.0, 0.7, -1.0):
        x, y = _world(rng, 5000, shift)
        score = model.predict_proba(x)[:, 1]
        pred = (score >= 0.5).astype(int)
        est = cbpe.estimate(score, pred).metrics
        real = performance(y, pred, score).metrics
        for name in ("accuracy", "f1", "precision", "recall", "roc_auc"):
            assert est[name] == pytest.approx(real[name], abs=0.03), (shift, name)
    # not enough to calibrate on; only one class
    with pytest.raises(InvalidInput, match="at least"):
        CBPE.fit([1, 0], [0.9, 0.1])
    with pytest.raises(InvalidInput, match="both classes"):
        CBPE.fit([1] * 30, [0.9] * 30)
    # NaN scores and an empty window give reasons, not errors
    est = cbpe.estimate([np.nan, np.nan])
    assert est.metrics["accuracy"] is None and est.dropped == 2
    assert cbpe.estimate([]).reasons["accuracy"] == "no rows in the window"
