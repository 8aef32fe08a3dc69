"""Declarative data validation: each check, the report, the dict form, the rules on nulls."""

from __future__ import annotations

import json
import math
import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.data import validation as v
from opsloop.errors import InvalidInput

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def run(data: Any, check: v.Check) -> v.CheckResult:
    report = v.validate(data, [check])
    assert len(report.results) == 1
    result = report.results[0]
    json.dumps(result.to_dict(), allow_nan=False)  # every result is strict JSON
    return result


def both(df: pd.DataFrame, check: v.Check) -> v.CheckResult:
    """Run on the DataFrame and on its Arrow twin; they must agree."""
    result = run(df, check)
    assert run(pa.Table.from_pandas(df, preserve_index=False), check) == result
    return result


def rows(result: v.CheckResult) -> list[int]:
    return [e["row"] for e in result.examples]


# --------------------------------------------------------------------------- column_exists


def test_column_exists_with_and_without_type() -> None:
    df = pd.DataFrame({"temp": [1.5], "n": [1], "s": ["a"], "b": [True]})
    assert both(df, v.column_exists("temp")).passed
    assert both(df, v.column_exists("temp", type="float")).passed
    assert both(df, v.column_exists("temp", type="numeric")).passed
    assert both(df, v.column_exists("temp", type="double")).passed
    assert both(df, v.column_exists("temp", type="float64")).passed  # an Arrow alias
    assert both(df, v.column_exists("n", type="integer")).passed
    assert both(df, v.column_exists("s", type="string")).passed
    assert both(df, v.column_exists("b", type="bool")).passed

    wrong = both(df, v.column_exists("n", type="float"))
    assert not wrong.passed and wrong.error is None
    assert wrong.message == "n: type is int64, expected float"
    assert wrong.details == {"type": "int64"}
    assert wrong.failing_rows is None and wrong.failing_share is None

    missing = both(df, v.column_exists("nope"))
    assert not missing.passed and missing.error is None  # a plain failure, not an error
    assert "no column 'nope'" in missing.message


def test_column_exists_float_family_covers_float32_and_arrow_names_are_exact() -> None:
    t = pa.table(
        {
            "f": pa.array([1.0], pa.float32()),
            "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
            "d": pa.array([date(2024, 1, 1)], pa.date32()),
        }
    )
    assert run(t, v.column_exists("f", type="float")).passed
    assert run(t, v.column_exists("f", type="float32")).passed
    assert not run(t, v.column_exists("f", type="float64")).passed
    assert run(t, v.column_exists("ts", type="timestamp")).passed
    assert run(t, v.column_exists("ts", type="timestamp[us, tz=UTC]")).passed
    assert run(t, v.column_exists("ts", type="timestamp[us,tz=UTC]")).passed
    assert not run(t, v.column_exists("ts", type="timestamp[ns, tz=UTC]")).passed
    assert run(t, v.column_exists("d", type="date")).passed


# --------------------------------------------------------------------------- missing values


def test_not_null_counts_null_and_nan_in_arrow_floats() -> None:
    t = pa.table({"x": pa.array([1.0, float("nan"), None, 4.0, None])})
    r = run(t, v.not_null("x"))
    assert not r.passed
    assert r.failing_rows == 3 and r.failing_share == pytest.approx(0.6)
    assert r.examples == (
        {"row": 1, "values": {"x": None}},  # NaN -> None in JSON
        {"row": 2, "values": {"x": None}},
        {"row": 4, "values": {"x": None}},
    )
    assert r.message == "x: 3 of 5 rows (60%) are missing; e.g. row 1: NaN"


def test_not_null_pandas_markers() -> None:
    df = pd.DataFrame(
        {
            "f": [1.0, np.nan, None],
            "s": ["a", None, "c"],
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-02"]),
            "i": pd.array([1, None, 3], dtype="Int64"),
        }
    )
    assert both(df, v.not_null("f")).failing_rows == 2
    for col in ("s", "t", "i"):
        r = both(df, v.not_null(col))
        assert (r.failing_rows, rows(r)) == (1, [1])
    # A column Arrow cannot read is an error, not a crash; the other columns still work.
    mixed = df.assign(o=[1, "a", None])
    assert run(mixed, v.not_null("s")).failing_rows == 1
    r = run(mixed, v.not_null("o"))
    assert r.error is not None and "cannot be read" in r.error
    assert run(pd.DataFrame({"id": [1, 2]}), v.not_null("id")).passed


def test_max_missing() -> None:
    df = pd.DataFrame({"temp": [1.0] * 95 + [np.nan] * 5})
    at_limit = both(df, v.max_missing("temp", 0.05))
    assert at_limit.passed  # the share is allowed up to and including the limit
    assert at_limit.failing_rows == 5 and at_limit.failing_share == pytest.approx(0.05)
    assert at_limit.message.startswith(
        "temp: 5 of 100 rows (5%) are missing, within the allowed 5%"
    )
    over = both(df, v.max_missing("temp", 0.04))
    assert not over.passed
    assert "more than the allowed 4%" in over.message
    assert rows(over) == [95, 96, 97, 98, 99]
    assert both(df, v.max_missing("temp", 0)).passed is False
    assert both(df, v.max_missing("temp", 1)).passed


