"""Model performance on a window of predictions: measured with labels, estimated without.

**With labels** (:func:`performance`): accuracy, precision, recall, F1, ROC AUC and log
loss for classifiers; MAE, RMSE, MAPE and R² for regressors - scikit-learn's metrics on
the rows that have a label. Nothing here raises on the data: a metric that is not
defined on a window is ``None`` with its reason in ``reasons`` (no labelled rows; only
one class among the labels, for ROC AUC; no scores, for ROC AUC and log loss; a true
value of 0, for MAPE; fewer than two rows, for R²). Rows whose prediction (or score) is
missing or not finite are left out and counted in ``dropped``.

Binary classification uses ``positive`` as the positive class (precision, recall, F1,
ROC AUC and log loss are about it); more than two classes use the macro average of
precision, recall and F1 (ROC AUC and log loss then need per-class scores, which a
single score column does not give: ``None`` with the reason).

**Without labels** (:class:`CBPE`): confidence-based performance estimation, as in
NannyML. On a reference set with labels, the model's scores are calibrated (isotonic
regression of the label on the score); on an unlabelled window each row's calibrated
score ``p`` is the chance that its true class is the positive one, so the expected
confusion matrix is::

    TP = sum(p over rows predicted positive)      FP = sum(1 - p, predicted positive)
    FN = sum(p over rows predicted negative)      TN = sum(1 - p, predicted negative)

from which come the expected accuracy, precision, recall and F1; and the expected ROC
AUC from the ROC curve whose true- and false-positive rates, at each score threshold,
are the cumulative sums of ``p`` and ``1 - p`` over the rows above it.

The estimate is right when (and only when) its assumptions hold:

- **no concept drift**: ``P(y | x)`` - hence ``P(y | score)`` - is the same in the
  window as in the reference; covariate shift (a change in ``P(x)``) is what CBPE is
  for, a change in the relation between inputs and labels it cannot see;
- **calibration carries over**: after calibration on the reference, the scores are
  calibrated on the window too (follows from the first, for the score's range that
  the reference covers; scores outside it are clipped to the reference's extremes);
- binary classification with a score for the positive class, and enough reference
  rows of both classes to calibrate on (at least ``MIN_REFERENCE`` rows).

Example::

    from opsloop.monitoring.performance import CBPE, performance

    performance(y_true, y_pred, y_score, task="classification").metrics["f1"]
    cbpe = CBPE.fit(ref["label"], ref["score"])
    cbpe.estimate(window["score"]).metrics["accuracy"]      # expected accuracy
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opsloop.errors import InvalidInput

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSOR_METRICS = ("mae", "rmse", "mape", "r2")
CBPE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
# Metrics where smaller is better (a threshold on them is a maximum, not a minimum).
LOWER_IS_BETTER = frozenset(("log_loss", "mae", "rmse", "mape"))
MIN_REFERENCE = 20
# Scores are clipped this far from 0 and 1 for the log loss (scikit-learn's eps).
EPS = 1e-15


@dataclass
class PerformanceResult:
    """Metrics of one window: ``metrics[name]`` is a number, or None with
    ``reasons[name]`` saying why it is not defined here."""

    task: str
    metrics: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    rows: int = 0  # rows in the window
    labelled: int = 0  # rows with a label (or, for an estimate, rows estimated)
    dropped: int = 0  # rows left out: a missing or non-finite prediction or score
    estimated: bool = False
    positive: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "estimated": self.estimated,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "reasons": dict(self.reasons),
            "rows": self.rows,
            "labelled": self.labelled,
            "dropped": self.dropped,
            "positive": _plain(self.positive),
        }


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _missing(values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True where a value is missing: None, NaN, pandas' NA, or a non-finite number."""
    import pandas as pd  # type: ignore[import-untyped]

    s = pd.Series(values, dtype=object)
    miss: np.ndarray[Any, np.dtype[np.bool_]] = s.isna().to_numpy(dtype=bool, copy=True)
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    isnum = np.asarray([isinstance(v, float | np.floating) for v in values], dtype=bool)
    miss |= isnum & ~np.isfinite(num)
    return miss


def _as_array(values: Any) -> np.ndarray[Any, Any]:
    if values is None:
        return np.asarray([], dtype=object)
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype=object)
    return np.asarray(list(values), dtype=object)


