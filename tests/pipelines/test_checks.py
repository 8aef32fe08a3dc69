"""Data checks on step inputs and outputs: declared with @step, run where the step runs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from opsloop.data import validation as v
from opsloop.data.validation import ValidationReport
from opsloop.errors import InvalidInput
from opsloop.pipelines import pipeline, run, step
from opsloop.pipelines.cache import entry_path
from opsloop.pipelines.checks import StepChecks
from opsloop.store import Store
from tests.pipelines.helpers import artifacts, run_count, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# -- declaring checks ---------------------------------------------------------------------


def test_checks_are_normalised_at_decoration() -> None:
    @step(
        checks={"df": v.not_null("id"), "other": [{"check": "unique", "column": "id"}]},
        output_checks=[v.row_count(min=1)],
    )
    def clean(df: Any, other: Any, n: int = 1) -> Any:
        return df

    assert clean.checks == StepChecks(
        inputs=(("df", (v.not_null("id"),)), ("other", (v.unique("id"),))),
        outputs=(("output", (v.row_count(min=1),)),),
    )

    @step(outputs=("train", "test"), output_checks={"test": [v.row_count(min=1)], "train": []})
    def split(df: Any) -> Any:
        return df, df

    assert split.checks.outputs == (("test", (v.row_count(min=1),)),)

    @step(outputs=2, output_checks={1: v.row_count(max=5)})
    def pair(df: Any) -> Any:
        return df, df

    assert pair.checks.outputs == (("1", (v.row_count(max=5),)),)

    @step
    def plain(df: Any) -> Any:
        return df

    assert not plain.checks

    # options() keeps the checks unless given new ones
    assert clean.options(name="clean2").checks == clean.checks
    assert not clean.options(checks={}, output_checks=[]).checks


def test_wrong_names_and_values_are_refused_at_decoration() -> None:
    def f(df: Any, *rest: Any) -> Any:
        return df

    with pytest.raises(InvalidInput, match=r"step 'f' has no argument 'frame' to check.*'df'"):
        step(checks={"frame": [v.not_null("id")]})(f)
    with pytest.raises(InvalidInput, match=r"step 'f': cannot check \*rest"):
        step(checks={"rest": [v.not_null("id")]})(f)
    with pytest.raises(InvalidInput, match=r"step 'split' has no output 'valid'.*'train', 'test'"):
        step(name="split", outputs=("train", "test"), output_checks={"valid": []})(f)
    with pytest.raises(InvalidInput, match=r"step 'f' has no output 2 to check"):
        step(outputs=2, output_checks={2: []})(f)
    with pytest.raises(InvalidInput, match=r"step 'f' has the outputs \['a', 'b'\]: give output_"):
        step(outputs=("a", "b"), output_checks=[v.row_count(min=1)])(f)
    with pytest.raises(InvalidInput, match=r"step 'f': check #0 on argument 'df' is not a check"):
        step(checks={"df": ["not_null(id)"]})(f)
    with pytest.raises(InvalidInput, match=r"step 'f': check #1 on its output: unknown check"):
        step(output_checks=[v.row_count(min=1), {"check": "nope"}])(f)
    with pytest.raises(InvalidInput, match=r"checks must map argument names"):
        step(checks=[v.not_null("id")])(f)  # type: ignore[arg-type]

    # a function that takes **kwargs may have any of them checked
    @step(checks={"extra": [v.row_count(min=1)]})
    def g(**kwargs: Any) -> int:
        return len(kwargs)

    assert g.checks.inputs[0][0] == "extra"


# -- running them ---------------------------------------------------------------------------


@step
def frame(ids: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "x": [float(i or 0) for i in ids]})


@step(checks={"df": [v.not_null("id"), v.unique("id")]}, retries=2, retry_backoff=0.0)
def guarded(df: pd.DataFrame, marker: str) -> pd.DataFrame:
    Path(marker).write_text("ran")
    return df


@step
def downstream(df: pd.DataFrame) -> int:
    return len(df)


@pipeline
def guarded_pipeline(ids: list[Any], marker: str):
    downstream(guarded(frame(ids), marker))


def _report(store: Store, run: Any, path: str) -> ValidationReport:
    doc = json.loads(artifacts(store, run)[path])
    assert set(doc) == {"passed", "rows", "checks", "failed", "results"}
    return ValidationReport.from_dict(doc)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failed_input_check_stops_the_step_before_it_runs(
    store: Store, tmp_path: Path, executor: str
) -> None:
    marker = tmp_path / "ran"
    r = run(
        guarded_pipeline,
        {"ids": [1, 2, 2, None], "marker": str(marker)},
        store=store,
        executor=executor,
        raise_on_failure=False,
    )
    assert not r.ok
    assert r.steps["guarded"].status == "FAILED"
    assert r.steps["guarded"].attempts == 1  # not retried: the data would not change
    assert r.skipped_steps == ["downstream"]
    assert not marker.exists()  # the function never ran
    error = r.steps["guarded"].error or ""
    assert error.startswith("ChecksFailed: step 'guarded': input 'df' failed 2 of 2 checks")
    assert "not_null(id)" in error and "unique(id)" in error
    assert "checks/inputs/df.json" in error

    runs = step_runs(store, r.run_id)
    failed = runs["guarded"]
    assert failed.info.status == "FAILED"
    assert failed.tags["opsloop.error"] == error
    files = artifacts(store, failed)
    assert not any(p.startswith("outputs/") for p in files)
    assert "ChecksFailed" in files["logs/traceback.txt"].decode()
    report = _report(store, failed, "checks/inputs/df.json")
    assert not report.passed and report.rows == 4
    by_check = {res.check: res for res in report.results}
    assert by_check["not_null"].failing_rows == 1
    assert by_check["not_null"].examples[0]["row"] == 3
    assert by_check["unique"].failing_rows == 2
    # the same report, read through the result
    assert r.check_reports("guarded") == {"inputs/df": report}
    assert "downstream" not in runs


@sqlite_only
def test_passing_checks_leave_their_reports(store: Store, tmp_path: Path) -> None:
    r = run(guarded_pipeline, {"ids": [1, 2, 3], "marker": str(tmp_path / "m")}, store=store)
    assert r.ok and r.output("downstream") == 3
    guarded_run = step_runs(store, r.run_id)["guarded"]
    report = _report(store, guarded_run, "checks/inputs/df.json")
    assert report.passed and [res.check for res in report.results] == ["not_null", "unique"]
    assert set(r.check_reports("guarded")) == {"inputs/df"}
    assert r.check_reports("downstream") == {}


@step(
    outputs=("train", "test"),
    output_checks={"train": [v.row_count(min=3)], "test": [v.in_range("x", min=0)]},
)
def split_table(df: pd.DataFrame, cut: int) -> tuple[pa.Table, pa.Table]:
    t = pa.Table.from_pandas(df, preserve_index=False)
    return t.slice(0, cut), t.slice(cut)


@step
def count(t: pa.Table) -> int:
    return int(t.num_rows)


@pipeline
def split_pipeline(ids: list[Any], cut: int):
    train, test = split_table(frame(ids), cut)
    count(train)
    count(test)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failed_output_check_stores_no_output(store: Store, executor: str) -> None:
    ok = run(split_pipeline, {"ids": [1, 2, 3, 4, 5], "cut": 3}, store=store, executor=executor)
    assert ok.output("count") == 3 and ok.output("count_2") == 2
    reports = ok.check_reports("split_table")
    assert set(reports) == {"outputs/train", "outputs/test"}
    assert reports["outputs/train"].passed and reports["outputs/test"].passed

    bad = run(
        split_pipeline,
        {"ids": [1, 2, 3, 4, -5], "cut": 2},
        store=store,
        executor=executor,
        raise_on_failure=False,
    )
    s = bad.steps["split_table"]
    assert s.status == "FAILED" and s.attempts == 1 and s.outputs == ()
    assert sorted(bad.skipped_steps) == ["count", "count_2"]
    assert (s.error or "").startswith(
        "ChecksFailed: step 'split_table': output 'train' failed 1 of 1 checks on 2 rows: "
        "row_count(3..): 2 rows, but expected at least 3 (report: checks/outputs/train.json)"
    )
    assert "; output 'test' failed 1 of 1 checks on 3 rows: in_range(x" in (s.error or "")
    failed_run = step_runs(store, bad.run_id)["split_table"]
    files = artifacts(store, failed_run)
    assert not any(p.startswith("outputs/") for p in files)
    assert "opsloop.output.train" not in failed_run.tags
    assert {"checks/outputs/train.json", "checks/outputs/test.json"} <= set(files)
    test_report = _report(store, failed_run, "checks/outputs/test.json")
    assert test_report.results[0].examples == ({"row": 2, "values": {"x": -5.0}},)
    # nothing in the cache for the failed step: a re-run checks again
    assert s.cache_key is not None
    assert not store.artifacts.walk(entry_path(s.cache_key))


class _Calls:
    """Counts the calls of a custom check (an object, so that it does not count in the
    check's code hash as plain data would)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []


_calls = _Calls()


def _count_calls(df: pd.DataFrame) -> bool:
    _calls.sizes.append(len(df))
    return True


@sqlite_only
def test_checks_are_in_the_cache_key_and_a_hit_skips_them(store: Store) -> None:
    def build(min_rows: int, fn: Any) -> Any:
        checked = downstream.options(
            checks={"df": [v.row_count(min=min_rows), v.custom("calls", fn)]}
        )

        @pipeline(name="keyed")
        def keyed(ids: list[Any]):
            checked(frame(ids))

        return keyed

    calls = _calls.sizes
    calls.clear()
    first = run(build(1, _count_calls), {"ids": [1, 2]}, store=store, executor="inline")
    assert calls == [2] and not first.steps["downstream"].cache_hit
    again = run(build(1, _count_calls), {"ids": [1, 2]}, store=store, executor="inline")
    assert again.steps["downstream"].cache_hit and calls == [2]  # checks skipped on a hit
    # the hit did not check again; it carries the reports of the run it came from
    assert again.check_reports("downstream") == first.check_reports("downstream") != {}
    changed = run(build(2, _count_calls), {"ids": [1, 2]}, store=store, executor="inline")
    assert not changed.steps["downstream"].cache_hit and calls == [2, 2]
    # a custom check counts by its code
    other = run(build(2, lambda df: len(df) > 0), {"ids": [1, 2]}, store=store, executor="inline")
    assert not other.steps["downstream"].cache_hit
    assert first.steps["downstream"].cache_key != changed.steps["downstream"].cache_key


@sqlite_only
def test_a_custom_check_runs_in_a_worker_process(store: Store) -> None:
    limit = 2

    @step(output_checks=[v.custom("small", lambda df: len(df) <= limit)])
    def passthrough(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @pipeline
    def p(ids: list[Any]):
        passthrough(frame(ids))

    assert run(p, {"ids": [1, 2]}, store=store, executor="local").ok
    r = run(p, {"ids": [1, 2, 3]}, store=store, executor="local", raise_on_failure=False)
    assert "output 'output' failed 1 of 1 checks on 3 rows: small" in (
        r.steps["passthrough"].error or ""
    )


@sqlite_only
def test_checks_on_a_value_that_is_not_a_table_fail_clearly(store: Store) -> None:
    @step(checks={"n": [v.row_count(min=1)]})
    def takes(n: int) -> int:
        return n

    @pipeline
    def p():
        takes(3)

    r = run(p, store=store, executor="inline", raise_on_failure=False)
    assert r.steps["takes"].error == (
        "ChecksFailed: step 'takes': input 'n' is a int; its checks need a pandas "
        "DataFrame or a pyarrow Table"
    )


@sqlite_only
def test_checked_kwargs_and_unpicklable_checks_are_refused_before_anything_runs(
    store: Store,
) -> None:
    @step(checks={"extra": [v.row_count(min=1)]})
    def many(**kwargs: Any) -> int:
        return len(kwargs)

    @pipeline
    def given():
        many(extra=pd.DataFrame({"a": [1]}))

    assert run(given, store=store, executor="inline").output("many") == 1

    @pipeline
    def missing():
        many(other=1)

    before = run_count(store)
    with pytest.raises(InvalidInput, match="step 'many' has checks on the argument 'extra'"):
        run(missing, store=store, executor="inline")
    lock = threading.Lock()

    @step(checks={"df": [v.custom("locked", lambda df: lock.locked() or True)]})
    def locked(df: pd.DataFrame) -> int:
        return len(df)

    @pipeline
    def unpicklable():
        locked(frame([1]))

    with pytest.raises(InvalidInput, match="step 'locked': its checks cannot be sent"):
        run(unpicklable, store=store, executor="local")
    assert run_count(store) == before