# --------------------------------------------------------------------------- unique


def test_unique_single_column() -> None:
    df = pd.DataFrame({"id": [1, 2, 2, 3, 3, 3, 4]})
    r = both(df, v.unique("id"))
    assert not r.passed
    assert r.failing_rows == 5  # every occurrence of a repeated value
    assert r.details == {"duplicated_values": 2}
    assert rows(r) == [1, 2, 3, 4, 5]
    assert r.examples[0] == {"row": 1, "values": {"id": 2}}
    assert r.message == "id: 5 of 7 rows (71.4%) are duplicates (2 values repeated); e.g. row 1: 2"
    assert both(pd.DataFrame({"id": [3, 1, 2]}), v.unique("id")).passed


def test_unique_combination_ignores_rows_with_nulls_and_nan() -> None:
    df = pd.DataFrame(
        {
            "site": ["a", "a", "b", "b", None, None, "a"],
            "day": [1.0, 2.0, 1.0, 1.0, 5.0, 5.0, np.nan],
        }
    )
    r = both(df, v.unique(["site", "day"]))
    assert (r.failing_rows, rows(r)) == (2, [2, 3])
    assert r.name == "unique(site, day)"
    assert r.examples[0]["values"] == {"site": "b", "day": 1.0}
    t = pa.table({"x": pa.array([float("nan"), float("nan"), None, None, 1.0])})
    assert run(t, v.unique("x")).passed


# --------------------------------------------------------------------------- in_range


def test_in_range_counts_and_message() -> None:
    temps = [20.0] * 1000
    for i in (17, 18, 500):
        temps[i] = 130.5
    temps[600] = -41
    df = pd.DataFrame({"temp": temps})
    r = both(df, v.in_range("temp", min=-40, max=125))
    assert r.name == "in_range(temp, -40..125)"
    assert (r.failing_rows, r.failing_share) == (4, 0.004)
    assert r.message == "temp: 4 of 1,000 rows (0.4%) outside [-40, 125]; e.g. row 17: 130.5"
    assert rows(r) == [17, 18, 500, 600]
    assert r.columns == ("temp",)


def test_in_range_inclusive_strict_and_one_sided() -> None:
    df = pd.DataFrame({"x": [0, 5, 10]})
    assert both(df, v.in_range("x", min=0, max=10)).passed
    strict = both(df, v.in_range("x", min=0, max=10, strict=True))
    assert rows(strict) == [0, 2]
    assert "outside (0, 10)" in strict.message
    assert strict.name == "in_range(x, 0..10, strict)"
    low = both(df, v.in_range("x", min=5))
    assert rows(low) == [0] and "outside [5, inf)" in low.message
    high = both(df, v.in_range("x", max=5.5))
    assert rows(high) == [2] and high.name == "in_range(x, ..5.5)"


def test_in_range_nan_is_outside_null_is_skipped() -> None:
    t = pa.table({"x": pa.array([1.0, float("nan"), None, 200.0])})
    r = run(t, v.in_range("x", min=0, max=100))
    assert rows(r) == [1, 3]
    assert r.examples[0] == {"row": 1, "values": {"x": None}}
    assert "e.g. row 1: NaN" in r.message
    # In pandas NaN is the missing marker, so it is skipped like null.
    assert (
        both(pd.DataFrame({"x": [1.0, np.nan, 200.0]}), v.in_range("x", max=100)).failing_rows == 1
    )


def test_in_range_infinities_are_json_strings() -> None:
    t = pa.table({"x": pa.array([1.0, math.inf, -math.inf])})
    r = run(t, v.in_range("x", min=0, max=10))
    assert [e["values"]["x"] for e in r.examples] == ["inf", "-inf"]


