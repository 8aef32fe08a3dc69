"""Score anomaly detectors on labelled series the way the Numenta Anomaly Benchmark does.

NAB (Lavin & Ahmad 2015, arXiv:1510.03336; the scorer in numenta/NAB ``nab/sweeper.py``)
scores a detector's anomaly scores against *anomaly windows*:

- A window is a span of rows around a known incident. The first detection in a window
  earns ``tp_weight`` scaled by a sigmoid of how early it came (``scaled_sigmoid``): at
  the window's first row the full weight, towards its end almost nothing. Later
  detections in the same window earn nothing more.
- A window with no detection costs ``fn_weight``.
- Each detection outside every window costs up to ``fp_weight``: the full cost before the
  first window or far after one, less just after a window (a late detection of it).
- The first 15% of each series (at most 750 rows) is a probationary period in which the
  detector learns; nothing there is scored.
- The threshold that turns scores into detections is chosen per profile, once for all
  series together (``score >= threshold`` detects), maximising the summed raw score.
- The raw score is normalised: ``100 * (raw - null) / (perfect - null)``, where null is
  the detector that never detects (``-fn_weight`` per window) and perfect detects every
  window at its first row (``tp_weight`` per window).

The three profiles are NAB's cost matrices (``config/profiles.json``): ``standard``,
``reward_low_FP_rate`` (false positives cost twice as much) and ``reward_low_FN_rate``
(missed windows cost twice as much).

Use it on your own incidents: give each series' timestamps, the detector's scores and
the (start, end) windows of the incidents::

    >>> import numpy as np
    >>> ts = np.arange(100)
    >>> scores = np.zeros(100); scores[60] = 1.0
    >>> s = LabelledSeries("web-latency", ts, scores, [(60, 69)])
    >>> round(nab_score([s]).score, 1)
    100.0
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from opsloop.errors import InvalidInput

__all__ = [
    "PROFILES",
    "CostMatrix",
    "LabelledSeries",
    "NabResult",
    "nab_score",
    "nab_scores",
    "scaled_sigmoid",
    "score_detector",
    "windows_from_labels",
]


@dataclass(frozen=True)
class CostMatrix:
    """The weights of one NAB profile."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": CostMatrix(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}

PROBATION_PERCENT = 0.15
# NAB caps the probationary period at 15% of 5000 rows.
PROBATION_CAP_ROWS = 5000


