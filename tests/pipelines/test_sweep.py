"""Hyper-parameter sweeps: grids, random search, tracking, best trial, failures, cache."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from opsloop.errors import InvalidInput, OpsloopError
from opsloop.pipelines import (
    SweepFailed,
    SweepOutputs,
    pipeline,
    run,
    step,
    sweep,
)
from opsloop.store import Store
from opsloop.tracking.service import TrackingService
from tests.pipelines.helpers import run_count, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})


@step
def fit(df: pd.DataFrame, lr: float, depth: int = 1) -> dict[str, Any]:
    """A stand-in for training: accuracy peaks at lr=0.1, depth=5."""
    print(f"fit lr={lr} depth={depth}")
    accuracy = 1.0 - abs(lr - 0.1) - abs(depth - 5) / 10
    return {"accuracy": accuracy, "loss": 1.0 - accuracy, "rows": len(df), "tag": "ok"}


@step
def quadratic(x: float, shift: float = 0.0) -> float:
    return (x - shift) ** 2


@step
def fragile(x: int) -> float:
    if x < 0:
        raise ValueError(f"x must be >= 0, got {x}")
    return float(x)


@step
def varies(x: int) -> Any:
    # x=1 returns no "score"; x=2 a score that is not a number; x=3 no dict at all.
    return {1: {"other": 1.0}, 2: {"score": "high"}, 3: [1, 2]}.get(x, {"score": x / 10})


@step(outputs=("model", "score"))
def named(c: float) -> tuple[str, float]:
    return f"model-c{c}", -abs(c - 1.0)


@step
def with_kwargs(base: int, **extra: Any) -> float:
    return float(base + sum(extra.values()))


def trial_params(result: Any) -> list[dict[str, Any]]:
    return [t.params for t in result.trials]


# -- grids and names ---------------------------------------------------------------------


@sqlite_only
def test_a_grid_runs_every_combination_in_grid_order(store: Store) -> None:
    r = sweep(
        fit,
        {"lr": [0.01, 0.1], "depth": [3, 5]},
        metric="accuracy",
        executor="inline",
        store=store,
        df=FRAME,
    )
    assert r.ok and r.name == "fit-sweep" and r.step == "fit"
    assert [t.name for t in r.trials] == [
        "fit[lr=0.01,depth=3]",
        "fit[lr=0.01,depth=5]",
        "fit[lr=0.1,depth=3]",
        "fit[lr=0.1,depth=5]",
    ]
    assert trial_params(r) == [
        {"lr": 0.01, "depth": 3},
        {"lr": 0.01, "depth": 5},
        {"lr": 0.1, "depth": 3},
        {"lr": 0.1, "depth": 5},
    ]
    assert r.best is not None and r.best.params == {"lr": 0.1, "depth": 5}
    assert r.best.objective == pytest.approx(1.0)
    assert r.best.value == {"accuracy": 1.0, "loss": 0.0, "rows": 4, "tag": "ok"}
    assert r.trials[0].metrics == pytest.approx({"accuracy": 0.71, "loss": 0.29, "rows": 4.0})

    frame = r.to_frame()
    assert list(frame.columns) == [
        "trial",
        "lr",
        "depth",
        "accuracy",
        "status",
        "run_id",
        "cache_hit",
        "duration",
        "error",
    ]
    assert frame["accuracy"].tolist() == pytest.approx([0.71, 0.91, 0.8, 1.0])
    assert frame["status"].unique().tolist() == ["FINISHED"]


@step
def labelled(base: int, **texts: str) -> float:
    return float(base + sum(len(t) for t in texts.values()))


@sqlite_only
def test_trial_names_stay_short_and_distinct(store: Store) -> None:
    long = "x" * 300
    r = sweep(
        labelled,
        {"base": [1, 2], "a_rather_long_parameter_name": [long, long + "y"]},
        executor="inline",
        store=store,
    )
    names = [t.name for t in r.trials]
    assert len(set(names)) == 4
    assert names[0] == f"labelled[base=1,a_rather_long_parameter_name={'x' * 39}…]"
    assert names[1] == names[0] + "_2"  # labels cut alike: the graph tells them apart
    assert r.best is not None and r.best.params == {
        "base": 2,
        "a_rather_long_parameter_name": long + "y",
    }

    wide = sweep(
        labelled,
        {"base": [1], **{f"k{i}": ["y" * 50] for i in range(8)}},
        executor="inline",
        store=store,
    )
    (only,) = wide.trials
    assert len(only.name) == 200 and only.name.endswith("…]")
    assert only.objective == 1 + 8 * 50


@sqlite_only
def test_numpy_arrays_and_ranges_make_grids_of_plain_numbers(store: Store) -> None:
    r = sweep(
        quadratic,
        {"x": np.linspace(0.0, 1.0, 3), "shift": range(2)},
        executor="inline",
        store=store,
    )
    assert trial_params(r)[:3] == [
        {"x": 0.0, "shift": 0},
        {"x": 0.0, "shift": 1},
        {"x": 0.5, "shift": 0},
    ]
    assert all(type(p["x"]) is float for p in trial_params(r))
    assert r.trials[2].name == "quadratic[x=0.5,shift=0]"


# -- random search -----------------------------------------------------------------------


@sqlite_only
def test_random_search_over_a_grid_is_reproducible_with_its_seed(store: Store) -> None:
    grid = {"x": [0, 1, 2, 3, 4, 5], "shift": [0.0, 0.5, 1.0]}
    a = sweep(quadratic, grid, samples=5, sample_seed=7, executor="inline", store=store)
    b = sweep(quadratic, grid, samples=5, sample_seed=7, executor="inline", store=store)
    c = sweep(quadratic, grid, samples=5, sample_seed=8, executor="inline", store=store)
    assert len(a.trials) == 5
    assert trial_params(a) == trial_params(b)
    assert trial_params(a) != trial_params(c)
    points = [(p["x"], p["shift"]) for p in trial_params(a)]
    assert len(set(points)) == 5  # drawn without replacement, in grid order
    assert points == sorted(points, key=lambda p: (p[0], grid["shift"].index(p[1])))
    assert all(t.cache_hit for t in b.trials)  # same points: the same step runs

    everything = sweep(quadratic, grid, samples=100, executor="inline", store=store)
    assert len(everything.trials) == 18  # no more points than the grid has


@sqlite_only
def test_random_search_over_distributions(store: Store) -> None:
    grid = {"x": scipy.stats.uniform(2, 3), "shift": [0.0, 1.0]}  # x in [2, 5]
    a = sweep(quadratic, grid, samples=4, mode="min", executor="inline", store=store)
    b = sweep(quadratic, grid, samples=4, mode="min", executor="inline", store=store)
    xs = [p["x"] for p in trial_params(a)]
    assert xs == [p["x"] for p in trial_params(b)]
    assert all(type(x) is float and 2 <= x <= 5 for x in xs)  # numpy scalars made plain
    assert len(set(xs)) == 4
    assert a.best is not None
    assert a.best.objective == min(t.objective for t in a.trials if t.objective is not None)
    logged = TrackingService(store).get_run(a.run_id).params
    assert logged["grid.x"] == "uniform(2, 3)" and logged["samples"] == "4"
    assert logged["sample_seed"] == "0"


# -- tracking and best ---------------------------------------------------------------------


def test_each_trial_is_a_tracked_run_with_its_params_and_metrics(store: Store) -> None:
    r = sweep(
        fit,
        {"lr": [0.01, 0.1], "depth": [3, 5]},
        metric="loss",
        mode="min",
        executor="inline",
        store=store,
        experiment="tuning",
        df=FRAME,
    )
    runs = step_runs(store, r.run_id)
    assert set(runs) == {t.name for t in r.trials}
    for t in r.trials:
        run_ = runs[t.name]
        assert run_.info.run_id == t.run_id
        assert run_.info.status == "FINISHED"
        assert run_.params["lr"] == str(t.params["lr"])
        assert run_.params["depth"] == str(t.params["depth"])
        assert run_.params["df"].startswith("<DataFrame sha256:")
        assert run_.metrics_dict == pytest.approx(t.metrics)
        assert "loss" in run_.metrics_dict and "tag" not in run_.metrics_dict
    svc = TrackingService(store)
    parent = svc.get_run(r.run_id)
    assert svc.get_experiment(parent.info.experiment_id).name == "tuning"
    assert r.best is not None and r.best.params == {"lr": 0.1, "depth": 5}
    assert parent.tags["opsloop.sweep.best_run"] == r.best.run_id
    assert parent.tags["opsloop.sweep.best_trial"] == "fit[lr=0.1,depth=5]"
    assert parent.tags["opsloop.sweep"] == "fit"
    assert parent.params["best_lr"] == "0.1" and parent.params["best_depth"] == "5"
    assert parent.params["grid.lr"] == "[0.01, 0.1]" and parent.params["mode"] == "min"
    assert parent.metrics_dict == pytest.approx({"best_loss": 0.0})


@sqlite_only
def test_best_by_max_and_min_of_a_numeric_result(store: Store) -> None:
    grid = {"x": [3, -1, 2, -4]}
    high = sweep(quadratic, grid, executor="inline", store=store)
    low = sweep(quadratic, grid, mode="min", executor="inline", store=store)
    assert high.metric == "objective"
    assert high.best is not None and high.best.params == {"x": -4}
    assert low.best is not None and low.best.params == {"x": -1}
    assert TrackingService(store).get_run(low.best.run_id or "").metrics_dict == {"objective": 1}
    # a metric name for a numeric result names its metric
    named_ = sweep(quadratic, grid, metric="sq", mode="min", executor="inline", store=store)
    assert named_.best is not None and named_.best.metrics == {"sq": 1.0}
    assert "sq" in named_.to_frame().columns


@sqlite_only
def test_a_named_output_can_be_the_metric(store: Store) -> None:
    r = sweep(named, {"c": [0.5, 1.0, 3.0]}, metric="score", executor="inline", store=store)
    assert r.best is not None and r.best.params == {"c": 1.0}
    assert r.best.value == ("model-c1.0", -0.0)
    assert r.best.metrics == {"score": 0.0}


@sqlite_only
def test_a_trial_without_the_metric_says_so_and_does_not_count(store: Store) -> None:
    r = sweep(varies, {"x": [1, 2, 3, 4, 5]}, metric="score", executor="inline", store=store)
    assert r.ok
    notes = {t.params["x"]: t.note for t in r.trials}
    assert notes[1] == "no objective: the result has no 'score' (its keys: 'other')"
    assert notes[2] == "no objective: its 'score' is a str, not a number"
    assert notes[3] == (
        "no objective: the trial returned a list, neither a number nor a dict with 'score'"
    )
    assert notes[4] is None and notes[5] is None
    assert [t.objective for t in r.trials] == [None, None, None, 0.4, 0.5]
    assert r.best is not None and r.best.params == {"x": 5}
    assert r.to_frame()["error"].tolist()[:3] == [notes[1], notes[2], notes[3]]

    no_metric = sweep(varies, {"x": [4, 5]}, executor="inline", store=store)
    assert no_metric.best is None
    assert all("pass metric=" in (t.note or "") for t in no_metric.trials)
    assert "opsloop.sweep.best_run" not in TrackingService(store).get_run(no_metric.run_id).tags


# -- failures --------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_failed_trial_does_not_stop_the_others(store: Store, executor: str) -> None:
    r = sweep(fragile, {"x": [2, -1, 5]}, executor=executor, max_workers=2, store=store)
    assert not r.ok
    assert [t.status for t in r.trials] == ["FINISHED", "FAILED", "FINISHED"]
    (bad,) = r.failed
    assert bad.params == {"x": -1} and bad.objective is None
    assert bad.error == "ValueError: x must be >= 0, got -1"
    assert r.best is not None and r.best.params == {"x": 5}
    assert r.result.status == "FAILED"  # the sweep's run says a trial failed
    with pytest.raises(InvalidInput, match="it is FAILED"):
        _ = bad.value
    runs = step_runs(store, r.run_id)
    assert runs["fragile[x=-1]"].info.status == "FAILED"
    assert runs["fragile[x=5]"].metrics_dict == {"objective": 5.0}


@sqlite_only
def test_a_sweep_whose_every_trial_failed_raises(store: Store) -> None:
    with pytest.raises(SweepFailed) as info:
        sweep(fragile, {"x": [-1, -2]}, executor="inline", store=store)
    exc = info.value
    assert isinstance(exc, OpsloopError) and exc.exit_code == 1
    assert [t.status for t in exc.sweep.trials] == ["FAILED", "FAILED"]
    assert exc.result.run_id == exc.sweep.run_id
    assert "every trial of sweep 'fragile-sweep' failed (2 trials)" in str(exc)
    assert "trial 'fragile[x=-1]': ValueError: x must be >= 0, got -1" in str(exc)


# -- executors and the cache ---------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_the_same_sweep_again_comes_from_the_cache(store: Store, executor: str) -> None:
    grid = {"lr": [0.01, 0.1], "depth": [3, 5]}
    first = sweep(
        fit, grid, metric="accuracy", executor=executor, max_workers=2, store=store, df=FRAME
    )
    assert first.ok and not any(t.cache_hit for t in first.trials)
    again = sweep(
        fit, grid, metric="accuracy", executor=executor, max_workers=2, store=store, df=FRAME
    )
    assert all(t.cache_hit for t in again.trials)
    assert [t.objective for t in again.trials] == [t.objective for t in first.trials]
    assert again.best is not None and again.best.params == {"lr": 0.1, "depth": 5}
    assert again.run_id != first.run_id
    # a cached trial is a run of its own, with its metrics
    assert step_runs(store, again.run_id)[again.best.name].metrics_dict["accuracy"] == 1.0

    fresh = sweep(
        fit, grid, metric="accuracy", executor=executor, cache=False, store=store, df=FRAME
    )
    assert not any(t.cache_hit for t in fresh.trials)


# -- inside a pipeline -----------------------------------------------------------------------


@step
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [float(i) for i in range(n)]})


@step
def pick(results: list[dict[str, Any]], params: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["accuracy"] for r in results]
    i = scores.index(max(scores))
    return {"params": params[i], "accuracy": scores[i]}


@pipeline
def tune(n: int = 4):
    trials = sweep(fit, {"lr": [0.01, 0.1], "depth": [3, 5]}, df=frame(n))
    pick(trials, params=trials.params)


@sqlite_only
def test_inside_a_pipeline_the_trials_join_the_graph(store: Store) -> None:
    graph = tune.build()
    assert list(graph.nodes) == [
        "frame",
        "fit[lr=0.01,depth=3]",
        "fit[lr=0.01,depth=5]",
        "fit[lr=0.1,depth=3]",
        "fit[lr=0.1,depth=5]",
        "pick",
    ]
    assert graph.nodes["pick"].upstream == list(graph.nodes)[1:5]
    r = run(tune, store=store, executor="inline")
    assert r.output("pick") == {"params": {"lr": 0.1, "depth": 5}, "accuracy": 1.0}
    assert set(step_runs(store, r.run_id)) == set(graph.nodes)


def test_inside_a_pipeline_the_run_options_are_refused() -> None:
    seen: list[Any] = []

    @pipeline
    def p():
        seen.append(sweep(quadratic, {"x": [1, 2]}))
        sweep(quadratic, {"x": [1, 2]}, metric="objective", executor="inline")

    with pytest.raises(InvalidInput, match=r"executor, metric do not apply there"):
        p.build()
    assert isinstance(seen[0], SweepOutputs)
    assert seen[0].params == [{"x": 1}, {"x": 2}]
    assert seen[0].names == ["quadratic[x=1]", "quadratic[x=2]"]


def test_grid_values_may_be_step_outputs_inside_a_pipeline() -> None:
    @pipeline
    def p():
        small, large = frame(2), frame(10)
        sweep(fit, {"df": [small, large]}, lr=0.1)

    assert list(p.build().nodes)[2:] == ["fit[df=frame]", "fit[df=frame_2]"]


# -- bad input, refused before anything runs --------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("grid", "options", "message"),
    [
        ({}, {}, r"needs a grid: a non-empty dict"),
        ([("lr", [1])], {}, r"needs a grid"),
        ({"lr": []}, {}, r"grid key 'lr' must map to a non-empty list"),
        ({"lr": 0.1}, {}, r"grid key 'lr' must map to a non-empty list"),
        ({"lr": "0.1"}, {}, r"grid key 'lr' must map to a non-empty list"),
        ({"lr": {0.1, 0.2}}, {}, r"grid key 'lr' must map to a non-empty list"),
        ({"lr": [0.1], "layers": [1]}, {}, r"grid key 'layers' is not a parameter of the step"),
        ({"lr": [0.1], "depth": [1]}, {"depth": 2}, r"'depth' is given both in the grid"),
        ({"lr": [0.1]}, {"mode": "best"}, r"mode must be 'max' or 'min'"),
        ({"lr": [0.1]}, {"samples": 0}, r"samples must be an integer >= 1"),
        ({"lr": [0.1]}, {"samples": 10_001}, r"samples must be at most 10000"),
        ({"lr": iter([0.1])}, {}, r"grid key 'lr' must map to a non-empty list"),
        ({"lr": [0.1]}, {"metric": "a=b"}, r"invalid metric name 'a=b'"),
        ({"lr": scipy.stats.uniform(0, 1)}, {}, r"grid key 'lr' is a distribution; give samples"),
        ({"depth": [1]}, {}, r"missing a required argument: 'lr'"),
        ({"lr": [0.1]}, {"colour": 1}, r"unexpected keyword argument 'colour'"),
        ({"lr": list(range(200)), "depth": list(range(100))}, {}, r"give samples=N"),
    ],
)
def test_bad_input_is_refused_naming_the_key(
    store: Store, grid: Any, options: dict[str, Any], message: str
) -> None:
    options = {"df": FRAME, **options}
    with pytest.raises(InvalidInput, match=message):
        sweep(fit, grid, executor="inline", store=store, **options)
    assert run_count(store) == 0


def test_an_argument_given_twice_or_not_a_step_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'lr' is given both in fixed and as a keyword"):
        sweep(fit, {"depth": [1]}, fixed={"lr": 0.1}, lr=0.2, df=FRAME)
    with pytest.raises(InvalidInput, match="'depth' is given both in the grid and as a fixed"):
        sweep(fit, {"depth": [1]}, fixed={"depth": 2}, lr=0.2, df=FRAME)
    with pytest.raises(InvalidInput, match="sweep needs a @step function"):
        sweep(tune, {"n": [1]})
    with pytest.raises(InvalidInput, match="outside a pipeline's body"):
        sweep(fit, {"lr": [0.1]}, df=tune.build().ref("frame"))


@sqlite_only
def test_fixed_arguments_and_kwargs_steps(store: Store) -> None:
    @step
    def odd(x: int, mode: str = "a") -> float:
        return float(len(mode * x))

    r = sweep(odd, {"x": [1, 3]}, fixed={"mode": "bb"}, mode="min", store=store, executor="inline")
    assert [t.objective for t in r.trials] == [2.0, 6.0]
    assert r.best is not None and r.best.params == {"x": 1}

    k = sweep(with_kwargs, {"base": [1], "y": [10, 20]}, z=100, executor="inline", store=store)
    assert [t.objective for t in k.trials] == [111.0, 121.0]
    run_ = step_runs(store, k.run_id)["with_kwargs[base=1,y=20]"]
    assert (run_.params["y"], run_.params["z"]) == ("20", "100")
    assert math.isclose(k.best.objective if k.best else 0, 121.0)


def test_the_package_exports_the_function_under_the_module_s_name() -> None:
    import importlib

    import opsloop
    import opsloop.pipelines

    module = importlib.import_module("opsloop.pipelines.sweep")  # imported: no effect
    assert opsloop.pipelines.sweep is module.sweep is opsloop.sweep