def _labels_like(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Class labels made comparable: 1.0 and 1 and True are one class (a float label
    from a numeric column is its integer when it is whole)."""
    out = []
    for v in values:
        v = _plain(v)
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(v)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def _scores(values: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Scores as floats; anything that is not a number becomes NaN."""
    import pandas as pd

    arr = _as_array(values)
    s = pd.Series(arr, dtype=object).map(lambda v: v if not isinstance(v, str) else None)
    out: np.ndarray[Any, np.dtype[np.float64]] = pd.to_numeric(s, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return out


def infer_task(y_true: Any, y_pred: Any) -> str:
    """``classification`` when the labels and predictions look like classes (text,
    booleans, or whole numbers with at most 20 distinct values), else ``regression``."""
    values = [v for v in (*_as_array(y_true), *_as_array(y_pred)) if v is not None]
    values = [_plain(v) for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return CLASSIFICATION
    if any(isinstance(v, str | bool) for v in values):
        return CLASSIFICATION
    try:
        nums = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return CLASSIFICATION
    finite = nums[np.isfinite(nums)]
    if len(finite) and np.all(finite == np.round(finite)) and len(np.unique(finite)) <= 20:
        return CLASSIFICATION
    return REGRESSION


def performance(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    *,
    task: str | None = None,
    positive: Any = 1,
) -> PerformanceResult:
    """Measured performance of predictions ``y_pred`` against labels ``y_true`` (None
    or NaN: not labelled yet; those rows are left out). ``y_score``: the score of
    ``positive`` (a probability), for ROC AUC and log loss. ``task``:
    ``classification`` or ``regression`` (default: guessed by :func:`infer_task`).

    Example::

        r = performance([1, 0, 1, None], [1, 0, 0, 1], [0.9, 0.2, 0.4, 0.7])
        r.metrics["accuracy"], r.labelled          # 0.667, 3
        r.metrics["roc_auc"]                        # 1.0
    """
    truth = _as_array(y_true)
    pred = _as_array(y_pred)
    if len(truth) != len(pred):
        raise InvalidInput(f"{len(truth)} labels but {len(pred)} predictions")
    score = None if y_score is None else _scores(y_score)
    if score is not None and len(score) != len(pred):
        raise InvalidInput(f"{len(pred)} predictions but {len(score)} scores")
    if task is None:
        task = infer_task(truth, pred)
    if task not in TASKS:
        raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
    names = CLASSIFIER_METRICS if task == CLASSIFICATION else REGRESSOR_METRICS
    n = len(truth)
    labelled = ~_missing(truth) if n else np.zeros(0, bool)
    bad_pred = _missing(pred) if n else np.zeros(0, bool)
    keep = labelled & ~bad_pred
    result = PerformanceResult(
        task,
        dict.fromkeys(names),
        rows=n,
        labelled=int(labelled.sum()),
        dropped=int((labelled & bad_pred).sum()),
        positive=positive if task == CLASSIFICATION else None,
    )
    if not labelled.any():
        why = "no labelled rows in the window" if n else "no rows in the window"
        result.reasons = dict.fromkeys(names, why)
        return result
    if not keep.any():
        result.reasons = dict.fromkeys(names, "every labelled row's prediction is missing")
        return result
    if task == CLASSIFICATION:
        _classifier(result, truth[keep], pred[keep], None if score is None else score[keep])
    else:
        _regressor(result, truth[keep], pred[keep])
    return result


def _classifier(
    r: PerformanceResult,
    truth: np.ndarray[Any, Any],
    pred: np.ndarray[Any, Any],
    score: np.ndarray[Any, np.dtype[np.float64]] | None,
) -> None:
    from sklearn import metrics as skm

    t, p = _labels_like(truth), _labels_like(pred)
    pos = _labels_like(np.asarray([r.positive], dtype=object))[0]
    try:
        classes = sorted({*t, *p}, key=lambda v: (str(type(v)), v))
    except TypeError:
        classes = sorted({*t, *p}, key=str)
    # text labels and numbers together cannot be compared by scikit-learn: compare as text
    if len({type(c) for c in classes}) > 1:
        t = np.asarray([str(v) for v in t], dtype=object)
        p = np.asarray([str(v) for v in p], dtype=object)
        pos = str(pos)
        classes = sorted({*t, *p})
    t_list, p_list = t.tolist(), p.tolist()
    r.metrics["accuracy"] = float(skm.accuracy_score(t_list, p_list))
    binary = len(classes) <= 2 and (pos in classes or len(classes) < 2)
    if binary:
        kw: dict[str, Any] = {"pos_label": pos, "average": "binary", "zero_division": np.nan}
        labels = [c for c in classes]
        if pos not in labels:
            labels.append(pos)
        kw["labels"] = labels
    else:
        kw = {"average": "macro", "zero_division": np.nan}
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        value = float(fn(t_list, p_list, **kw))
        if math.isnan(value):
            r.metrics[name] = None
            r.reasons[name] = (
                {
                    "precision": f"no row was predicted {pos!r}",
                    "recall": f"no labelled row is {pos!r}",
                    "f1": f"no row is {pos!r}, predicted or labelled",
                }[name]
                if binary
                else "a class has no predicted or labelled rows"
            )
        else:
            r.metrics[name] = value
    if not binary:
        for name in ("roc_auc", "log_loss"):
            r.reasons[name] = (
                f"{len(classes)} classes, or a positive class {pos!r} not among them: "
                "ROC AUC and log loss need per-class scores"
            )
        return
    if score is None:
        for name in ("roc_auc", "log_loss"):
            r.reasons[name] = "no score column: give the probability of the positive class"
        return
    ok = np.isfinite(score)
    if not ok.any():
        for name in ("roc_auc", "log_loss"):
            r.reasons[name] = "every score is missing or not finite"
        return
    r.dropped += int((~ok).sum())
    y = np.asarray([v == pos for v in t], dtype=np.int64)[ok]
    s = score[ok]
    if y.min() == y.max():
        r.reasons["roc_auc"] = (
            f"the labels are all of one class ({'positive' if y[0] else 'negative'}): ROC AUC is not defined"
        )
    else:
        r.metrics["roc_auc"] = float(skm.roc_auc_score(y, s))
    if np.any((s < 0) | (s > 1)):
        r.reasons["log_loss"] = "scores outside [0, 1] are not probabilities"
    else:
        r.metrics["log_loss"] = float(skm.log_loss(y, np.clip(s, EPS, 1 - EPS), labels=[0, 1]))


def _regressor(
    r: PerformanceResult, truth: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]
) -> None:
    from sklearn import metrics as skm

    t, p = _scores(truth), _scores(pred)
    ok = np.isfinite(t) & np.isfinite(p)
    r.dropped += int((~ok).sum())
    if not ok.any():
        r.reasons = dict.fromkeys(
            REGRESSOR_METRICS, "no labelled row has a numeric label and prediction"
        )
        return
    t, p = t[ok], p[ok]
    r.metrics["mae"] = float(skm.mean_absolute_error(t, p))
    r.metrics["rmse"] = float(math.sqrt(skm.mean_squared_error(t, p)))
    if np.any(t == 0):
        r.reasons["mape"] = "a true value is 0: MAPE is not defined"
    else:
        r.metrics["mape"] = float(skm.mean_absolute_percentage_error(t, p))
    if len(t) < 2:
        r.reasons["r2"] = "R² needs at least two labelled rows"
    elif np.all(t == t[0]):
        r.reasons["r2"] = "the true values are all equal: R² is not defined"
    else:
        r.metrics["r2"] = float(skm.r2_score(t, p))


# -- CBPE -----------------------------------------------------------------------------


@dataclass
class CBPE:
    """Confidence-based performance estimation for a binary classifier (see the module
    docstring for the method and its assumptions).

    Example::

        cbpe = CBPE.fit(reference_labels, reference_scores, positive=1)
        est = cbpe.estimate(window_scores)         # or with y_pred=window_predictions
        est.metrics["accuracy"], est.metrics["f1"], est.metrics["roc_auc"]
    """

    x: np.ndarray[Any, np.dtype[np.float64]]  # the isotonic fit's knots (scores)
    y: np.ndarray[Any, np.dtype[np.float64]]  # and their calibrated probabilities
    positive: Any = 1
    threshold: float = 0.5
    reference_rows: int = 0

    @classmethod
    def fit(
        cls,
        y_true: Any,
        y_score: Any,
        *,
        positive: Any = 1,
        threshold: float = 0.5,
    ) -> CBPE:
        """Calibrate on labelled reference rows: ``y_score`` is the model's score of
        ``positive``; a row is predicted positive when its score is at least
        ``threshold`` (unless ``estimate`` is given the predictions). Raises
        InvalidInput when there is not enough to calibrate on."""
        from sklearn.isotonic import IsotonicRegression

        truth = _as_array(y_true)
        score = _scores(y_score)
        if len(truth) != len(score):
            raise InvalidInput(f"{len(truth)} labels but {len(score)} scores")
        ok = ~_missing(truth) & np.isfinite(score) if len(truth) else np.zeros(0, bool)
        pos = _labels_like(np.asarray([positive], dtype=object))[0]
        y = np.asarray([v == pos for v in _labels_like(truth[ok])], dtype=np.float64)
        s = score[ok]
        if len(y) < MIN_REFERENCE:
            raise InvalidInput(
                f"CBPE needs at least {MIN_REFERENCE} reference rows with a label and a "
                f"score to calibrate on; got {len(y)}"
            )
        if y.min() == y.max():
            raise InvalidInput(
                f"CBPE needs reference labels of both classes; all {len(y)} are "
                f"{'the positive class' if y[0] else 'negative'} ({positive!r} is positive)"
            )
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        return cls(
            np.asarray(iso.X_thresholds_, dtype=np.float64),
            np.asarray(iso.y_thresholds_, dtype=np.float64),
            positive,
            float(threshold),
            len(y),
        )

    def calibrate(self, y_score: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Calibrated probabilities of the positive class (NaN stays NaN)."""
        s = _scores(y_score)
        # np.interp holds the end values beyond the knots: IsotonicRegression's "clip"
        out: np.ndarray[Any, np.dtype[np.float64]] = np.interp(s, self.x, self.y)
        out[~np.isfinite(s)] = np.nan
        return out

    def estimate(self, y_score: Any, y_pred: Any = None) -> PerformanceResult:
        """The expected accuracy, precision, recall, F1 and ROC AUC on rows without
        labels. ``y_pred``: the predicted classes (default: score >= threshold)."""
        p = self.calibrate(y_score)
        n = len(p)
        result = PerformanceResult(
            CLASSIFICATION,
            dict.fromkeys(CBPE_METRICS),
            rows=n,
            estimated=True,
            positive=self.positive,
        )
        s = _scores(y_score)
        if y_pred is None:
            hat = np.where(np.isfinite(s), s >= self.threshold, False)
            ok = np.isfinite(p)
        else:
            preds = _as_array(y_pred)
            if len(preds) != n:
                raise InvalidInput(f"{n} scores but {len(preds)} predictions")
            pos = _labels_like(np.asarray([self.positive], dtype=object))[0]
            hat = np.asarray([v == pos for v in _labels_like(preds)], dtype=bool)
            ok = np.isfinite(p) & ~_missing(preds) if n else np.zeros(0, bool)
        result.dropped = int(n - ok.sum())
        result.labelled = int(ok.sum())
        if not ok.any():
            why = "no rows in the window" if not n else "every score is missing or not finite"
            result.reasons = dict.fromkeys(CBPE_METRICS, why)
            return result
        p, hat, s = p[ok], hat[ok], s[ok]
        tp = float(p[hat].sum())
        fp = float((1 - p[hat]).sum())
        fn = float(p[~hat].sum())
        tn = float((1 - p[~hat]).sum())
        m = result.metrics
        m["accuracy"] = (tp + tn) / len(p)
        if tp + fp > 0:
            m["precision"] = tp / (tp + fp)
        else:
            result.reasons["precision"] = "no row is predicted positive"
        if tp + fn > 0:
            m["recall"] = tp / (tp + fn)
        else:
            result.reasons["recall"] = "no row is expected to be positive"
        if 2 * tp + fp + fn > 0:
            m["f1"] = 2 * tp / (2 * tp + fp + fn)
        else:
            result.reasons["f1"] = "no row is predicted or expected to be positive"
        auc = expected_roc_auc(s, p)
        if auc is None:
            result.reasons["roc_auc"] = "the window is expected to hold only one class"
        m["roc_auc"] = auc
        return result


def expected_roc_auc(
    score: np.ndarray[Any, np.dtype[np.float64]], p: np.ndarray[Any, np.dtype[np.float64]]
) -> float | None:
    """The ROC AUC expected when each row is positive with probability ``p``: the
    area under the curve of (cumulative ``1 - p``, cumulative ``p``) over the rows by
    descending ``score``, rows of one score taken together (a diagonal step)."""
    pos_total = float(p.sum())
    neg_total = float((1 - p).sum())
    if pos_total <= 0 or neg_total <= 0:
        return None
    order = np.argsort(-score, kind="stable")
    s, q = score[order], p[order]
    # the end of each run of equal scores
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.r_[0.0, np.cumsum(q)[ends]] / pos_total
    fps = np.r_[0.0, np.cumsum(1 - q)[ends]] / neg_total
    return float(np.trapezoid(tps, fps))


def breaches(
    result: PerformanceResult, thresholds: dict[str, float]
) -> dict[str, dict[str, float]]:
    """The metrics past their thresholds: a minimum for the metrics where higher is
    better (accuracy, precision, recall, F1, ROC AUC, R²), a maximum for the errors
    (log loss, MAE, RMSE, MAPE). A metric that is None breaches nothing.

    Example::

        breaches(result, {"accuracy": 0.9, "rmse": 4.0})   # {"accuracy": {...}}
    """
    out: dict[str, dict[str, float]] = {}
    for name, bound in thresholds.items():
        value = result.metrics.get(name)
        if value is None or not math.isfinite(value):
            continue
        if (value > bound) if name in LOWER_IS_BETTER else (value < bound):
            out[name] = {"value": value, "threshold": float(bound)}
    return out
