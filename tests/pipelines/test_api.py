"""The module-level API on the embedded store (``OPSLOOP_HOME``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import opsloop
import opsloop.pipelines
from opsloop.errors import InvalidInput, NotFound
from opsloop.pipelines import Graph, PipelineFailed, pipeline, step
from opsloop.store import default_store
from tests.pipelines.helpers import step_runs


@step
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x


@step
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise KeyError(x)
    return x


@pipeline
def doubler(x: int = 2):
    double(double(x))


def test_calling_a_pipeline_runs_it_on_the_default_store(home: Path) -> None:
    r = doubler(x=3)
    assert r.ok and r.output("double_2") == 12
    assert r.steps["double"].run_id is not None
    runs = opsloop.search_runs(["doubler"])
    assert len(runs) == 3  # the pipeline's run and one per step
    pipeline_run = opsloop.get_run(r.run_id)
    assert pipeline_run.params == {"x": "3"}
    assert pipeline_run.info.run_name == "doubler"
    steps = step_runs(default_store(), r.run_id)
    assert steps["double"].params == {"x": "3"}
    assert steps["double_2"].params == {}  # its argument is an input, not a param
    assert steps["double_2"].tags["opsloop.upstream"] == "double"
    assert (home / "opsloop.db").exists()

    again = opsloop.pipelines.run(doubler, {"x": 3}, executor="inline")
    assert [s.cache_hit for s in again.steps.values()] == [True, True]
    assert again.output("double") == 6
    print(again.summary())
    assert "cached" in again.summary()


def test_pipeline_options_experiment_and_graph(home: Path) -> None:
    @pipeline(name="nightly", experiment="team-x")
    def p(bad: int):
        fail_on(double(1), bad=bad)

    r = p.run({"bad": 99}, executor="inline")
    assert r.name == "nightly"
    assert opsloop.get_run(r.run_id).info.experiment_id == r.experiment_id
    assert [x.info.run_id for x in opsloop.search_runs(["team-x"]) if x.info.run_id == r.run_id]

    with pytest.raises(PipelineFailed) as info:
        p(bad=2)
    assert info.value.result.failed_steps == ["fail_on"]
    assert "KeyError: 2" in str(info.value)
    with pytest.raises(InvalidInput, match="FAILED"):
        info.value.result.output("fail_on")
    with pytest.raises(NotFound):
        info.value.result.output("nope")

    g = Graph("by-hand")
    g.add(double, g.ref("fail_on"))
    g.add(fail_on, 5, bad=0)
    assert opsloop.pipelines.run(g, executor="inline").output("double") == 10
    with pytest.raises(InvalidInput, match="unknown executor"):
        opsloop.pipelines.run(g, executor="ray-someday")
