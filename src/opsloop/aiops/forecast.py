"""Outage prediction: forecast a signal's path and the time it will cross its limit.

The forecast is a robust linear trend on a recent window: the Theil-Sen slope (the
median of the slopes between pairs of points, so a spike or a few bad points do not
tilt it), the median intercept, and the residuals' scale from their median absolute
deviation. The prediction interval at a time ``h`` ahead combines the residual noise
and the slope's uncertainty (its confidence interval from the pairwise slopes)::

    se(h) = sqrt(sigma² + (h · slope_se)²)

A breach is *forecast* when three things hold: the trend goes towards the limit and
its confidence interval excludes a flat line (so noise around a level never warns),
the fitted path crosses the limit within the horizon, and the probability that the
signal is past the limit at the horizon is at least ``confidence``. The predicted
time is where the fitted path crosses; ``earliest``/``latest`` are where the upper
and lower bands of the interval cross (``latest`` is None when the lower band never
does within three horizons).

Bad data has defined behaviour: NaN and ±inf are left out, repeated timestamps keep
the last value, and fewer than ``min_points`` points (or all at one time) give status
``insufficient`` — but the breach check itself still runs on the latest value.

Example::

    f = forecast_breach(ts, values, op="above", threshold=90.0, horizon_ms=6 * 3_600_000)
    if f.status == "forecast":
        print("disk full at", f.predicted_time, "±", f.earliest_time, f.latest_time)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

HOUR_MS = 3_600_000
MAX_FIT_POINTS = 400
OPS = ("above", "below")
STATUSES = ("ok", "forecast", "breached", "insufficient")


@dataclass(frozen=True)
class Trend:
    """A robust linear trend fitted on a window, anchored at its last point."""

    at: int  # ms: the last point's time (x = 0)
    level: float  # the fitted value at ``at``
    slope: float  # per hour
    slope_low: float
    slope_high: float
    sigma: float  # the residuals' robust scale
    points: int
    confidence: float

    @property
    def z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.confidence / 2))

    @property
    def slope_se(self) -> float:
        return max(0.0, (self.slope_high - self.slope_low) / (2 * self.z))

    def predict(self, t_ms: int | float) -> tuple[float, float, float]:
        """The forecast at ``t_ms``: (mean, lower, upper) of the prediction interval."""
        h = (t_ms - self.at) / HOUR_MS
        mean = self.level + self.slope * h
        half = self.z * self.se(h)
        return mean, mean - half, mean + half

    def se(self, h: float) -> float:
        return math.sqrt(self.sigma**2 + (h * self.slope_se) ** 2)

    def probability_past(self, op: str, threshold: float, h: float) -> float:
        """P(the value ``h`` hours ahead is past the limit) under the interval's normal."""
        mean = self.level + self.slope * h
        se = self.se(h)
        gap = (mean - threshold) if op == "above" else (threshold - mean)
        if se <= 0:
            return 1.0 if gap >= 0 else 0.0
        return float(stats.norm.cdf(gap / se))


@dataclass(frozen=True)
class BreachForecast:
    """What a limit check found for one series."""

    status: str  # ok | forecast | breached | insufficient
    op: str
    threshold: float
    horizon_ms: int
    at: int | None  # the last point's time
    current: float | None  # the last finite value
    points: int
    predicted_time: int | None = None
    earliest_time: int | None = None
    latest_time: int | None = None
    probability: float | None = None  # of being past the limit at the horizon
    slope_per_hour: float | None = None
    method: str = "theil-sen"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, subject: str) -> str:
        """One line for people."""
        word = "above" if self.op == "above" else "below"
        if self.status == "breached":
            return f"{subject} is {self.current:.6g}, {word} its limit {self.threshold:.6g}"
        if self.status == "forecast" and self.predicted_time is not None and self.at is not None:
            mins = (self.predicted_time - self.at) / 60_000
            when = f"{mins:.0f} min" if mins < 120 else f"{mins / 60:.1f} h"
            return (
                f"{subject} is forecast to go {word} {self.threshold:.6g} in about {when} "
                f"(now {self.current:.6g}, {self.slope_per_hour:+.3g}/h, "
                f"p={self.probability:.2f} by the horizon)"
            )
        return f"{subject}: {self.status}"


def _past(value: float, op: str, threshold: float) -> bool:
    return value >= threshold if op == "above" else value <= threshold


