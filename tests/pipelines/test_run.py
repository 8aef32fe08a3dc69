"""Running pipelines end to end: tracking, outputs, logs and the cache."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from opsloop.errors import NotFound
from opsloop.pipelines import PipelineResult, pipeline, run, step
from opsloop.pipelines.cache import entry_path
from opsloop.store import Store
from tests.pipelines.helpers import artifacts, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@step
def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    print(f"making {n} rows")
    xs = [((i * 7 + seed) % 11) / 10 for i in range(n)]
    return pd.DataFrame({"x": xs, "y": [int(x > 0.5) for x in xs]})


@step(outputs=("train", "test"))
def split(df: pd.DataFrame, frac: float = 0.75) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(df) * frac)
    return df.iloc[:cut], df.iloc[cut:]


@step
def fit(df: pd.DataFrame, c: float = 1.0) -> LogisticRegression:
    print(f"fitting with C={c}", file=sys.stderr)
    return LogisticRegression(C=c).fit(df[["x"]], df["y"])


@step
def stats(df: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(df), "mean": float(df["x"].mean())}


@step
def evaluate(model: LogisticRegression, test: pd.DataFrame, info: dict[str, Any]) -> float:
    return float(model.score(test[["x"]], test["y"])) + 0 * info["rows"]


@step
def collect(scores: list[float], info: dict[str, Any]) -> dict[str, Any]:
    return {"best": max(scores), "n": len(scores), "rows": info["rows"]}


@pipeline
def churn(n: int = 40, c: float = 1.0):
    df = make_frame(n)
    train, test = split(df)
    info = stats(df)
    scores = [evaluate(fit(train, c=cv), test, info) for cv in (c, c * 10)]
    collect(scores, info)


def check_round_trip(result: PipelineResult, store: Store) -> None:
    """Outputs, params, logs and tags of a fresh run of ``churn(n=40)``."""
    assert result.ok and result.status == "FINISHED"
    frame = result.output("make_frame")
    assert isinstance(frame, pd.DataFrame) and len(frame) == 40
    pd.testing.assert_frame_equal(frame, make_frame.fn(40))
    train, test = result.output("split")
    assert (len(train), len(test)) == (30, 10)
    pd.testing.assert_frame_equal(result.output("split", "test"), test)
    model = result.output("fit")
    assert isinstance(model, LogisticRegression) and model.C == 1.0
    assert model.predict(test[["x"]]).shape == (10,)
    assert result.output("stats") == {"rows": 40, "mean": pytest.approx(frame["x"].mean())}
    assert result.output("collect") == {"best": pytest.approx(1.0, abs=0.5), "n": 2, "rows": 40}

    runs = step_runs(store, result.run_id)
    assert set(runs) == set(result.steps) == {
        "make_frame", "split", "stats", "fit", "fit_2", "evaluate", "evaluate_2", "collect"
    }  # fmt: skip
    fit_run = runs["fit_2"]
    assert fit_run.info.status == "FINISHED"
    assert fit_run.info.parent_run_id == result.run_id
    assert fit_run.params == {"c": "10.0"}
    assert runs["make_frame"].params == {"n": "40", "seed": "0"}
    assert fit_run.tags["opsloop.cache"] == "miss"
    assert fit_run.tags["opsloop.upstream"] == "split"
    files = artifacts(store, fit_run)
    assert files["logs/stderr.txt"] == b"fitting with C=10.0\n"
    assert files["logs/stdout.txt"] == b""
    assert (
        fit_run.tags["opsloop.output.output"]
        == hashlib.sha256(files["outputs/output.pkl"]).hexdigest()
    )
    frame_files = artifacts(store, runs["make_frame"])
    assert frame_files["logs/stdout.txt"] == b"making 40 rows\n"
    assert pd.read_parquet(io.BytesIO(frame_files["outputs/output.parquet"])).equals(frame)
    split_files = artifacts(store, runs["split"])
    assert {"outputs/train.parquet", "outputs/test.parquet"} <= set(split_files)
    assert float(runs["fit"].tags["opsloop.duration"]) > 0
    # the pipeline's own run: params, status, and the summary of every step
    from opsloop.tracking.service import TrackingService

    prun = TrackingService(store).get_run(result.run_id)
    assert prun.info.status == "FINISHED" and prun.params == {"n": "40", "c": "1.0"}
    assert prun.tags["opsloop.steps.finished"] == "8"
    summary = json.loads(artifacts(store, prun)["pipeline/steps.json"])
    by_name = {s["name"]: s for s in summary["steps"]}
    assert by_name["evaluate"]["inputs"][0]["step"] == "fit"
    assert by_name["evaluate"]["inputs"][0] == {
        "step": "fit",
        "output": "output",
        "sha256": runs["fit"].tags["opsloop.output.output"],
    }


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_round_trip_then_cache_hits(store: Store, executor: str) -> None:
    first = run(churn, {"n": 40}, store=store, executor=executor, max_workers=2)
    check_round_trip(first, store)
    assert not any(s.cache_hit for s in first.steps.values())

    second = run(churn, {"n": 40}, store=store, executor=executor, max_workers=2)
    assert all(s.cache_hit for s in second.steps.values())
    assert second.run_id != first.run_id
    runs = step_runs(store, second.run_id)
    assert len(runs) == 8
    for name, r in runs.items():
        assert r.info.status == "FINISHED"
        assert r.tags["opsloop.cache"] == "hit"
        assert r.tags["opsloop.cache.source_run"] == first.steps[name].run_id
    # a hit's outputs are the same blobs, and read back the same
    assert second.steps["fit"].outputs == first.steps["fit"].outputs
    pd.testing.assert_frame_equal(second.output("split", "train"), first.output("split", "train"))
    assert isinstance(second.output("fit"), LogisticRegression)
    assert artifacts(store, runs["fit"])["outputs/output.pkl"]


@sqlite_only
def test_changed_params_or_inputs_miss_the_cache(store: Store) -> None:
    run(churn, {"n": 40}, store=store, executor="inline")
    r = run(churn, {"n": 40, "c": 2.0}, store=store, executor="inline")
    hits = {name for name, s in r.steps.items() if s.cache_hit}
    # fit(c=2.0) and fit(c=20.0) are new, and so are the models fed to evaluate; the
    # scores come out the same, so collect's inputs are unchanged: it hits
    assert hits == {"make_frame", "split", "stats", "collect"}
    r = run(churn, {"n": 44, "c": 2.0}, store=store, executor="inline")
    # a different frame changes every input downstream of it
    assert not any(s.cache_hit for s in r.steps.values())


@sqlite_only
def test_cache_off_for_a_run_or_a_step(store: Store) -> None:
    counter = {"n": 0}

    @step(cache=False)
    def fresh(x: int) -> int:
        counter["n"] += 1
        return x

    @pipeline
    def p():
        fresh(1)
        make_frame(5)

    run(p, store=store, executor="inline")
    again = run(p, store=store, executor="inline")
    assert again.steps["make_frame"].cache_hit and not again.steps["fresh"].cache_hit
    assert step_runs(store, again.run_id)["fresh"].tags["opsloop.cache"] == "off"
    assert counter["n"] == 2
    with pytest.raises(NotFound):
        store.artifacts.stat(entry_path(again.steps["fresh"].cache_key or ""))

    forced = run(p, store=store, executor="inline", cache=False)
    assert not any(s.cache_hit for s in forced.steps.values())
    assert step_runs(store, forced.run_id)["make_frame"].tags["opsloop.cache"] == "off"
    # a forced run refreshes the cache for later runs
    assert run(p, store=store, executor="inline").steps["make_frame"].cache_hit


CODE = """
from opsloop.pipelines import pipeline, step