def test_in_range_times_and_strings() -> None:
    naive = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 02:00"])})
    aware = naive.assign(ts=naive["ts"].dt.tz_localize("UTC"))
    paris = naive.assign(ts=naive["ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    for df in (naive, aware, paris):
        # naive timestamps and naive bounds are UTC; aware ones are instants
        assert rows(both(df, v.in_range("ts", max="2024-01-01T01:00:00"))) == [1]
        assert rows(both(df, v.in_range("ts", max=datetime(2024, 1, 1, 2, 0, tzinfo=UTC)))) == []
        plus_one = timezone(timedelta(hours=1))
        check = v.in_range("ts", max=datetime(2024, 1, 1, 2, 0, tzinfo=plus_one))
        assert rows(both(df, check)) == [1]
    r = both(naive, v.in_range("ts", min=date(2024, 1, 1)))
    assert r.passed and r.name == "in_range(ts, 2024-01-01..)"
    assert r.to_dict()["spec"]["min"] == "2024-01-01"
    dates = pa.table({"d": pa.array([date(2024, 1, 1), date(2024, 3, 1)], pa.date32())})
    assert rows(run(dates, v.in_range("d", max="2024-02-01"))) == [1]
    words = pd.DataFrame({"w": ["apple", "kiwi", "zebra", None]})
    assert rows(both(words, v.in_range("w", min="b", max="y"))) == [0, 2]


def test_in_range_that_cannot_apply_is_an_error() -> None:
    df = pd.DataFrame({"b": [True, False], "x": [1, 2], "ts": pd.to_datetime(["2024-01-01"] * 2)})
    for check, words in [
        (v.in_range("b", min=0), "in_range applies to numeric"),
        (v.in_range("x", min="a"), "not a number"),
        (v.in_range("ts", min=3), "holds times"),
        (v.in_range("ts", min="yesterday"), "not an ISO date"),
        (v.in_range("nope", min=0), "no column 'nope'"),
    ]:
        r = both(df, check)
        assert not r.passed and r.error is not None and words in r.error, r.error
        assert r.failing_rows is None and r.message.startswith("could not run: ")


# --------------------------------------------------------------------------- accepted values


def test_accepted_values() -> None:
    df = pd.DataFrame({"site": ["a", "b", "c", None, "a", "d"]})
    r = both(df, v.accepted_values("site", {"b", "a"}))
    assert r.name == "accepted_values(site, {'a', 'b'})"
    assert (r.failing_rows, rows(r)) == (2, [2, 5])  # null is skipped
    assert r.message == "site: 2 of 6 rows (33.3%) not in {'a', 'b'}; e.g. row 2: 'c'"
    cat = df.astype("category")
    assert both(cat, v.accepted_values("site", ["a", "b"])) == r


def test_accepted_values_numbers_bools_and_nan() -> None:
    t = pa.table(
        {
            "n": pa.array([1, 2, 3, None], pa.int8()),
            "f": pa.array([1.0, 2.5, float("nan"), None]),
            "b": pa.array([True, False, None, True]),
        }
    )
    assert rows(run(t, v.accepted_values("n", [1, 2.0]))) == [2]
    assert rows(run(t, v.accepted_values("f", [1, 2.5]))) == [2]  # NaN is never accepted
    assert rows(run(t, v.accepted_values("b", [True]))) == [1]
    mismatch = run(t, v.accepted_values("n", ["1", "2"]))
    assert mismatch.error == "accepted_values has string values but n is int8"


# --------------------------------------------------------------------------- matches


def test_matches_is_a_full_match() -> None:
    df = pd.DataFrame({"code": ["ABC1", "ABC12x", "xABC1", "AB1", None, "XYZ999"]})
    r = both(df, v.matches("code", r"[A-Z]{3}\d+"))
    assert (r.failing_rows, rows(r)) == (3, [1, 2, 3])
    assert r.message == r"code: 3 of 6 rows (50%) do not match /[A-Z]{3}\d+/; e.g. row 1: 'ABC12x'"
    assert both(
        df, v.matches("code", "ABC1|AB1|XYZ999|ABC12x|xABC1")
    ).passed  # alternation kept whole


def test_matches_python_only_syntax_falls_back_to_re() -> None:
    df = pd.DataFrame({"code": ["ab", "ba", "aa", None]})
    r = both(df, v.matches("code", r"(?=a)(\w)\w"))  # lookahead: not RE2
    assert rows(r) == [1]
    r = both(df, v.matches("code", r"(\w)\1"))  # backreference
    assert rows(r) == [0, 1]


def test_matches_errors() -> None:
    df = pd.DataFrame({"code": ["a"], "n": [1]})
    bad = both(df, v.matches("code", "(unclosed"))
    assert bad.error is not None and "does not compile" in bad.error
    wrong_type = both(df, v.matches("n", "1"))
    assert wrong_type.error == "matches applies to string columns; n is int64"


# --------------------------------------------------------------------------- row count


def test_row_count() -> None:
    df = pd.DataFrame({"x": range(10)})
    assert both(df, v.row_count(min=1, max=10)).passed
    few = both(df, v.row_count(min=11))
    assert not few.passed and few.message == "10 rows, but expected at least 11"
    assert few.details == {"rows": 10} and few.failing_rows is None
    many = both(df, v.row_count(max=9))
    assert many.message == "10 rows, but expected at most 9"
    assert both(df, v.row_count(min=0, max=0)).message == "10 rows, but expected between 0 and 0"


# --------------------------------------------------------------------------- fresh


def test_fresh_aware_and_naive() -> None:
    newest = "2024-06-01 11:30"
    naive = pd.DataFrame({"ts": pd.to_datetime(["2024-06-01 08:00", newest, None])})
    aware = naive.assign(ts=naive["ts"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    for df in (naive, aware):
        ok = both(df, v.fresh("ts", max_age=timedelta(hours=1), now=NOW))
        assert ok.passed and ok.details["age_seconds"] == 1800
        assert ok.details["newest"] == "2024-06-01T11:30:00+00:00"
        stale = both(df, v.fresh("ts", max_age="20m", now=NOW))
        assert not stale.passed
        assert stale.message == (
            "ts: newest value 2024-06-01T11:30:00+00:00 is 30m old, more than the allowed 20m"
        )
        # a naive `now` is UTC too
        assert both(df, v.fresh("ts", max_age=1800, now=NOW.replace(tzinfo=None))).passed


def test_fresh_default_now_future_dates_and_nothing_to_check() -> None:
    now = datetime.now(UTC)
    df = pd.DataFrame({"ts": [now - timedelta(minutes=5)]})
    assert run(df, v.fresh("ts", max_age=timedelta(hours=1))).passed
    assert not run(df, v.fresh("ts", max_age=timedelta(minutes=1))).passed
    future = pd.DataFrame({"ts": [NOW + timedelta(days=1)]})
    r = both(future, v.fresh("ts", "1h", now=NOW))
    assert r.passed and "in the future" in r.message
    days = pa.table({"d": pa.array([date(2024, 5, 31)], pa.date32())})
    assert run(days, v.fresh("d", "36h", now=NOW)).passed  # midnight UTC + 36h = noon
    assert not run(days, v.fresh("d", "35h", now=NOW)).passed
    empty = both(pd.DataFrame({"ts": pd.to_datetime([None, None])}), v.fresh("ts", "1h", now=NOW))
    assert not empty.passed and empty.error is None and "no values" in empty.message
    strings = both(pd.DataFrame({"ts": ["2024-06-01"]}), v.fresh("ts", "1h", now=NOW))
    assert strings.error is not None and "timestamp and date columns" in strings.error


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize(
    ("op", "failing"),
    [("<", [1, 2]), ("<=", [2]), ("==", [0, 2]), ("!=", [1]), (">=", [0]), (">", [0, 1])],
)
def test_compare_operators(op: str, failing: list[int]) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": [2, 2, 1]})
    r = both(df, v.compare("a", op, "b"))
    assert rows(r) == failing
    assert r.name == f"compare(a {op} b)" and r.columns == ("a", "b")


def test_compare_nulls_and_nan() -> None:
    t = pa.table(
        {
            "start": pa.array([1.0, None, 5.0, float("nan"), 2.0]),
            "end": pa.array([2.0, 3.0, None, 1.0, 1.0]),
        }
    )
    r = run(t, v.compare("start", "<=", "end"))
    assert rows(r) == [3, 4]  # NaN fails; rows with a null pass
    assert r.message == "start <= end: 2 of 5 rows (40%) fail; e.g. row 3: start=NaN, end=1.0"
    assert r.examples[0] == {"row": 3, "values": {"start": None, "end": 1.0}}
    assert rows(run(t, v.compare("start", "<=", "end", nulls_fail=True))) == [1, 2, 3, 4]
    assert rows(run(t, v.compare("start", "!=", "end"))) == [3]  # even != fails on NaN


def test_compare_timestamps_across_zones_and_bad_types() -> None:
    df = pd.DataFrame(
        {
            "naive": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 12:00"]),
            "aware": pd.to_datetime(["2024-01-01 11:00", "2024-01-01 11:00"])
            .tz_localize("UTC")
            .tz_convert("America/New_York"),
            "s": ["a", "b"],
        }
    )
    assert rows(both(df, v.compare("naive", "<", "aware"))) == [1]
    bad = both(df, v.compare("naive", "<", "s"))
    assert bad.error is not None and bad.error.startswith("cannot compare naive")


# --------------------------------------------------------------------------- custom


def test_custom_per_row_and_table_level() -> None:
    df = pd.DataFrame({"price": [3.0, 1.0, 5.0], "cost": [1.0, 2.0, 5.0], "other": [0, 0, 0]})
    margin = v.custom(
        "positive_margin", lambda d: d["price"] > d["cost"], columns=["price", "cost"]
    )
    r = both(df, margin)
    assert r.name == "positive_margin" and r.check == "custom"
    assert (r.failing_rows, rows(r)) == (2, [1, 2])
    assert r.examples[0] == {"row": 1, "values": {"price": 1.0, "cost": 2.0}}
    assert r.message == "positive_margin: 2 of 3 rows (66.7%) fail; e.g. row 1: price=1.0, cost=2.0"
    every_column = both(df, v.custom("m", lambda d: (d["price"] > d["cost"]).to_numpy()))
    assert set(every_column.examples[0]["values"]) == {"price", "cost", "other"}
    assert rows(both(df, v.custom("m", lambda d: [True, False, True]))) == [1]
    assert both(df, v.custom("small", lambda d: len(d) < 10)).passed
    big = both(df, v.custom("big", lambda d: bool(d["price"].sum() > 100)))
    assert not big.passed and big.failing_rows is None and big.message == "big: returned False"


def test_custom_na_fails_and_input_is_not_mutated() -> None:
    df = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64")})

    def mutating(d: pd.DataFrame) -> pd.Series:
        d["y"] = 1
        return d["x"] > 0

    r = run(df, v.custom("positive", mutating))
    assert rows(r) == [1]  # <NA> > 0 is NA: a failure
    assert list(df.columns) == ["x"]


def test_custom_errors() -> None:
    df = pd.DataFrame({"x": [1, 2]})
    raising = both(df, v.custom("boom", lambda d: d["missing"] > 0))
    assert raising.error is not None and raising.error.startswith("the function raised KeyError")
    short = both(df, v.custom("short", lambda d: d["x"].iloc[:1] > 0))
    assert short.error == "the function returned 1 values for 2 rows"
    numbers = both(df, v.custom("numbers", lambda d: d["x"]))
    assert numbers.error == "the function returned int64 values, not booleans"
    other = both(df, v.custom("other", lambda d: "yes"))
    assert other.error is not None and "got str" in other.error


# --------------------------------------------------------------------------- the report


def test_all_checks_run_even_when_some_cannot() -> None:
    df = pd.DataFrame({"id": [1, 2, 2], "code": ["a", "b", "c"]})
    checks = [
        v.in_range("nope", min=0),
        v.matches("code", "("),
        v.custom("boom", lambda d: 1 / 0),
        v.unique("id"),
        v.not_null("code"),
    ]
    report = v.validate(df, checks)
    assert [r.name for r in report.results] == [c.name for c in checks]
    assert [r.error is not None for r in report.results] == [True, True, True, False, False]
    assert [r.passed for r in report.results] == [False, False, False, False, True]
    assert len(report.failures) == 4 and len(report.errors) == 3
    assert "ZeroDivisionError" in (report.results[2].error or "")


def test_examples_are_capped_positional_and_json() -> None:
    df = pd.DataFrame(
        {
            "x": range(20),
            "when": pd.date_range("2024-01-01", periods=20, freq="D", tz="UTC"),
        },
        index=[f"label{i}" for i in range(20)],
    )
    r = both(df, v.custom("never", lambda d: d["x"] < 0))
    assert r.failing_rows == 20 and len(r.examples) == v.MAX_EXAMPLES
    assert r.examples[0] == {"row": 0, "values": {"x": 0, "when": "2024-01-01T00:00:00+00:00"}}
    t = pa.table({"d": pa.array([date(2024, 1, 2)]), "b": pa.array([b"\x01\xff"])})
    r = run(t, v.custom("no", lambda d: False))
    assert r.examples == ()
    r = run(t, v.custom("no", lambda d: np.array([False])))
    assert r.examples[0]["values"] == {"d": "2024-01-02", "b": "01ff"}


def test_empty_table() -> None:
    df = pd.DataFrame(
        {
            "id": pd.Series([], dtype="int64"),
            "x": pd.Series([], dtype="float64"),
            "s": pd.Series([], dtype="str"),
            "ts": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )
    per_row = [
        v.not_null("id"),
        v.max_missing("x", 0),
        v.unique(["id", "s"]),
        v.in_range("x", min=0),
        v.accepted_values("s", ["a"]),
        v.matches("s", "a+"),
        v.compare("id", "<", "x"),
        v.custom("c", lambda d: d["x"] > 0),
    ]
    for check in per_row:
        r = both(df, check)
        assert r.passed and (r.failing_rows, r.failing_share, r.examples) == (0, 0.0, ()), r
    assert both(df, v.row_count(max=0)).passed
    assert not both(df, v.row_count(min=1)).passed
    assert not both(df, v.fresh("ts", "1d", now=NOW)).passed
    assert v.validate(df, []).passed


def test_all_null_column() -> None:
    df = pd.DataFrame({"x": [None, None, None], "f": [np.nan] * 3})  # x: Arrow type null
    assert both(df, v.not_null("x")).failing_rows == 3
    assert both(df, v.not_null("f")).failing_rows == 3
    for col in ("x", "f"):
        for check in (
            v.in_range(col, min=0),
            v.accepted_values(col, [1]) if col == "f" else v.accepted_values(col, ["a"]),
            v.unique(col),
            v.compare(col, "<", "f"),
        ):
            r = both(df, check)
            assert r.passed and r.failing_rows == 0, r
    assert both(df, v.matches("x", "a")).passed
    assert both(df, v.matches("x", "(")).error is not None  # the pattern is still compiled
    assert not both(df, v.compare("x", "<", "f", nulls_fail=True)).passed
    assert not both(df, v.fresh("x", "1h", now=NOW)).passed


def test_pandas_and_arrow_give_the_same_report() -> None:
    rng = np.random.default_rng(7)
    n = 500
    df = pd.DataFrame(
        {
            "id": rng.integers(0, 400, n),
            "temp": np.where(rng.random(n) < 0.05, np.nan, rng.normal(20, 40, n)),
            "site": rng.choice(["a", "b", "c", None], n),
            "code": rng.choice(["ABC1", "abc", "XY12", "QRS77"], n),
            "ts": pd.Timestamp("2024-05-31", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400, n), "s"),
            "start": rng.integers(0, 10, n),
            "end": rng.integers(0, 10, n),
        }
    )
    checks = [
        v.column_exists("temp", type="float"),
        v.not_null("site"),
        v.max_missing("temp", 0.01),
        v.unique("id"),
        v.unique(["site", "start", "end"]),
        v.in_range("temp", min=-40, max=125),
        v.accepted_values("site", {"a", "b"}),
        v.matches("code", r"[A-Z]{3}\d+"),
        v.row_count(min=1, max=100),
        v.fresh("ts", max_age=timedelta(hours=1), now=NOW),
        v.compare("start", "<=", "end"),
        v.custom("even_ids", lambda d: d["id"] % 2 == 0),
    ]
    from_pandas = v.validate(df, checks)
    from_arrow = v.validate(pa.Table.from_pandas(df, preserve_index=False), checks)
    assert from_pandas == from_arrow
    assert not from_pandas.passed
    assert from_pandas.to_dict() == from_arrow.to_dict()


def test_report_json_round_trip_and_summary() -> None:
    df = pd.DataFrame({"id": [1, 1, None], "temp": [1.0, 300.0, np.nan]})
    report = v.validate(
        df, [v.unique("id"), v.in_range("temp", max=125), v.not_null("nope"), v.row_count(min=1)]
    )
    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert v.ValidationReport.from_dict(json.loads(text)) == report
    assert (d["passed"], d["rows"], d["checks"], d["failed"]) == (False, 3, 4, 3)
    assert set(d["results"][0]) == {
        "check",
        "name",
        "columns",
        "passed",
        "failing_rows",
        "failing_share",
        "message",
        "error",
        "examples",
        "details",
        "spec",
    }
    assert d["results"][1]["spec"] == {
        "check": "in_range",
        "column": "temp",
        "max": 125,
        "strict": False,
    }
    assert report.summary().splitlines() == [
        "FAILED: 3 of 4 checks failed on 3 rows",
        "  FAIL   unique(id): id: 2 of 3 rows (66.7%) are duplicates (1 value repeated); e.g. row 0: 1.0",
        "  FAIL   in_range(temp, ..125): temp: 1 of 3 rows (33.3%) outside (-inf, 125]; e.g. row 1: 300.0",
        "  ERROR  not_null(nope): could not run: no column 'nope' (the table has 2: id, temp)",
        "  ok     row_count(1..)",
    ]
    with pytest.raises(InvalidInput):
        v.ValidationReport.from_dict({"rows": 3})


def test_raise_for_failures() -> None:
    df = pd.DataFrame({"id": [1, 1], "x": [1, 2]})
    ok = v.validate(df, [v.not_null("id")])
    assert ok.raise_for_failures() is ok
    report = v.validate(df, [v.unique("id"), v.not_null("x"), v.in_range("nope", min=1)])
    with pytest.raises(v.ValidationFailed) as info:
        report.raise_for_failures()
    err = info.value
    assert isinstance(err, InvalidInput) and err.report is report
    assert err.message.splitlines() == [
        "data validation failed: 2 of 3 checks failed on 2 rows",
        "- unique(id): id: 2 of 2 rows (100%) are duplicates (1 value repeated); e.g. row 0: 1",
        "- in_range(nope, 1..): could not run: no column 'nope' (the table has 2: id, x)",
    ]
    assert err.to_dict()["error_code"] == "INVALID_PARAMETER_VALUE"
    again = pickle.loads(pickle.dumps(err))  # steps raise it across processes
    assert again.report == report and again.message == err.message


def test_validate_rejects_non_tables_and_non_checks() -> None:
    with pytest.raises(InvalidInput, match="DataFrame or a pyarrow Table"):
        v.validate([{"a": 1}], [v.not_null("a")])
    with pytest.raises(InvalidInput, match="checks_from_dicts"):
        v.validate(pd.DataFrame({"a": [1]}), [{"check": "not_null", "column": "a"}])
    batch = pa.RecordBatch.from_pydict({"a": [1, None]})
    assert v.validate(batch, [v.not_null("a")]).results[0].failing_rows == 1


# --------------------------------------------------------------------------- constructors


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: v.in_range("x", min=5, max=1), "empty"),
        (lambda: v.in_range("x", min=1, max=1, strict=True), "empty"),
        (lambda: v.in_range("x", min="2024-02-01", max=date(2024, 1, 1)), "empty"),
        (lambda: v.in_range("x", min=1, max="z"), "one kind"),
        (lambda: v.in_range("x"), "give min, max or both"),
        (lambda: v.in_range("x", min=float("nan")), "must be a number"),
        (lambda: v.in_range("x", min=True), "must be a number"),
        (lambda: v.compare("a", "=<", "b"), "unknown comparator '=<'"),
        (lambda: v.max_missing("x", -0.1), "from 0 to 1"),
        (lambda: v.max_missing("x", 1.5), "from 0 to 1"),
        (lambda: v.row_count(min=5, max=1), "min (5) is greater than max (1)"),
        (lambda: v.row_count(min=-1), ">= 0"),
        (lambda: v.row_count(min=1.5), "whole number"),
        (lambda: v.row_count(), "give min, max or both"),
        (lambda: v.column_exists("x", type="flaot"), "unknown type 'flaot'"),
        (lambda: v.column_exists(""), "non-empty string"),
        (lambda: v.accepted_values("x", []), "empty"),
        (lambda: v.accepted_values("x", "abc"), "list or set"),
        (lambda: v.accepted_values("x", [1, "a"]), "all strings, all numbers"),
        (lambda: v.accepted_values("x", [None]), "no null"),
        (lambda: v.fresh("x", max_age=timedelta(0)), "positive"),
        (lambda: v.fresh("x", max_age="soon"), "like '1h30m'"),
        (lambda: v.fresh("x", "1h", now="noon"), "ISO date-time"),
        (lambda: v.unique([]), "a column or a list"),
        (lambda: v.unique(["a", "a"]), "repeated"),
        (lambda: v.custom("c", "not callable"), "callable"),
        (lambda: v.matches("x", 5), "pattern must be a string"),
    ],
)
def test_bad_arguments_raise_at_construction(build: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build()
    assert words in info.value.message


def test_durations_and_comparator_words() -> None:
    assert v.fresh("t", "1h30m").to_dict()["max_age"] == "1h30m"
    assert v.fresh("t", "90m") == v.fresh("t", timedelta(minutes=90))
    assert v.fresh("t", 1.5).to_dict()["max_age"] == "1.5s"
    assert v.fresh("t", "2d 3h").name == "fresh(t, 2d3h)"
    assert v.fresh("t", "1w").max_age == timedelta(weeks=1)
    assert v.compare("a", "le", "b") == v.compare("a", "<=", "b")


# --------------------------------------------------------------------------- the dict form


ALL_CHECKS = [
    v.column_exists("temp"),
    v.column_exists("temp", type="float"),
    v.not_null("id"),
    v.max_missing("temp", 0.05),
    v.unique("id"),
    v.unique(["site", "ts"]),
    v.in_range("temp", min=-40, max=125),
    v.in_range("temp", min=-40.5, strict=True),
    v.in_range("ts", min=datetime(2024, 1, 1, tzinfo=UTC), max=date(2025, 1, 1)),
    v.accepted_values("site", {"a", "b"}),
    v.accepted_values("n", [3, 1, 2.5]),
    v.matches("code", r"[A-Z]{3}\d+"),
    v.row_count(min=1, max=10_000_000),
    v.row_count(max=5),
    v.fresh("ts", max_age=timedelta(hours=1)),
    v.fresh("ts", max_age=timedelta(seconds=90.25), now=NOW),
    v.compare("start", "<=", "end"),
    v.compare("a", "!=", "b", nulls_fail=True),
]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.name)
def test_check_dict_round_trip(check: v.Check) -> None:
    d = check.to_dict()
    assert d["check"] == check.kind
    assert json.loads(json.dumps(d)) == d
    assert v.Check.from_dict(d) == check
    assert v.Check.from_dict(yaml.safe_load(yaml.safe_dump(d))) == check


def test_checks_from_dicts_round_trip_through_yaml() -> None:
    text = yaml.safe_dump(v.checks_to_dicts(ALL_CHECKS))
    assert v.checks_from_dicts(yaml.safe_load(text)) == ALL_CHECKS
    config = yaml.safe_load(
        """
        - {check: in_range, column: temp, min: -40}
        - {check: unique, columns: [site, ts]}
        - {check: fresh, column: ts, max_age: 2h, now: 2024-06-01T12:00:00Z}
        - {check: compare, left: start, op: "<", right: end}
        """
    )
    assert v.checks_from_dicts(config) == [
        v.in_range("temp", min=-40),
        v.unique(["site", "ts"]),
        v.fresh("ts", timedelta(hours=2), now=NOW),
        v.compare("start", "<", "end"),
    ]


def test_custom_checks_do_not_serialise() -> None:
    def fn(d: pd.DataFrame) -> bool:
        return True

    check = v.custom("positive_margin", fn, columns=["price"])
    d = check.to_dict()
    assert d == {
        "check": "custom",
        "name": "positive_margin",
        "serializable": False,
        "columns": ["price"],
    }
    with pytest.raises(InvalidInput, match=r"positive_margin.*not serialisable"):
        v.Check.from_dict(d)
    with pytest.raises(InvalidInput, match=r"check #1: custom check 'positive_margin'"):
        v.checks_from_dicts([{"check": "not_null", "column": "x"}, d])
    assert v.Check.from_dict(d, functions={"positive_margin": fn}) == check


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"check": "in_rnage", "column": "x"}, "unknown check 'in_rnage'"),
        ({"column": "x"}, "unknown check None"),
        ({"check": "in_range", "column": "x", "mn": 1}, "unknown key(s) 'mn'"),
        ({"check": "in_range", "min": 1}, "missing key(s) 'column'"),
        ({"check": "in_range", "column": "x", "min": 5, "max": 1}, "empty"),
        ({"check": "row_count", "min": "5"}, "whole number"),
        ({"check": "not_null", "column": 3}, "non-empty string"),
    ],
)
def test_bad_dicts(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        v.checks_from_dicts([spec])
    assert info.value.message.startswith("check #0: ")
    assert words in info.value.message


def test_checks_from_dicts_wants_a_list() -> None:
    with pytest.raises(InvalidInput, match="list of mappings"):
        v.checks_from_dicts({"check": "not_null", "column": "x"})


# --------------------------------------------------------------------------- properties

floats = st.one_of(
    st.none(),
    st.just(math.nan),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, max_size=40), st.floats(-100, 100), st.floats(0, 200), st.booleans())
