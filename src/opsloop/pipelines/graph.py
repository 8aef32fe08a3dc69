"""The DAG of a pipeline: step invocations and the outputs that connect them.

A pipeline's body does not compute anything: while it runs, calling a step adds a
``Node`` to the ``Graph`` being built and returns ``Output`` placeholders, which other
step calls take as arguments. That is how the DAG is captured - by running the body
once, in the process that starts the pipeline, before any step runs.

The graph can also be built by hand (``Graph.add``, ``Graph.ref``), which is what code
that reads pipelines from configuration will do; forward references by name make
cycles and dangling inputs possible there, so ``Graph.validate`` checks for both.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    from opsloop.pipelines.steps import Step

_graph_ids = itertools.count(1)
_building: ContextVar[Graph | None] = ContextVar("opsloop_pipeline_graph", default=None)


class Output:
    """A placeholder for one output of a step, while the pipeline is being built.

    Pass it to other steps; the value arrives when the pipeline runs. It has no value
    during the build, so it cannot be tested, iterated or indexed.

    Example::

        @opsloop.pipeline
        def churn():
            df = load("s3://bucket/churn.csv")     # an Output
            train(df, lr=0.1)
    """

    __slots__ = ("graph_id", "index", "node")

    def __init__(self, node: str, index: int | str = 0, graph_id: int | None = None) -> None:
        self.node = node
        self.index = index
        self.graph_id = graph_id

    def __repr__(self) -> str:
        return f"<output {self.index!r} of step {self.node!r}>"

    def _unknown(self, what: str) -> NoReturn:
        raise InvalidInput(
            f"{what} the output of step {self.node!r}: it has no value while the pipeline "
            "is being built. Move that logic into a step"
        )

    def __bool__(self) -> bool:
        self._unknown("cannot test")

    def __iter__(self) -> Iterator[Any]:
        raise InvalidInput(
            f"cannot unpack the output of step {self.node!r}: the step has one output. "
            "Declare several with @step(outputs=2) or @step(outputs=('train', 'test'))"
        )

    def __getitem__(self, key: Any) -> NoReturn:
        self._unknown("cannot index")

    def __len__(self) -> int:
        self._unknown("cannot take the length of")

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"it holds the output of step {self.node!r} inside a container other than a "
            "list, tuple or dict; pass step outputs directly or in one of those"
        )


@dataclass
class Node:
    """One step invocation in a graph."""

    name: str
    step: Step
    arguments: dict[str, Any]
    kinds: dict[str, inspect._ParameterKind]
    # The Output placeholders among the arguments, in a fixed order (argument order,
    # then depth first): the step's inputs.
    refs: list[Output] = field(default_factory=list)
    # Resolved at validation: for each ref, (upstream node, output position).
    inputs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def upstream(self) -> list[str]:
        """The nodes this one takes inputs from, each once, in input order."""
        return list(dict.fromkeys(n for n, _ in self.inputs))

    def input_arguments(self) -> set[str]:
        """The argument names whose value holds a step output."""
        return {
            name
            for name, value in self.arguments.items()
            if next(_refs_in(value), None) is not None
        }


def _refs_in(value: Any) -> Iterator[Output]:
    if isinstance(value, Output):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _refs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs_in(item)


def refs_in(value: Any) -> list[Output]:
    """The step outputs inside an argument value (in lists, tuples and dict values).

    Example::

        >>> refs_in([Output("a"), 3, {"x": Output("b")}])
        [<output 0 of step 'a'>, <output 0 of step 'b'>]
    """
    return list(_refs_in(value))


class Graph:
    """A DAG of step invocations.

    ``@opsloop.pipeline`` builds one from the pipeline's body; it can also be built by
    hand and run with ``opsloop.pipelines.run(graph)``.

    Example::

        g = Graph("churn")
        df = g.add(load, "churn.csv")
        g.add(train, df, lr=0.1)
        g.add(report, g.ref("train"))      # a reference by node name
        result = opsloop.pipelines.run(g)
    """

    def __init__(self, name: str = "pipeline", params: dict[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"a pipeline name must be a non-empty string, got {name!r}")
        self.name = name
        self.params: dict[str, Any] = dict(params or {})
        # The experiment its runs go to (None: the one named after the pipeline).
        self.experiment: str | None = None
        self.nodes: dict[str, Node] = {}
        self.id = next(_graph_ids)
        self._taken: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} steps>"

    def _unique(self, name: str) -> str:
        n = self._taken.get(name, 0)
        while True:
            n += 1
            candidate = name if n == 1 else f"{name}_{n}"
            if candidate not in self.nodes:
                self._taken[name] = n
                return candidate

    def add(self, step: Step, /, *args: Any, **kwargs: Any) -> Any:
        """Add a call of ``step``; returns its Output (or a tuple of them).

        A step added twice gets the names ``train``, ``train_2``, ...

        Example::

            train_df, test_df = g.add(split, df, frac=0.8)    # @step(outputs=2)
        """
        from opsloop.pipelines.steps import Step

        if not isinstance(step, Step):
            raise InvalidInput(
                f"{step!r} is not a step; decorate the function with @opsloop.step first"
            )
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"step {step.name!r} in pipeline {self.name!r}: {exc}") from None
        bound.apply_defaults()
        name = self._unique(step.name)
        params = step.signature.parameters
        arguments = dict(bound.arguments)
        node = Node(
            name,
            step,
            arguments,
            {a: params[a].kind for a in arguments},
            [r for value in arguments.values() for r in _refs_in(value)],
        )
        for ref in node.refs:
            if ref.graph_id is not None and ref.graph_id != self.id:
                raise InvalidInput(
                    f"step {name!r} in pipeline {self.name!r} takes the output of step "
                    f"{ref.node!r} from another pipeline build; pass outputs between steps "
                    "only inside one pipeline"
                )
        self.nodes[name] = node
        outs = tuple(Output(name, i, self.id) for i in range(len(step.output_names)))
        if not step.multi:
            return outs[0]
        if step.outputs_type is not None:
            return step.outputs_type(*outs)
        return outs

    def ref(self, node: str, output: int | str = 0) -> Output:
        """A reference to an output of the node named ``node``, which may be added later.

        Example::

            g.add(report, g.ref("split", "test"))
        """
        return Output(node, output, self.id)

    # -- checks ---------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Check every input and the absence of cycles; returns the nodes in run order.

        Raises ``InvalidInput`` naming the step at fault.

        Example::

            order = graph.validate()     # ["load", "split", "train", "report"]
        """
        if not self.nodes:
            raise InvalidInput(
                f"pipeline {self.name!r} has no steps: call at least one @step function in it"
            )
        for node in self.nodes.values():
            node.inputs = []
            for arg, value in node.arguments.items():
                for ref in _refs_in(value):
                    node.inputs.append((ref.node, self._resolve(node, arg, ref)))
        return self._order()

    def _resolve(self, node: Node, arg: str, ref: Output) -> int:
        up = self.nodes.get(ref.node)
        if up is None:
            known = ", ".join(repr(n) for n in self.nodes) or "none"
            raise InvalidInput(
                f"step {node.name!r} takes its input {arg!r} from step {ref.node!r}, which is "
                f"not in pipeline {self.name!r} (its steps: {known})"
            )
        names = up.step.output_names
        if isinstance(ref.index, int) and not isinstance(ref.index, bool):
            if 0 <= ref.index < len(names):
                return ref.index
        elif isinstance(ref.index, str) and ref.index in names:
            return names.index(ref.index)
        raise InvalidInput(
            f"step {node.name!r} takes its input {arg!r} from output {ref.index!r} of step "
            f"{ref.node!r}, which has outputs {list(names)}"
        )

    def _order(self) -> list[str]:
        indegree = {name: len(node.upstream) for name, node in self.nodes.items()}
        downstream: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name, node in self.nodes.items():
            for up in node.upstream:
                downstream[up].append(name)
        ready = [name for name, d in indegree.items() if d == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for down in downstream[name]:
                indegree[down] -= 1
                if indegree[down] == 0:
                    ready.append(down)
        if len(order) < len(self.nodes):
            cycle = self._find_cycle({n for n, d in indegree.items() if d > 0})
            raise InvalidInput(
                f"the steps of pipeline {self.name!r} form a cycle: {' -> '.join(cycle)}; "
                "a step cannot depend, even indirectly, on its own output"
            )
        return order

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        # Every stuck node has a stuck upstream node: walk upstream until one repeats.
        path: list[str] = []
        at = min(stuck)
        while at not in path:
            path.append(at)
            at = next(u for u in self.nodes[at].upstream if u in stuck)
        cycle = path[path.index(at) :]
        cycle.reverse()  # upstream first, as data flows
        # Start at the step that was added first, so the message reads like the code.
        position = {name: i for i, name in enumerate(self.nodes)}
        first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]

    def downstream(self) -> dict[str, list[str]]:
        """For each node, the nodes that take an input from it.

        Example::

            graph.downstream()["load"]     # ["split", "stats"]
        """
        out: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name, node in self.nodes.items():
            for up in node.upstream:
                out[up].append(name)
        return out


def current_graph() -> Graph | None:
    """The graph a pipeline body is adding steps to in this context, if any.

    Example::

        with building(Graph("p")) as g:
            assert current_graph() is g
    """
    return _building.get()


@contextlib.contextmanager
def building(graph: Graph) -> Iterator[Graph]:
    """Make step calls in this context add nodes to ``graph``.

    Example::

        with building(Graph("p")) as g:
            load("x.csv")
    """
    token = _building.set(graph)
    try:
        yield graph
    finally:
        _building.reset(token)