def clean(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite points, sorted by time, the last value of a repeated timestamp."""
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    ts, values = ts[keep], values[keep]
    if len(ts) > 1:
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = ts[1:] != ts[:-1]
        ts, values = ts[last], values[last]
    return ts, values


def fit_trend(
    ts: np.ndarray, values: np.ndarray, *, confidence: float = 0.9, max_points: int = MAX_FIT_POINTS
) -> Trend | None:
    """The robust trend of the points (None: fewer than 3 distinct times).

    Example::

        trend = fit_trend(ts, values)
        mean, low, high = trend.predict(ts[-1] + 3_600_000)
    """
    ts, values = clean(ts, values)
    if len(ts) < 3:
        return None
    if len(ts) > max_points:
        # Theil-Sen is quadratic in points: an even thinning keeps the shape (and the last).
        idx = np.unique(np.linspace(0, len(ts) - 1, max_points).round().astype(int))
        ts, values = ts[idx], values[idx]
    at = int(ts[-1])
    x = (ts - at) / HOUR_MS
    y = values
    if np.ptp(y) == 0:
        return Trend(at, float(y[-1]), 0.0, 0.0, 0.0, 0.0, len(ts), confidence)
    res = stats.theilslopes(y, x, alpha=confidence)
    slope = float(res.slope)
    low, high = float(res.low_slope), float(res.high_slope)
    level = float(np.median(y - slope * x))
    resid = y - (level + slope * x)
    sigma = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
    return Trend(at, level, slope, min(low, slope), max(high, slope), sigma, len(ts), confidence)


def forecast_breach(
    ts: np.ndarray,
    values: np.ndarray,
    *,
    op: str,
    threshold: float,
    horizon_ms: int,
    confidence: float = 0.9,
    min_points: int = 10,
) -> BreachForecast:
    """Check a window of points against a limit (see the module docstring).

    Example::

        f = forecast_breach(ts, disk, op="above", threshold=90, horizon_ms=6 * 3_600_000)
        f.status, f.predicted_time
    """
    if op not in OPS:
        raise ValueError(f"op is 'above' or 'below', got {op!r}")
    ts, values = clean(ts, values)
    base: dict[str, Any] = {
        "op": op,
        "threshold": float(threshold),
        "horizon_ms": int(horizon_ms),
        "points": len(ts),
    }
    if len(ts) == 0:
        return BreachForecast("insufficient", at=None, current=None, **base)
    at, current = int(ts[-1]), float(values[-1])
    base.update(at=at, current=current)
    if _past(current, op, threshold):
        return BreachForecast("breached", **base)
    trend = fit_trend(ts, values, confidence=confidence) if len(ts) >= max(3, min_points) else None
    if trend is None:
        return BreachForecast("insufficient", **base)
    sign = 1.0 if op == "above" else -1.0
    slope_info: dict[str, Any] = {"slope_per_hour": trend.slope}
    towards = sign * trend.slope > 0 and (
        trend.slope_low > 0 if op == "above" else trend.slope_high < 0
    )
    if not towards:
        return BreachForecast("ok", **base, **slope_info)
    horizon_h = horizon_ms / HOUR_MS
    # Where the fitted path crosses (0 when the fit is already past, the last point not).
    cross_h = max(0.0, (threshold - trend.level) / trend.slope)
    probability = trend.probability_past(op, threshold, horizon_h)
    slope_info["probability"] = probability
    if cross_h > horizon_h or probability < confidence:
        return BreachForecast("ok", **base, **slope_info)
    earliest, latest = _band_crossings(trend, op, threshold, max(3 * horizon_h, 2 * cross_h))
    return BreachForecast(
        "forecast",
        predicted_time=at + round(cross_h * HOUR_MS),
        earliest_time=None if earliest is None else at + round(earliest * HOUR_MS),
        latest_time=None if latest is None else at + round(latest * HOUR_MS),
        **base,
        **slope_info,
    )


def _band_crossings(
    trend: Trend, op: str, threshold: float, span_h: float, steps: int = 2048
) -> tuple[float | None, float | None]:
    """Hours until the near band (earliest) and the far band (latest) cross the limit."""
    h = np.linspace(0.0, span_h, steps)
    mean = trend.level + trend.slope * h
    half = trend.z * np.sqrt(trend.sigma**2 + (h * trend.slope_se) ** 2)
    near, far = (mean + half, mean - half) if op == "above" else (mean - half, mean + half)
    hit_near = near >= threshold if op == "above" else near <= threshold
    hit_far = far >= threshold if op == "above" else far <= threshold
    earliest = float(h[np.argmax(hit_near)]) if hit_near.any() else None
    latest = float(h[np.argmax(hit_far)]) if hit_far.any() else None
    return earliest, latest
