"""Capturing the DAG from a pipeline's body, and refusing bad ones before anything runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from opsloop.errors import InvalidInput, NotFound
from opsloop.pipelines import Graph, pipeline, run, step
from opsloop.store import Store
from opsloop.tracking.service import TrackingService
from tests.pipelines.helpers import run_count

# Validation needs no second database: these run on SQLite only.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@step
def source(n: int) -> int:
    return n


@step
def inc(x: int, by: int = 1) -> int:
    return x + by


@step
def total(values: list[int], scale: float = 1.0) -> float:
    return sum(values) * scale


@step(outputs=2)
def halves(x: int) -> tuple[int, int]:
    return x // 2, x - x // 2


@step(outputs=("low", "high"))
def bounds(x: int) -> dict[str, int]:
    return {"low": x - 1, "high": x + 1}


@step
def use(value: Any) -> str:
    return repr(value)


@pipeline
def diamond(n: int = 3):
    a = source(n)
    left, right = halves(a)
    total([inc(left), inc(right, by=10), a])


def test_body_builds_a_dag_of_step_calls() -> None:
    g = diamond.build(n=4)
    assert list(g.nodes) == ["source", "halves", "inc", "inc_2", "total"]
    assert g.params == {"n": 4}
    assert g.nodes["total"].upstream == ["inc", "inc_2", "source"]
    assert g.nodes["inc_2"].arguments["by"] == 10
    order = g.validate()
    assert order.index("source") < order.index("halves") < order.index("inc") < order.index("total")


def test_named_outputs_unpack_and_have_attributes() -> None:
    @pipeline
    def p():
        b = bounds(source(1))
        low, high = b
        use([low, high, b.high])

    g = p.build()
    assert [i for _, i in g.nodes["use"].inputs] == [0, 1, 1]


def test_a_step_outside_a_pipeline_is_the_plain_function() -> None:
    assert inc(1, by=2) == 3
    assert halves(5) == (2, 3)


def test_misuse_of_outputs_is_explained() -> None:
    @pipeline
    def unpack_single():
        _a, _b = source(1)

    with pytest.raises(InvalidInput, match=r"outputs=2"):
        unpack_single.build()

    @pipeline
    def branch():
        if source(1):
            inc(1)

    with pytest.raises(InvalidInput, match="no value while the pipeline is being built"):
        branch.build()


def test_an_output_from_another_build_is_refused() -> None:
    leaked: list[Any] = []

    @pipeline
    def first():
        leaked.append(source(1))

    first.build()

    @pipeline
    def second():
        inc(leaked[0])

    with pytest.raises(InvalidInput, match="another pipeline build"):
        second.build()
    with pytest.raises(InvalidInput, match="outside a pipeline's body"):
        inc(leaked[0])


def test_step_options_are_checked_when_declared() -> None:
    def f() -> None: ...

    with pytest.raises(InvalidInput, match="retries"):
        step(retries=-1)(f)
    with pytest.raises(InvalidInput, match="timeout"):
        step(timeout=0)(f)
    with pytest.raises(InvalidInput, match="output name"):
        step(outputs=("ok", "not ok"))(f)
    fast = inc.options(name="fast", retries=3)
    assert (fast.name, fast.retries, fast.fn) == ("fast", 3, inc.fn)


def _nothing_recorded(store: Store, experiment: str) -> None:
    assert run_count(store) == 0
    with pytest.raises(NotFound):
        TrackingService(store).get_experiment_by_name(experiment)


@sqlite_only
def test_missing_argument_is_refused_before_anything_runs(store: Store) -> None:
    @pipeline
    def missing_arg():
        inc()

    with pytest.raises(InvalidInput, match=r"step 'inc' in pipeline 'missing_arg'.*'x'"):
        run(missing_arg, store=store, executor="inline")
    _nothing_recorded(store, "missing_arg")


@sqlite_only
def test_missing_input_is_refused_before_anything_runs(store: Store) -> None:
    g = Graph("dangling")
    g.add(source, 1)
    g.add(inc, g.ref("sourc"))
    with pytest.raises(InvalidInput, match=r"step 'inc' takes its input 'x' from step 'sourc'"):
        run(g, store=store)
    g2 = Graph("bad_output")
    g2.add(inc, g2.ref("halves", 5))
    g2.add(halves, 4)
    with pytest.raises(InvalidInput, match=r"output 5 of step 'halves'"):
        run(g2, store=store)
    _nothing_recorded(store, "dangling")


@sqlite_only
def test_cycle_is_refused_before_anything_runs(store: Store) -> None:
    g = Graph("loop")
    g.add(source, 1)
    g.add(inc.options(name="a"), g.ref("c"))
    g.add(inc.options(name="b"), g.ref("a"))
    g.add(inc.options(name="c"), g.ref("b"))
    with pytest.raises(InvalidInput, match=r"form a cycle: a -> b -> c -> a"):
        run(g, store=store)
    selfish = Graph("self")
    selfish.add(inc.options(name="me"), selfish.ref("me"))
    with pytest.raises(InvalidInput, match=r"cycle: me -> me"):
        run(selfish, store=store)
    _nothing_recorded(store, "loop")


@sqlite_only
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_unstorable_arguments_are_refused_before_anything_runs(
    store: Store, tmp_path: Path, executor: str
) -> None:
    @pipeline
    def takes(value: Any):
        use(value)

    @pipeline
    def beside_an_output(value: Any):
        use([source(1), value])

    with (
        open(tmp_path / "f.txt", "w") as fh,
        pytest.raises(
            InvalidInput, match=r"step 'use': argument 'value' \(TextIOWrapper\) cannot be stored"
        ),
    ):
        run(takes, {"value": fh}, store=store, executor=executor)
    lock = threading.Lock()
    with pytest.raises(InvalidInput, match=r"step 'use': argument 'value' \(function\).*lock"):
        run(takes, {"value": lambda: lock}, store=store, executor=executor)
    with pytest.raises(InvalidInput, match=r"step 'use': argument 'value'.*cannot be stored"):
        run(beside_an_output, {"value": threading.Lock()}, store=store, executor=executor)
    _nothing_recorded(store, "takes")


@sqlite_only
def test_code_that_cannot_reach_a_worker_is_refused(store: Store) -> None:
    lock = threading.Lock()

    @step
    def locked() -> int:
        with lock:
            return 1

    @pipeline
    def p():
        locked()

    with pytest.raises(InvalidInput, match=r"step 'locked' cannot be sent to a worker process"):
        run(p, store=store, executor="local")
    assert run(p, store=store, executor="inline").output("locked") == 1


def test_empty_pipeline_and_bad_params_are_refused() -> None:
    @pipeline
    def empty(n: int):
        pass

    with pytest.raises(InvalidInput, match="has no steps"):
        empty.build(n=1)
    with pytest.raises(InvalidInput, match=r"pipeline 'empty'.*'n'"):
        empty.build()
    with pytest.raises(InvalidInput, match="unexpected keyword"):
        empty.build(n=1, m=2)


def test_pipelines_compose() -> None:
    @pipeline
    def inner(x: int):
        return inc(source(x))

    @pipeline
    def outer():
        total([inner(1), inner(2)])

    g = outer.build()
    assert list(g.nodes) == ["source", "inc", "source_2", "inc_2", "total"]
