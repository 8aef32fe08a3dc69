"""Dirty data never makes drift() raise: each column gets a result or a clear error entry."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsloop.monitoring import Reference, drift

INF = math.inf
NAN = math.nan


def check(report: Any) -> None:
    json.loads(report.to_json())  # strict JSON: no NaN or inf anywhere
    report.to_frame()
    for e in report.columns.values():
        # Tested (drifted True/False), or not tested with the reason given.
        assert e.drifted is not None or e.error or e.note, e


CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "all_nan": ([NAN] * 5, [NAN] * 4),
    "all_nan_current": ([1.0, 2.0, 3.0], [NAN, NAN]),
    "all_nan_reference": ([NAN, NAN], [1.0, 2.0]),
    "infinities": ([1.0, INF, -INF, 2.0], [INF, INF, 3.0]),
    "only_infinities": ([INF, -INF], [INF]),
    "constant": ([3.0] * 50, [3.0] * 40),
    "constant_shifted": ([3.0] * 50, [4.0] * 40),
    "zero_constant_shifted": ([0.0] * 50, [1.0] * 40),
    "one_row": ([1.5], [2.5]),
    "huge": ([1e308, -1e308, 1e308], [1e308, -1e308]),
    "only_unseen": (["a", "b", "a"], ["x", "y"]),
    "strings_with_none": (["a", None, "b"], [None, None]),
    "mixed_object": ([1, "a", 2.5, None, True], ["a", 3, (1, 2), None]),
    "unhashable": ([[1], [2], [1]], [[3]]),
    "bools": ([True, False, True], [False, None, False]),
}


def _frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    r, c = CASES[name]
    dtype = object if name.startswith(("mixed", "unhash")) else None
    return pd.DataFrame({"col": pd.Series(r, dtype=dtype)}), pd.DataFrame(
        {"col": pd.Series(c, dtype=dtype)}
    )


def _arrow_holds(name: str) -> bool:
    try:
        for frame in _frames(name):
            pa.Table.from_pandas(frame)
    except (pa.ArrowException, TypeError, ValueError):
        return False  # e.g. unhashable mixed objects: no Arrow column can hold them
    return True


@pytest.mark.parametrize(
    ("name", "flavour"),
    [(n, "pandas") for n in CASES] + [(n, "arrow") for n in CASES if _arrow_holds(n)],
)
def test_dirty_columns(name: str, flavour: str) -> None:
    ref, cur = _frames(name)
    if flavour == "arrow":
        report = drift(pa.Table.from_pandas(ref), pa.Table.from_pandas(cur))
    else:
        report = drift(ref, cur)
    check(report)


def test_zero_rows_and_type_changes() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype=float), "c": pd.Series([], dtype=str)})
    full = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    for ref, cur in [(empty, full), (full, empty), (empty, empty)]:
        check(drift(ref, cur))
    retyped = pd.DataFrame({"x": ["1", "2"], "c": [1.0, 2.0]})
    rep = drift(full, retyped)
    check(rep)
    assert rep.columns["x"].error and "kind changed" in rep.columns["x"].error
    assert any("type changed" in a for a in rep.alerts)


def test_duplicate_column_names_get_an_error_entry() -> None:
    ref = pd.DataFrame([[1.0, 2.0, "a"]] * 5, columns=["x", "x", "c"])
    rep = drift(ref, ref, threshold="learned")
    check(rep)
    assert rep.columns["x"].error and "more than once" in rep.columns["x"].error
    assert rep.columns["c"].drifted is False


def test_datetime_and_other_columns_are_reported_not_dropped() -> None:
    ts = pd.date_range("2026-01-01", periods=5, freq="h")
    ref = pd.DataFrame({"t": ts, "d": [pd.Timedelta(1, "s")] * 5, "x": np.arange(5.0)})
    rep = drift(ref, ref)
    check(rep)
    assert set(rep.columns) == {"t", "d", "x"}
    assert rep.columns["t"].note and rep.columns["t"].drifted is None


column = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "zz"])), max_size=30),
    st.lists(
        st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2), st.booleans()), max_size=30
    ),
    st.lists(st.integers(-(2**62), 2**62), max_size=30),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(column, column, st.sampled_from([None, "psi", "ks", "hellinger", "chisquare"]))
def test_random_dirty_frames_never_raise(r: list[Any], c: list[Any], test: str | None) -> None:
    ref = pd.DataFrame(
        {"v": pd.Series(r, dtype=object) if r and not _numeric(r) else pd.Series(r, dtype=float)}
    )
    cur = pd.DataFrame(
        {"v": pd.Series(c, dtype=object) if c and not _numeric(c) else pd.Series(c, dtype=float)}
    )
    rep = drift(ref, cur, tests=test, multivariate=("pca",))
    check(rep)
    stored = Reference.from_bytes(Reference.fit(ref).to_bytes())
    check(drift(stored, cur, tests=test, multivariate=False))


def _numeric(xs: list[Any]) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