@dataclass
class LabelledSeries:
    """One series: its timestamps (in row order), a detector's scores, and incident windows.

    ``windows`` are (start, end) pairs in the timestamps' own units (numbers, or anything
    NumPy compares with them, e.g. ``np.datetime64``); a window covers the rows whose
    timestamp is within [start, end].
    """

    name: str
    timestamps: npt.ArrayLike
    scores: npt.ArrayLike
    windows: Sequence[tuple[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class NabResult:
    """The outcome of one profile over a set of series."""

    profile: str
    score: float  # normalised: null detector 0, perfect 100
    raw: float
    null: float
    perfect: float
    threshold: float
    tp: int  # detected rows inside windows
    fp: int  # detected rows outside windows
    windows: int
    windows_detected: int


def scaled_sigmoid(position: float) -> float:
    """NAB's reward for a detection at ``position`` relative to a window's right end.

    -1 is the window's first row (0.9866), 0 its last (0.0), positive values lie after it
    (negative reward, -1 from 3 window lengths on).

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.0)
    (0.98661, 0.0, -1.0)
    """
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def _scaled_sigmoid_array(position: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = 2.0 / (1.0 + np.exp(np.minimum(5.0 * position, 700.0))) - 1.0
    return np.where(position >= 3.0, -1.0, out)


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows NAB leaves unscored at the start of a series of ``n`` rows."""
    return int(min(math.floor(percent * n), percent * PROBATION_CAP_ROWS))


@dataclass
class _Prepared:
    scores: npt.NDArray[np.float64]
    sweep_tp: npt.NDArray[np.float64]  # unweighted reward of a detection at each row
    window_id: npt.NDArray[np.int64]  # global window id, -1 outside, -2 probationary
    n_windows_total: int


def _window_rows(
    ts: npt.NDArray[Any], windows: Sequence[tuple[Any, Any]], name: str
) -> list[tuple[int, int]]:
    rows: list[tuple[int, int]] = []
    for start, end in windows:
        try:
            lo = np.asarray(start, dtype=ts.dtype)
            hi = np.asarray(end, dtype=ts.dtype)
            # As NAB: a window starts at the row whose timestamp is its start and ends at
            # the first row whose timestamp is its end; rows need not be sorted (NAB's own
            # series step back an hour once). Without exact matches, the first row at or
            # after the start and the last row at or before the end.
            at_lo = np.flatnonzero(ts == lo)
            at_hi = np.flatnonzero(ts == hi)
            after = np.flatnonzero(ts >= lo)
            before = np.flatnonzero(ts <= hi)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"series {name!r}: window ({start!r}, {end!r}) cannot be compared with its "
                f"timestamps ({ts.dtype}): {exc}"
            ) from exc
        left = int(at_lo[0]) if len(at_lo) else (int(after[0]) if len(after) else len(ts))
        right = int(at_hi[0]) if len(at_hi) else (int(before[-1]) if len(before) else -1)
        if right < left:
            raise InvalidInput(
                f"series {name!r}: window ({start!r}, {end!r}) holds no row; give windows "
                "that cover at least one timestamp"
            )
        rows.append((left, right))
    rows.sort()
    for (_, r0), (l1, _) in itertools.pairwise(rows):
        if l1 <= r0:
            raise InvalidInput(f"series {name!r}: anomaly windows overlap; merge them first")
    return rows


def _prepare(series: Sequence[LabelledSeries], probation_percent: float) -> _Prepared:
    all_scores: list[npt.NDArray[np.float64]] = []
    all_tp: list[npt.NDArray[np.float64]] = []
    all_wid: list[npt.NDArray[np.int64]] = []
    next_id = 0
    for s in series:
        ts = np.asarray(s.timestamps)
        sc = np.asarray(s.scores, dtype=np.float64)
        n = len(ts)
        if sc.shape != (n,):
            raise InvalidInput(
                f"series {s.name!r}: {len(sc)} scores for {n} timestamps; give one score per row"
            )
        sc = np.where(np.isfinite(sc), sc, 0.0)
        rows = _window_rows(ts, s.windows, s.name)
        idx = np.arange(n, dtype=np.float64)
        # Relative positions as in NAB's sweeper: inside a window -(right - i + 1) / width,
        # after one |i - prev_right| / (prev_width - 1), before any window +inf (cost -1).
        position = np.full(n, np.inf)
        wid = np.full(n, -1, dtype=np.int64)
        inside = np.zeros(n, dtype=bool)
        for k, (left, right) in enumerate(rows):
            width = float(right - left + 1)
            sl = slice(left, right + 1)
            position[sl] = -(right - idx[sl] + 1.0) / width
            wid[sl] = next_id + k
            inside[sl] = True
            stop = rows[k + 1][0] if k + 1 < len(rows) else n
            after = slice(right + 1, stop)
            # NAB divides by (width - 1); a one-row window would divide by zero there.
            position[after] = np.abs(right - idx[after]) / max(width - 1.0, 1.0)
        reward = _scaled_sigmoid_array(position)
        # Inside windows NAB divides by the reward at the window's first row, so the
        # earliest detection earns exactly tp_weight.
        reward = np.where(inside, reward / scaled_sigmoid(-1.0), reward)
        wid[: probation_length(n, probation_percent)] = -2
        next_id += len(rows)
        all_scores.append(sc)
        all_tp.append(reward)
        all_wid.append(wid)
    if not all_scores:
        raise InvalidInput("no series to score: give at least one labelled series")
    return _Prepared(
        scores=np.concatenate(all_scores),
        sweep_tp=np.concatenate(all_tp),
        window_id=np.concatenate(all_wid),
        n_windows_total=next_id,
    )


def _sweep(
    prep: _Prepared, cost: CostMatrix
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    int,
]:
    """Raw score at every distinct threshold, as NAB's ``calcScoreByThreshold``.

    Returns (thresholds descending, raw scores, tp rows, fp rows, windows detected,
    scorable windows); the first entry is the threshold above every score (no detection).
    """
    keep = prep.window_id != -2
    scores = prep.scores[keep]
    reward = prep.sweep_tp[keep]
    wid = prep.window_id[keep]
    scorable = np.unique(wid[wid >= 0])
    n_scorable = len(scorable)
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    w_sorted = wid[order]
    r_sorted = reward[order]
    delta = np.zeros(len(order))
    out_mask = w_sorted < 0
    delta[out_mask] = r_sorted[out_mask] * cost.fp_weight
    in_pos = np.flatnonzero(~out_mask)
    first_hit = np.zeros(len(order), dtype=np.int64)
    if len(in_pos):
        # Per window, the best reward so far (starting from -fn) only ever rises; the
        # score changes by how much it rises at each newly detected row.
        grp = w_sorted[in_pos]
        by_window = in_pos[np.argsort(grp, kind="stable")]
        g = w_sorted[by_window]
        vals = r_sorted[by_window] * cost.tp_weight
        starts = np.r_[True, g[1:] != g[:-1]]
        seg_id = (np.cumsum(starts) - 1).astype(np.float64)
        # Running max within each window: rewards lie in [-1, 1], so lifting each window
        # by 4 * its index keeps one window's maximum from leaking into the next.
        lift = 4.0 * (abs(cost.tp_weight) + 1.0) * seg_id
        run = np.maximum.accumulate(vals + lift) - lift
        prev = np.where(starts, -cost.fn_weight, np.r_[-cost.fn_weight, run[:-1]])
        prev = np.maximum(prev, -cost.fn_weight)
        cur = np.maximum(run, -cost.fn_weight)
        delta[by_window] = cur - prev
        first_hit[by_window[starts]] = 1
    base = -cost.fn_weight * n_scorable
    cum = base + np.cumsum(delta)
    tp_c = np.cumsum(~out_mask)
    fp_c = np.cumsum(out_mask)
    hit_c = np.cumsum(first_hit)
    # A threshold's row counts every point with score >= it: the last of a run of equal scores.
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True] if len(s_sorted) else np.zeros(0, bool)
    th = np.r_[np.inf, s_sorted[last]]
    raw = np.r_[base, cum[last]]
    return (
        th,
        raw,
        np.r_[0, tp_c[last]].astype(np.int64),
        np.r_[0, fp_c[last]].astype(np.int64),
        np.r_[0, hit_c[last]].astype(np.int64),
        n_scorable,
    )


def nab_score(
    series: Sequence[LabelledSeries],
    profile: str = "standard",
    *,
    threshold: float | None = None,
    probation_percent: float = PROBATION_PERCENT,
) -> NabResult:
    """NAB's normalised score of one profile over ``series``.

    With ``threshold=None`` the threshold is the one that maximises the raw score over all
    series together (NAB's optimiser); otherwise rows with ``score >= threshold`` detect.

    >>> import numpy as np
    >>> s = LabelledSeries("a", np.arange(100), np.zeros(100), [(60, 69)])
    >>> nab_score([s]).score
    0.0
    """
    if profile not in PROFILES:
        raise InvalidInput(f"unknown NAB profile {profile!r}; use one of {', '.join(PROFILES)}")
    cost = PROFILES[profile]
    prep = _prepare(series, probation_percent)
    th, raw, tp, fp, hit, n_scorable = _sweep(prep, cost)
    if threshold is None:
        # NAB sorts by score, highest first; ties keep the higher threshold (fewer alerts).
        k = int(np.argmax(raw))
    else:
        k = int(np.searchsorted(-th, -threshold, side="right")) - 1
    null = -cost.fn_weight * n_scorable
    perfect = cost.tp_weight * prep.n_windows_total
    norm = 100.0 * (raw[k] - null) / (perfect - null) if perfect != null else 0.0
    return NabResult(
        profile=profile,
        score=float(norm),
        raw=float(raw[k]),
        null=float(null),
        perfect=float(perfect),
        threshold=float(th[k]) if np.isfinite(th[k]) else 1.1,
        tp=int(tp[k]),
        fp=int(fp[k]),
        windows=prep.n_windows_total,
        windows_detected=int(hit[k]),
    )


def nab_scores(
    series: Sequence[LabelledSeries], *, probation_percent: float = PROBATION_PERCENT
) -> dict[str, NabResult]:
    """``nab_score`` for each of NAB's three profiles, each with its own threshold.

    >>> import numpy as np
    >>> s = LabelledSeries("a", np.arange(100), np.zeros(100), [(60, 69)])
    >>> sorted(nab_scores([s]))
    ['reward_low_FN_rate', 'reward_low_FP_rate', 'standard']
    """
    return {p: nab_score(series, p, probation_percent=probation_percent) for p in PROFILES}


def windows_from_labels(timestamps: npt.ArrayLike, labels: npt.ArrayLike) -> list[tuple[Any, Any]]:
    """(start, end) windows from a 0/1 label per row (runs of 1s).

    >>> windows_from_labels([1, 2, 3, 4, 5], [0, 1, 1, 0, 1])
    [(2, 3), (5, 5)]
    """
    ts = np.asarray(timestamps)
    lab = np.asarray(labels).astype(bool)
    edges = np.diff(np.r_[0, lab.astype(np.int8), 0])
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(ts[a].item(), ts[b].item()) for a, b in zip(starts, ends, strict=True)]


def score_detector(
    make_detector: Any,
    data: Iterable[tuple[str, npt.ArrayLike, npt.ArrayLike, Sequence[tuple[Any, Any]]]],
) -> tuple[dict[str, NabResult], list[LabelledSeries]]:
    """Run a fresh detector over each (name, timestamps, values, windows) and NAB-score it.

    ``make_detector()`` returns an object with ``score_series(timestamps, values)``; the
    timestamps are passed as given (``np.datetime64`` or seconds).

    >>> import numpy as np
    >>> from opsloop.aiops.detect import default_detector
    >>> v = np.sin(np.arange(2000) / 10.0); v[1500:1520] += 5
    >>> t = np.arange(2000) * 60.0
    >>> res, _ = score_detector(default_detector, [("s", t, v, [(t[1490], t[1560])])])
    >>> res["standard"].score > 50
    True
    """
    series = []
    for name, ts, values, windows in data:
        det = make_detector()
        scores = det.score_series(ts, values)
        series.append(LabelledSeries(name, ts, scores, list(windows)))
    return nab_scores(series), series
