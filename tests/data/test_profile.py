"""Profiles against numpy/pandas on the same data, their JSON form, and the diff formulas."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from opsloop.data.compare import (
    column_shift,
    psi,
    psi_histograms,
)
from opsloop.data.profile import (
    DEFAULT_QUANTILES,
    DatasetProfile,
    Histogram,
    profile_column,
    profile_table,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 20_000
    x = rng.normal(5.0, 2.0, n)
    x[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "k": rng.integers(-50, 50, n),
            "c": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "flag": rng.random(n) < 0.25,
            "t": pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )


def test_numeric_matches_numpy_and_pandas(frame: pd.DataFrame) -> None:
    prof = profile_table(pa.Table.from_pandas(frame, preserve_index=False))
    assert prof.num_rows == len(frame)
    for col in ("x", "k"):
        s = frame[col]
        p = prof[col]
        n = p.numeric
        assert p.kind == "numeric" and n is not None
        assert p.count == s.notna().sum() and p.missing == s.isna().sum()
        assert p.count + p.missing == prof.num_rows
        values = s.dropna().to_numpy(dtype=float)
        assert n.min == values.min() and n.max == values.max()
        assert n.mean == pytest.approx(s.mean(), rel=1e-12)
        assert n.std == pytest.approx(s.std(), rel=1e-12)  # pandas: ddof=1
        assert set(n.quantiles) >= {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99}
        for q, v in n.quantiles.items():
            assert v == pytest.approx(float(np.quantile(values, q)), rel=1e-12)
            assert v == pytest.approx(float(s.quantile(q)), rel=1e-12)
        h = n.histogram
        assert h is not None and len(h.edges) == 21 and len(h.counts) == 20
        assert sum(h.counts) == p.count
        expected, edges = np.histogram(values, bins=20, range=(values.min(), values.max()))
        assert list(h.counts) == expected.tolist()
        assert np.allclose(h.edges, edges)


def test_categorical_bool_and_datetime(frame: pd.DataFrame) -> None:
    prof = profile_table(pa.Table.from_pandas(frame, preserve_index=False))
    c = prof["c"]
    assert c.kind == "categorical" and c.categorical is not None
    assert c.categorical.distinct == frame["c"].nunique()
    assert dict(c.categorical.top) == frame["c"].value_counts().to_dict()
    assert [v for v, _ in c.categorical.top] == ["a", "b", "c", "d"]  # most frequent first
    flag = prof["flag"]
    assert flag.categorical is not None
    assert dict(flag.categorical.top) == {
        "true": int(frame["flag"].sum()),
        "false": int((~frame["flag"]).sum()),
    }
    t = prof["t"]
    assert t.kind == "datetime" and t.datetime is not None
    assert t.datetime.min == frame["t"].min().isoformat()
    assert t.datetime.max == frame["t"].max().isoformat()


def test_top_k_distinct_and_dictionary_columns() -> None:
    values = [f"v{i % 80}" for i in range(1000)] + [None] * 7
    prof = profile_table(
        pa.table(
            {
                "s": pa.array(values, pa.large_string()),
                "d": pa.array(values).dictionary_encode(),
            }
        ),
        top_k=10,
    )
    for col in ("s", "d"):
        p = prof[col]
        assert p.kind == "categorical" and p.categorical is not None
        assert p.missing == 7 and p.count == 1000
        assert p.categorical.distinct == 80
        assert len(p.categorical.top) == 10
        assert all(c == 13 for _, c in p.categorical.top)  # 1000 = 80 * 12 + 40


def test_default_top_k_is_50() -> None:
    prof = profile_table(pa.table({"s": [f"v{i}" for i in range(500)]}))
    cat = prof["s"].categorical
    assert cat is not None and cat.distinct == 500 and len(cat.top) == 50


def test_infinities_missing_constant_and_empty_columns() -> None:
    t = pa.table(
        {
            "inf": [1.0, 2.0, math.inf, -math.inf, None, math.nan],
            "const": [3.0, 3.0, 3.0, None, 3.0, 3.0],
            "none": pa.array([None] * 6, pa.float64()),
            "null_type": pa.array([None] * 6),
            "blob": [b"a", b"b", None, b"c", b"d", b"e"],
        }
    )
    prof = profile_table(t)
    inf = prof["inf"]
    assert inf.count == 4 and inf.missing == 2 and inf.numeric is not None
    assert inf.numeric.infinite == 2
    assert (inf.numeric.min, inf.numeric.max) == (1.0, 2.0)  # over finite values
    h = inf.numeric.histogram
    assert h is not None and sum(h.counts) == inf.count
    assert h.counts[0] == 2 and h.counts[-1] == 2  # -inf first bin, +inf last
    const = prof["const"].numeric
    assert const is not None and const.histogram == Histogram((3.0, 3.0), (5,))
    assert const.std == 0.0
    none = prof["none"]
    assert none.count == 0 and none.missing == 6 and none.numeric is not None
    assert none.numeric.mean is None and none.numeric.histogram is None
    assert prof["null_type"].kind == "other" and prof["null_type"].missing == 6
    assert prof["blob"].kind == "other" and prof["blob"].count == 5
    # Strict JSON: no NaN or Infinity anywhere.
    json.dumps(prof.to_dict(), allow_nan=False)


def test_dates_and_tz_aware_timestamps() -> None:
    t = pa.table(
        {
            "d": pa.array([dt.date(2026, 1, 2), None, dt.date(2025, 12, 31)], pa.date32()),
            "tz": pa.array(
                [
                    dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
                    dt.datetime(2026, 1, 2, 0, 0, 0, 500, tzinfo=dt.UTC),
                    None,
                ],
                pa.timestamp("us", tz="Europe/Paris"),
            ),
        }
    )
    prof = profile_table(t)
    assert prof["d"].datetime is not None
    assert (prof["d"].datetime.min, prof["d"].datetime.max) == ("2025-12-31", "2026-01-02")
    assert prof["tz"].datetime is not None
    assert prof["tz"].datetime.min == "2026-01-01T12:00:00Z"
    assert prof["tz"].datetime.max == "2026-01-02T00:00:00.000500Z"


def test_json_round_trip(frame: pd.DataFrame) -> None:
    prof = profile_table(pa.Table.from_pandas(frame, preserve_index=False))
    text = prof.to_json()
    back = DatasetProfile.from_json(text)
    assert back == prof
    assert DatasetProfile.from_dict(json.loads(json.dumps(prof.to_dict()))) == prof
    d = json.loads(text)
    assert d["format"] == 1 and d["bins"] == 20 and d["top_k"] == 50
    assert d["quantiles"] == list(DEFAULT_QUANTILES)
    assert [c["name"] for c in d["columns"]] == list(frame.columns)
    assert set(d["columns"][0]["numeric"]["quantiles"]) == {str(q) for q in DEFAULT_QUANTILES}
    with pytest.raises(ValueError, match="newer"):
        DatasetProfile.from_dict({**d, "format": 99})


def test_profile_column_accepts_chunked_arrays() -> None:
    col = pa.chunked_array([[1.0, 2.0], [3.0, None]])
    p = profile_column("x", col)
    assert p.count == 3 and p.numeric is not None and p.numeric.mean == 2.0


# -- diff formulas ------------------------------------------------------------------


def _numeric(values: np.ndarray) -> tuple[DatasetProfile, str]:
    return profile_table(pa.table({"v": values})), "v"


def test_psi_identical_small_noise_and_shift() -> None:
    rng = np.random.default_rng(1)
    ref, _ = _numeric(rng.normal(0, 1, 50_000))
    same, _ = _numeric(rng.normal(0, 1, 50_000))
    moved, _ = _numeric(rng.normal(1.0, 1, 50_000))
    s0 = column_shift(ref["v"], ref["v"])
    assert s0.psi == pytest.approx(0.0, abs=1e-12)
    assert s0.mean_shift == 0.0 and s0.std_change == 0.0
    s1 = column_shift(ref["v"], same["v"])
    assert s1.psi is not None and s1.psi < 0.02
    s2 = column_shift(ref["v"], moved["v"])
    assert s2.psi is not None and s2.psi > 0.25
    a, b = ref["v"].numeric, moved["v"].numeric
    assert a is not None and b is not None and a.mean is not None and a.std
    assert b.mean is not None and b.std is not None
    assert s2.mean_shift == pytest.approx((b.mean - a.mean) / a.std)
    assert s2.std_change == pytest.approx((b.std - a.std) / a.std)
    assert s2.mean_shift == pytest.approx(1.0, abs=0.05)


def test_psi_rebinning_matches_direct_binning() -> None:
    """Re-binning b's own histogram onto a's edges approximates binning b's values there."""
    rng = np.random.default_rng(2)
    a_vals = rng.normal(0, 1, 100_000)
    b_vals = rng.normal(0.3, 1.2, 100_000)
    a, b = _numeric(a_vals)[0]["v"].numeric, _numeric(b_vals)[0]["v"].numeric
    assert a is not None and b is not None and a.histogram and b.histogram
    edges = np.array(a.histogram.edges)
    inner = np.histogram(b_vals, bins=edges)[0].astype(float)
    inner[0] += (b_vals < edges[0]).sum()
    inner[-1] += (b_vals > edges[-1]).sum()
    p = np.array(a.histogram.counts, float) / sum(a.histogram.counts)
    q = inner / inner.sum()
    direct = psi(list(p), list(q))
    rebinned = psi_histograms(a.histogram, b.histogram)
    assert rebinned == pytest.approx(direct, rel=0.1)  # uniform-within-bin approximation


