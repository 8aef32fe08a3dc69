"""The streaming detector: same scores one point at a time and in batch, defined
behaviour on awkward input, constant memory, pickled state; ``opsloop detect``."""

from __future__ import annotations

import math
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from opsloop.aiops.detect import Detector, default_detector
from opsloop.cli.main import app

FIVE_MIN = 300.0


def seasonal_series(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + np.arange(n) * FIVE_MIN
    x = 50 + 10 * np.sin(2 * np.pi * t / 86400.0) + 0.01 * np.arange(n) + rng.normal(0, 1, n)
    return t, x


def test_batch_equals_one_point_at_a_time() -> None:
    t, x = seasonal_series()
    x[2500] += 40
    x[1000:1010] = np.nan
    t[1500] = t[1499]  # duplicate
    t[1600] = t[1590]  # out of order
    batch = default_detector().score_series(t, x)
    det = default_detector()
    one = np.array([det.update(float(a), float(b)) for a, b in zip(t, x, strict=True)])
    assert np.array_equal(batch, one)
    # split batches continue where the first stopped
    det2 = default_detector()
    halves = np.r_[det2.score_series(t[:1234], x[:1234]), det2.score_series(t[1234:], x[1234:])]
    assert np.array_equal(batch, halves)
    assert ((batch >= 0) & (batch <= 1)).all()


def test_spike_and_level_shift_score_high_and_first() -> None:
    t, x = seasonal_series()
    x[2000] += 30
    x[2600:] += 25
    s = default_detector().score_series(t, x)
    assert s[2000] == s[:2300].max() and s[2000] > 0.4
    assert s[2600] > 0.4
    # before the anomalies nothing after the learning period stands out as much
    assert s[500:1990].max() < s[2000]


def test_no_look_ahead() -> None:
    t, x = seasonal_series()
    y = x.copy()
    y[2000:] = 0.0
    a = default_detector().score_series(t, x)
    b = default_detector().score_series(t, y)
    assert np.array_equal(a[:2000], b[:2000])


@pytest.mark.parametrize(
    ("t", "x"),
    [
        ([0.0, 60.0, 120.0], [1.0, 2.0, 3.0]),  # three points
        ([0.0] * 50, [5.0] * 50),  # duplicate timestamps, constant
        ([math.nan] * 20, list(range(20))),  # no timestamps
        ([0.0, 60.0, 86400.0 * 9, 86400.0 * 9 + 60], [1.0, 1.0, 1.0, 7.0]),  # gap of days
        ([float(i) for i in range(30, 0, -1)], [float(i % 3) for i in range(30)]),  # backwards
        ([0.0, 1.0, 2.0], [math.nan, math.inf, -math.inf]),
        ([], []),
    ],
)
def test_awkward_input_gives_scores_not_errors(t: list[float], x: list[float]) -> None:
    s = default_detector().score_series(np.array(t, dtype=float), np.array(x, dtype=float))
    assert len(s) == len(x)
    assert np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()


def test_constant_series_scores_zero_until_it_changes() -> None:
    t = np.arange(1000) * 60.0
    x = np.full(1000, 3.0)
    x[900] = 4.0
    s = default_detector().score_series(t, x)
    assert s[:900].max() == 0.0
    assert s[900] > 0.9


def test_update_accepts_datetimes_and_junk() -> None:
    import datetime as dt

    det = default_detector()
    base = dt.datetime(2024, 1, 1)
    for i in range(5):
        assert det.update(base + dt.timedelta(minutes=i), float(i)) >= 0.0
    assert det.update(None, 1.0) >= 0.0
    assert det.update("not a time", "not a number") == 0.0  # type: ignore[arg-type]
    assert det.points == 6


def test_state_pickles_and_resumes() -> None:
    t, x = seasonal_series()
    whole = default_detector().score_series(t, x)
    det = default_detector()
    det.score_series(t[:1700], x[:1700])
    restored = pickle.loads(pickle.dumps(det))
    assert np.array_equal(restored.score_series(t[1700:], x[1700:]), whole[1700:])


def test_settings_are_checked() -> None:
    from opsloop.errors import InvalidInput

    assert Detector(quiet=10).update(0.0, 1.0) == 0.0
    with pytest.raises(InvalidInput, match="unknown detector setting"):
        Detector(nonsense=1.0)


def test_memory_is_constant() -> None:
    # 10 million points through the same code: memory after 100k equals memory after 1M.
    det = default_detector()
    chunk = 100_000
    rng = np.random.default_rng(1)
    t = np.arange(chunk) * 60.0
    x = rng.normal(size=chunk)
    det.score_series(t, x)
    tracemalloc.start()
    det.score_series(t + chunk * 60.0, x)
    first = tracemalloc.get_traced_memory()[0]
    for k in range(2, 10):
        det.score_series(t + k * chunk * 60.0, x)
    last = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert det.points == 10 * chunk
    assert abs(last - first) < 64 * 1024
    assert len(pickle.dumps(det)) < 16 * 1024


runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_writes_same_rows_with_scores(tmp_path: Path) -> None:
    t, x = seasonal_series(400)
    lines = ["host,timestamp,value"] + [
        f"a{i},{np.datetime64(int(a), 's')},{b:.3f}"
        for i, (a, b) in enumerate(zip(t, x, strict=True))
    ]
    src = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["detect", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    got = out.read_text().splitlines()
    assert got[0] == "host,timestamp,value,anomaly_score"
    assert [g.rsplit(",", 1)[0] for g in got[1:]] == lines[1:]
    scores = np.array([float(g.rsplit(",", 1)[1]) for g in got[1:]])
    expected = default_detector().score_series(t, np.round(x, 3))
    assert np.allclose(scores, expected, atol=1e-6)
    # to standard output without -o
    res = runner.invoke(app, ["detect", str(src)])
    assert res.exit_code == 0 and res.output.splitlines() == got


def test_cli_other_columns_and_epoch_seconds(tmp_path: Path) -> None:
    src = write(tmp_path / "s.csv", "ts,v\n0,1\n60,\n120,x\n,4\n")
    res = runner.invoke(app, ["detect", str(src), "--timestamp", "ts", "--value", "v"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1:] == ["0,1,0.0", "60,,0.0", "120,x,0.0", ",4,0.0"]


def test_cli_errors(tmp_path: Path) -> None:
    from opsloop.errors import InvalidInput, NotFound

    ok = write(tmp_path / "ok.csv", "timestamp,value\n2024-01-01 00:00,1\n")
    cases = [
        (["detect", str(ok), "--value", "latency"], InvalidInput, "no column 'latency'"),
        (
            ["detect", str(write(tmp_path / "b.csv", "timestamp,value\n2024-01-01,1\nsoon,2\n"))],
            InvalidInput,
            "row 3: 'soon' is not a timestamp",
        ),
        (["detect", str(write(tmp_path / "e.csv", ""))], InvalidInput, "is empty"),
        (["detect", str(tmp_path / "missing.csv")], NotFound, "does not exist"),
    ]
    for args, exc, message in cases:
        res = runner.invoke(app, args)
        assert isinstance(res.exception, exc), res.output
        assert message in res.exception.message
    # a header and no rows is an empty series, not an error
    res = runner.invoke(app, ["detect", str(write(tmp_path / "h.csv", "timestamp,value\n"))])
    assert res.exit_code == 0 and res.output.strip() == "timestamp,value,anomaly_score"


def test_cli_reads_standard_input() -> None:
    text = "timestamp,value\n2024-01-01 00:00,1\n2024-01-01 00:05,x\n"
    res = runner.invoke(app, ["detect", "-"], input=text)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "timestamp,value,anomaly_score",
        "2024-01-01 00:00,1,0.0",
        "2024-01-01 00:05,x,0.0",
    ]
    res = runner.invoke(app, ["detect", "-"], input="")
    assert "standard input is empty" in res.exception.message  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["opsloop.aiops.detect", "opsloop.aiops.evaluation"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_change_in_noise_stands_out() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(3000) * FIVE_MIN
    x = 10 + rng.normal(0, 1, 3000)
    x[2000:] = 10 + rng.normal(0, 5, 1000)
    s = default_detector().score_series(t, x)
    assert s[2000:2050].max() > s[300:2000].max()


def test_state_of_another_layout_starts_afresh() -> None:
    det = Detector.__new__(Detector)
    det.__setstate__({"params": np.zeros(3), "state": np.zeros(5)})
    t, x = seasonal_series(500)
    assert np.array_equal(det.score_series(t, x), default_detector().score_series(t, x))


def test_an_exactly_recurring_spike_becomes_familiar() -> None:
    t = np.arange(6000) * FIVE_MIN
    x = np.full(6000, 5.0)
    x[500::300] += 20  # a machine-made job, the same spike every day
    s = default_detector().score_series(t, x)
    assert s[500] > 0.5
    assert s[2000::300].max() == 0.0


def test_an_outage_soon_after_a_blip_alerts_too() -> None:
    """A small spike starts the quiet period; a far larger shift inside it still alerts
    (unless ``escalate=0``), while more of the same does not."""
    rng = np.random.default_rng(3)
    t = np.arange(1000) * 1.0
    x = 5 + rng.normal(0, 0.3, 1000)
    x[500] += 3  # a blip
    x[540:580] += 60  # an outage 40 points later, inside the blip's 200-point quiet period
    s = default_detector().score_series(t, x)
    assert s[500] >= 0.5
    assert s[540:545].max() >= 0.5
    assert (s[501:540] == 0).all()  # the quiet period itself holds
    off = Detector(escalate=0).score_series(t, x)
    assert off[500] >= 0.5 and (off[501:700] == 0).all()


def test_a_nightly_spike_with_jitter_becomes_routine() -> None:
    """A job's spike each night near 03:20, a few minutes earlier or later and of a varying
    height, on a noisy flat series: routine after a few nights (the shape memory alone
    does not explain it, the noise differs each time); a spike at another hour still
    alerts."""
    rng = np.random.default_rng(5)
    days = 14
    n = days * 288
    t = np.arange(n) * FIVE_MIN
    x = 1.0 + rng.normal(0, 0.05, n)
    for d in range(days):
        i = d * 288 + 40 + int(rng.integers(-3, 4))  # 03:20 give or take 15 minutes
        x[i] += 20 + rng.normal(0, 2)
    x[10 * 288 + 150] += 20  # 12:30 on day 10: not the job's hour
    s = default_detector().score_series(t, x)
    for d in range(4, 12):
        assert s[d * 288 + 30 : d * 288 + 50].max() < 0.5, d
    assert s[10 * 288 + 150] >= 0.5


def test_a_daily_peak_that_does_not_come_alerts() -> None:
    """A clean daily square wave whose high half is missing one day: each low value is
    ordinary for the series as a whole, but not at that time of day."""
    rng = np.random.default_rng(6)
    n = 12 * 288
    t = np.arange(n) * FIVE_MIN
    high = (np.arange(n) % 288) >= 144
    x = np.where(high, 80.0, 20.0) + rng.normal(0, 1, n)
    day9 = slice(9 * 288 + 144, 10 * 288)
    x[day9] = 20.0 + rng.normal(0, 1, 144)
    s = default_detector().score_series(t, x)
    assert s[day9].max() >= 0.5
    assert s[4 * 288 : 9 * 288 + 144].max() < 0.5


def test_a_level_never_seen_before_alerts_but_a_steady_trend_rarely_does() -> None:
    """A spiky series (30 with bursts to 100) that drops to 15, below every value it has
    held: flagged within a few points. A steady ramp breaks its own edges all the time and
    alerts about as rarely as plain noise."""
    rng = np.random.default_rng(7)
    n = 6000
    t = np.arange(n) * FIVE_MIN
    x = 30 + rng.normal(0, 1, n)
    bursts = rng.random(n) < 0.15
    x[bursts] = rng.uniform(40, 100, bursts.sum())
    x[5000:] = 15 + rng.normal(0, 0.5, n - 5000)
    s = default_detector().score_series(t, x)
    assert s[5000:5015].max() >= 0.5
    off = Detector(w_rec=0).score_series(t, x)
    assert off[5000:5015].max() < s[5000:5015].max()

    ramp = 0.1 * np.arange(20000) + rng.normal(0, 1, 20000)
    noise = rng.normal(0, 1, 20000)
    tt = np.arange(20000) * FIVE_MIN
    alerts_ramp = int((default_detector().score_series(tt, ramp) >= 0.5).sum())
    alerts_noise = int((default_detector().score_series(tt, noise) >= 0.5).sum())
    assert alerts_ramp <= 2 * alerts_noise + 5