def test_property_missing_and_range_counts(
    values: list[float | None], low: float, width: float, strict: bool
) -> None:
    t = pa.table({"x": pa.array(values, pa.float64())})
    high = low + width + (1.0 if strict else 0.0)
    missing = sum(x is None or math.isnan(x) for x in values)
    r = run(t, v.not_null("x"))
    assert r.failing_rows == missing
    assert r.failing_share == (missing / len(values) if values else 0.0)

    def outside(x: float) -> bool:
        return math.isnan(x) or (x <= low or x >= high if strict else x < low or x > high)

    expected = [i for i, x in enumerate(values) if x is not None and outside(x)]
    r = run(t, v.in_range("x", min=low, max=high, strict=strict))
    assert r.failing_rows == len(expected)
    assert rows(r) == expected[: v.MAX_EXAMPLES]


frames = st.integers(0, 30).flatmap(
    lambda n: st.builds(
        lambda a, b, s: pd.DataFrame(
            {"a": a, "b": pd.Series(b, dtype="float64"), "s": pd.Series(s, dtype="str")}
        ),
        st.lists(st.integers(-3, 3), min_size=n, max_size=n),
        st.lists(st.one_of(st.none(), st.floats(-3, 3, allow_nan=False)), min_size=n, max_size=n),
        st.lists(
            st.one_of(st.none(), st.sampled_from(["x", "y", "Z1", ""])), min_size=n, max_size=n
        ),
    )
)


