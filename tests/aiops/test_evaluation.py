"""NAB-style scoring on hand-made cases whose scores can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opsloop.aiops.evaluation import (
    PROFILES,
    LabelledSeries,
    nab_score,
    nab_scores,
    scaled_sigmoid,
    windows_from_labels,
)
from opsloop.errors import InvalidInput

N = 1000  # probation: the first 150 rows
WINDOW = (500, 599)


def series(hits: dict[int, float], windows: list[tuple[int, int]] | None = None) -> LabelledSeries:
    scores = np.zeros(N)
    for i, v in hits.items():
        scores[i] = v
    return LabelledSeries("s", np.arange(N), scores, [WINDOW] if windows is None else windows)


def test_null_detector_scores_zero_and_perfect_scores_100() -> None:
    for profile in PROFILES:
        assert nab_score([series({})], profile).score == 0.0
        assert nab_score([series({500: 1.0})], profile).score == pytest.approx(100.0)


def test_one_false_positive_costs_a_fp() -> None:
    # before any window, a false positive costs the whole fp weight
    for name, cost in PROFILES.items():
        r = nab_score([series({500: 1.0, 300: 1.0})], name)
        assert r.raw == pytest.approx(cost.tp_weight - cost.fp_weight)
        assert r.fp == 1
        null, perfect = -cost.fn_weight, cost.tp_weight
        assert r.score == pytest.approx(100 * (r.raw - null) / (perfect - null))


def test_earlier_detection_earns_more() -> None:
    early = nab_score([series({510: 1.0})]).raw
    middle = nab_score([series({550: 1.0})]).raw
    late = nab_score([series({595: 1.0})]).raw
    assert 1.0 > early > middle > late > 0.0
    # the middle of the window: position -(599 - 550 + 1) / 100 = -0.5
    assert middle == pytest.approx(scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0))


def test_only_the_first_detection_in_a_window_counts() -> None:
    one = nab_score([series({520: 1.0})], threshold=0.5)
    many = nab_score([series({520: 1.0, 530: 1.0, 560: 1.0})], threshold=0.5)
    assert one.raw == pytest.approx(many.raw)
    assert many.tp == 3


def test_false_positive_just_after_a_window_costs_little() -> None:
    r = nab_score([series({500: 1.0, 601: 1.0})], threshold=0.5)
    # |599 - 601| / (100 - 1) past the window's end
    assert r.raw == pytest.approx(1.0 + 0.11 * scaled_sigmoid(2 / 99))
    assert r.raw > 0.99


def test_probationary_period_is_not_scored() -> None:
    r = nab_score([series({500: 1.0, 100: 1.0})], threshold=0.5)
    assert r.fp == 0 and r.raw == pytest.approx(1.0)


def test_threshold_is_chosen_over_all_series_together() -> None:
    # series a: its window is hit at 0.9 and a false positive at 0.8;
    # series b: its window only at 0.7. A threshold of 0.7 catches both (1 + 1 - 0.11).
    a = LabelledSeries("a", np.arange(N), np.zeros(N), [WINDOW])
    b = LabelledSeries("b", np.arange(N), np.zeros(N), [WINDOW])
    np.asarray(a.scores)[[500, 300]] = [0.9, 0.8]
    np.asarray(b.scores)[500] = 0.7
    r = nab_score([a, b])
    assert r.threshold == pytest.approx(0.7)
    assert r.raw == pytest.approx(2 - 0.11)
    assert r.score == pytest.approx(100 * (2 - 0.11 + 2) / 4)
    assert r.windows_detected == 2


def test_missed_window_costs_fn_and_low_fn_profile_doubles_it() -> None:
    two = [WINDOW, (800, 849)]
    r = nab_scores([series({500: 1.0}, two)])
    assert r["standard"].raw == pytest.approx(1.0 - 1.0)
    assert r["reward_low_FN_rate"].raw == pytest.approx(1.0 - 2.0)
    assert r["standard"].score == pytest.approx(50.0)
    assert r["reward_low_FN_rate"].score == pytest.approx(100 * 3 / 6)


def _nab_reference(
    scores: np.ndarray, windows: list[tuple[int, int]], fp_w: float, th: float
) -> float:
    """A row-by-row transcription of NAB's sweeper for one series at one threshold."""
    n = len(scores)
    prob = min(math.floor(0.15 * n), 0.15 * 5000)
    max_tp = scaled_sigmoid(-1.0)
    parts = {k: -1.0 for k, (a, b) in enumerate(windows) if b >= prob}
    fp = 0.0
    prev_right, prev_width = None, None
    for i in range(n):
        inside = [k for k, (a, b) in enumerate(windows) if a <= i <= b]
        if inside:
            k = inside[0]
            a, b = windows[k]
            width = b - a + 1
            w = scaled_sigmoid(-(b - i + 1) / width) / max_tp
        else:
            pos = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
            w = scaled_sigmoid(pos) * fp_w
        if i >= prob and scores[i] >= th:
            if inside:
                parts[inside[0]] = max(parts[inside[0]], w)
            else:
                fp += w
        if inside and i == windows[inside[0]][1]:
            prev_right, prev_width = i, windows[inside[0]][1] - windows[inside[0]][0] + 1
    return fp + sum(parts.values())


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_transcription_of_nabs_sweeper(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(N) ** 8, 2)
    windows = [(300, 349), (600, 699), (900, 919)]
    s = LabelledSeries("r", np.arange(N), scores, windows)
    for th in (0.3, 0.5, 0.8):
        got = nab_score([s], "reward_low_FP_rate", threshold=th).raw
        assert got == pytest.approx(_nab_reference(scores, windows, 0.22, th))


def test_windows_from_labels_and_bad_input() -> None:
    assert windows_from_labels([10, 20, 30], [1, 1, 0]) == [(10, 20)]
    with pytest.raises(InvalidInput, match="profile"):
        nab_score([series({})], "nope")
    with pytest.raises(InvalidInput, match="scores for"):
        nab_score([LabelledSeries("x", np.arange(5), np.zeros(4), [])])
    with pytest.raises(InvalidInput, match="overlap"):
        nab_score([series({}, [(100, 200), (150, 250)])])
    with pytest.raises(InvalidInput, match="no row"):
        nab_score([series({}, [(5000, 6000)])])
    with pytest.raises(InvalidInput, match="no series"):
        nab_score([])