def test_psi_constant_reference() -> None:
    const = Histogram((3.0, 3.0), (100,))
    assert psi_histograms(const, const) == pytest.approx(0.0)
    spread = Histogram((0.0, 2.0, 4.0, 6.0), (10, 80, 10))
    assert (psi_histograms(const, spread) or 0) > 1.0


def test_categorical_shift_tvd_and_change() -> None:
    a = profile_table(pa.table({"c": ["x"] * 50 + ["y"] * 50}))["c"]
    b = profile_table(pa.table({"c": ["x"] * 50 + ["y"] * 25 + ["z"] * 25}))["c"]
    s = column_shift(a, b)
    assert s.kind == "categorical"
    assert s.tvd == pytest.approx(0.25)  # 0.5 * (|0.5-0.5| + |0.5-0.25| + |0-0.25|)
    assert s.category_change == pytest.approx(1 / 3)  # {z} of {x, y, z}
    assert s.categories_added == ("z",) and s.categories_removed == ()
    assert s.psi is not None and s.psi > 0.25
    assert column_shift(a, a).tvd == 0.0


def test_psi_basic_values() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.6 - 0.5) * math.log(0.6 / 0.5) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(expected)
    assert math.isfinite(psi([1.0, 0.0], [0.0, 1.0]))  # floored shares