OFFSET = {offset}

def helper(x):
    return {helper}  # {comment}

@step
def compute(x):
    return helper(x) + OFFSET

@step
def double(y):
    return y * 2

@pipeline
def p(x: int = 1):
    double(compute(x))
"""


@sqlite_only
@pytest.mark.parametrize("executor", ["local", "inline"])
def test_code_changes_miss_the_cache(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"pl_code_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"

    def version(**kw: Any) -> Any:
        values = {"offset": 0, "helper": "x + 1", "comment": "first"} | kw
        path.write_text(textwrap.dedent(CODE.format(**values)))
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    def go(mod: Any) -> dict[str, tuple[bool, Any]]:
        r = run(mod.p, {"x": 1}, store=store, executor=executor)
        return {n: (s.cache_hit, r.output(n)) for n, s in r.steps.items()}

    assert go(version()) == {"compute": (False, 2), "double": (False, 4)}
    # comments and formatting are not code
    assert go(version(comment="edited")) == {"compute": (True, 2), "double": (True, 4)}
    # a helper the step calls changed: the step runs again (the workers get the new
    # code, not the module they may have imported before)
    assert go(version(helper="x + 2")) == {"compute": (False, 3), "double": (False, 6)}
    # a constant it reads changed
    assert go(version(helper="x + 2", offset=1)) == {"compute": (False, 4), "double": (False, 8)}
    # new code, same output: the step downstream still hits (its input hash is the same)
    assert go(version(helper="2 + x", offset=1)) == {"compute": (False, 4), "double": (True, 8)}


@sqlite_only
def test_dict_outputs_and_wrong_output_counts(store: Store) -> None:
    @step(outputs=("low", "high"))
    def bounds(x: int) -> dict[str, int]:
        return {"high": x + 1, "low": x - 1}

    @step(outputs=2)
    def wrong(x: int) -> tuple[int, ...]:
        return (x, x, x)

    @step
    def add(a: int, b: int) -> int:
        return a + b

    @pipeline
    def p():
        low, high = bounds(10)
        add(low, high)
        wrong(1)

    r = run(p, store=store, executor="inline", raise_on_failure=False)
    assert r.output("add") == 20
    assert r.output("bounds") == (9, 11)
    assert r.steps["wrong"].status == "FAILED"
    assert "declares 2 outputs ['0', '1'] but returned a tuple of 3 values" in (
        r.steps["wrong"].error or ""
    )


@sqlite_only
def test_stdout_is_echoed_too(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    @pipeline
    def p():
        make_frame(3, seed=1)

    run(p, store=store, executor="inline", cache=False)
    assert "making 3 rows" in capsys.readouterr().out