@settings(max_examples=60, deadline=None)
@given(frames)
def test_property_pandas_and_arrow_agree_and_match_references(df: pd.DataFrame) -> None:
    checks = [
        v.unique(["a", "s"]),
        v.compare("a", "<", "b"),
        v.accepted_values("s", ["x", "y"]),
        v.matches("s", "[a-z]"),
        v.in_range("b", min=-1, max=1),
        v.max_missing("b", 0.5),
    ]
    report = v.validate(df, checks)
    assert report == v.validate(pa.Table.from_pandas(df, preserve_index=False), checks)
    assert v.ValidationReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    keyed = df.dropna(subset=["a", "s"])
    assert report.results[0].failing_rows == int(keyed.duplicated(["a", "s"], keep=False).sum())
    both_set = df["b"].notna()
    assert report.results[1].failing_rows == int((both_set & ~(df["a"] < df["b"])).sum())
    valid_s = df["s"].notna()
    assert report.results[2].failing_rows == int((valid_s & ~df["s"].isin(["x", "y"])).sum())
    assert report.results[3].failing_rows == int(
        (valid_s & ~df["s"].str.fullmatch("[a-z]").fillna(False)).sum()
    )


check_specs = st.one_of(
    st.builds(v.not_null, st.sampled_from(["a", "b c", "ü"])),
    st.builds(v.max_missing, st.just("a"), st.floats(0, 1)),
    st.builds(
        lambda lo, width, strict: v.in_range("a", min=lo, max=lo + width + 1, strict=strict),
        st.integers(-1000, 1000) | st.floats(-1e9, 1e9),
        st.integers(0, 10),
        st.booleans(),
    ),
    st.builds(
        v.accepted_values, st.just("a"), st.sets(st.text(max_size=5), min_size=1, max_size=5)
    ),
    st.builds(v.accepted_values, st.just("a"), st.sets(st.integers(), min_size=1, max_size=5)),
    st.builds(v.matches, st.just("a"), st.text(max_size=10)),
    st.builds(
        lambda lo, extra: v.row_count(min=lo, max=lo + extra),
        st.integers(0, 10**9),
        st.integers(0, 10),
    ),
    st.builds(lambda us: v.fresh("a", timedelta(microseconds=us)), st.integers(1, 10**15)),
    st.builds(
        v.compare,
        st.just("a"),
        st.sampled_from(v.COMPARATORS),
        st.just("b"),
        nulls_fail=st.booleans(),
    ),
    st.builds(
        v.unique, st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)
    ),
)


@settings(max_examples=150, deadline=None)
@given(check_specs)
def test_property_every_check_round_trips(check: v.Check) -> None:
    d = json.loads(json.dumps(check.to_dict(), allow_nan=False))
    assert v.Check.from_dict(d) == check
    assert v.Check.from_dict(d).name == check.name


def test_chunked_arrow_tables_give_the_same_report() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 2, 4, 5, 5],
            "x": [0.5, np.nan, 3.0, -1.0, 2.0, 9.0],
            "s": ["a", "b", None, "a", "zz", "b"],
        }
    )
    whole = pa.Table.from_pandas(df, preserve_index=False)
    chunked = pa.concat_tables([whole.slice(0, 2), whole.slice(2, 1), whole.slice(3)])
    assert chunked.column("id").num_chunks == 3
    checks = [
        v.unique("id"),
        v.unique(["id", "s"]),
        v.in_range("x", min=0, max=5),
        v.accepted_values("s", ["a", "b"]),
        v.matches("s", "[a-z]"),
        v.compare("id", "<", "x"),
        v.not_null("s"),
    ]
    assert v.validate(chunked, checks) == v.validate(whole, checks) == v.validate(df, checks)
