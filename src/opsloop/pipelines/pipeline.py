"""``@pipeline``: a function whose body wires steps together.

Calling a pipeline runs it (see ``runner.run``): its body runs once, here, to capture
the graph of step calls (``graph``), and then the steps run. Inside another pipeline's
body, a pipeline adds its steps to the outer graph instead, so pipelines compose.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from opsloop.errors import InvalidInput
from opsloop.pipelines.graph import Graph, building, current_graph

if TYPE_CHECKING:
    from opsloop.pipelines.result import PipelineResult


class Pipeline:
    """A pipeline function; made by ``@opsloop.pipeline``.

    Example::

        @opsloop.pipeline
        def churn(path: str, lr: float = 0.1):
            train_df, test_df = split(load(path))
            evaluate(train(train_df, lr=lr), test_df)

        result = churn(path="churn.csv")        # runs it
        graph = churn.build(path="churn.csv")   # only captures the graph
    """

    def __init__(
        self, fn: Callable[..., Any], *, name: str | None = None, experiment: str | None = None
    ) -> None:
        if not callable(fn):
            raise InvalidInput(f"@pipeline needs a function, got {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = name or getattr(fn, "__name__", None) or "pipeline"
        self.experiment = experiment
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput(f"a pipeline name must be a non-empty string, got {name!r}")

    @property
    def __opsloop_fn__(self) -> Callable[..., Any]:
        return self.fn

    def _bind(self, args: tuple[Any, ...], params: dict[str, Any]) -> inspect.BoundArguments:
        try:
            bound = inspect.signature(self.fn).bind(*args, **params)
        except TypeError as exc:
            raise InvalidInput(f"pipeline {self.name!r}: {exc}") from None
        bound.apply_defaults()
        return bound

    def build(self, *args: Any, **params: Any) -> Graph:
        """Run the body to capture the graph of step calls, and check it; runs no step.

        Example::

            graph = churn.build(path="churn.csv")
            list(graph.nodes)     # ["load", "split", "train", "evaluate"]
        """
        bound = self._bind(args, params)
        graph = Graph(self.name, dict(bound.arguments))
        graph.experiment = self.experiment
        with building(graph):
            self.fn(*bound.args, **bound.kwargs)
        graph.validate()
        return graph

    def __call__(self, *args: Any, **params: Any) -> Any:
        """Run the pipeline with these params (inside another pipeline: add its steps).

        Example::

            result = churn(path="churn.csv", lr=0.01)
        """
        if current_graph() is not None:
            bound = self._bind(args, params)
            return self.fn(*bound.args, **bound.kwargs)
        from opsloop.pipelines.runner import run

        return run(self.build(*args, **params))

    def run(self, params: dict[str, Any] | None = None, **options: Any) -> PipelineResult:
        """Run with runner options (``executor``, ``max_workers``, ``cache``, ...).

        Example::

            churn.run({"path": "churn.csv"}, executor="inline")
        """
        from opsloop.pipelines.runner import run

        return run(self, params, **options)

    def __repr__(self) -> str:
        return f"<pipeline {self.name!r}>"


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(
    *, name: str | None = None, experiment: str | None = None
) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    experiment: str | None = None,
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make a function a pipeline: its body calls steps, and calling it runs them.

    ``name`` defaults to the function's; ``experiment`` (the experiment its runs go
    to) defaults to the pipeline's name.

    Example::

        @opsloop.pipeline
        def churn(path: str):
            df = load(path)
            train(df, lr=0.1)

        @opsloop.pipeline(name="churn-nightly", experiment="churn")
        def nightly():
            churn("s3://bucket/today.csv")
    """
    if fn is not None:
        return Pipeline(fn, name=name, experiment=experiment)

    def decorate(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name, experiment=experiment)

    return decorate
