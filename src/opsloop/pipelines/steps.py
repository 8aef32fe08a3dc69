"""``@step``: a function that a pipeline runs as a tracked, cached, retried unit.

Inside a pipeline's body, calling a step records the call in the pipeline's graph and
returns placeholders for its outputs (see ``graph``). Anywhere else a step is the plain
function it wraps, so it can be unit-tested or reused directly.

**Several outputs.** A step has one output unless it says otherwise:
``@step(outputs=2)`` returns a tuple (or list) of two values and unpacks in the body
(``train, test = split(df)``); ``@step(outputs=("train", "test"))`` does the same and
may also return a dict with those keys, and its placeholders are a named tuple
(``parts.train``). A step with one output may return a tuple: it is stored whole.

**Checks.** ``@step(checks={"df": [...]}, output_checks=[...])`` checks the data a step
takes and returns with ``opsloop.data.validation`` checks, where the step runs; a
failed check fails the step (not retried) and skips what is downstream (see ``checks``).
"""

from __future__ import annotations

import collections
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from opsloop.errors import InvalidInput
from opsloop.pipelines.checks import StepChecks, parse
from opsloop.pipelines.graph import current_graph, refs_in


def _check_options(
    name: str | None,
    cache: bool,
    retries: int,
    retry_backoff: float,
    timeout: float | None,
    outputs: int | Sequence[str],
) -> tuple[str, ...]:
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise InvalidInput(
            f"a step name must be a non-empty string of at most 200 characters, got {name!r}"
        )
    if not isinstance(cache, bool):
        raise InvalidInput(f"step cache must be True or False, got {cache!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInput(f"step retries must be an integer >= 0, got {retries!r}")
    if (
        isinstance(retry_backoff, bool)
        or not isinstance(retry_backoff, (int, float))
        or not math.isfinite(retry_backoff)
        or retry_backoff < 0
    ):
        raise InvalidInput(
            f"step retry_backoff must be a number of seconds >= 0, got {retry_backoff!r}"
        )
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidInput(f"step timeout must be a number of seconds > 0 or None, got {timeout!r}")
    if isinstance(outputs, bool):
        raise InvalidInput(f"step outputs must be a count or a sequence of names, got {outputs!r}")
    if isinstance(outputs, int):
        if outputs < 1:
            raise InvalidInput(f"a step has at least one output, got outputs={outputs}")
        return ("output",) if outputs == 1 else tuple(str(i) for i in range(outputs))
    if isinstance(outputs, str) or not isinstance(outputs, Sequence) or not outputs:
        raise InvalidInput(
            f"step outputs must be a count or a non-empty sequence of names, got {outputs!r}"
        )
    names = tuple(outputs)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or n.startswith("_"):
            raise InvalidInput(
                f"output name {n!r} is not a valid name: use identifiers not starting with '_'"
            )
    if len(set(names)) != len(names):
        raise InvalidInput(f"output names must be unique, got {list(names)}")
    return names


class Step:
    """A step function with its options; made by ``@opsloop.step``.

    Example::

        @opsloop.step(retries=2, timeout=600)
        def train(df, lr=0.1):
            ...

        fast = train.options(name="train_fast", cache=False)

        @opsloop.step(checks={"df": [validation.not_null("id")]},
                      output_checks=[validation.row_count(min=1)])
        def clean(df):
            ...
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        retry_backoff: float = 0.5,
        timeout: float | None = None,
        outputs: int | Sequence[str] = 1,
        checks: Mapping[str, Any] | None = None,
        output_checks: Any = None,
    ) -> None:
        if not callable(fn):
            raise InvalidInput(f"@step needs a function, got {fn!r}")
        if isinstance(fn, Step):
            fn = fn.__opsloop_fn__
        # First, so that attributes copied from the function cannot shadow ours.
        functools.update_wrapper(self, fn)
        self.output_names = _check_options(name, cache, retries, retry_backoff, timeout, outputs)
        self.fn = fn
        self.name: str = name or getattr(fn, "__name__", None) or "step"
        self.cache = cache
        self.retries = retries
        self.retry_backoff = float(retry_backoff)
        self.timeout = None if timeout is None else float(timeout)
        self._outputs = outputs
        # Several outputs: declared as a count (a tuple comes back) or as names.
        self.multi = not (isinstance(outputs, int) and outputs == 1)
        self.named_outputs = self.multi and not isinstance(outputs, int)
        self._signature: inspect.Signature | None = None
        self._outputs_type: Any = None
        # Checked now, so that a wrong argument or output name fails at decoration.
        self.checks: StepChecks = parse(
            self.name,
            lambda: self.signature,
            self.output_names,
            self.multi,
            checks,
            output_checks,
        )

    @property
    def __opsloop_fn__(self) -> Callable[..., Any]:
        return self.fn

    @property
    def signature(self) -> inspect.Signature:
        if self._signature is None:
            try:
                self._signature = inspect.signature(self.fn)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"step {self.name!r}: cannot read its signature ({exc})"
                ) from None
        return self._signature

    @property
    def outputs_type(self) -> Any:
        """The named tuple type of a step with named outputs (None otherwise)."""
        if self.named_outputs and self._outputs_type is None:
            self._outputs_type = collections.namedtuple(  # type: ignore[misc]
                f"{self.name}_outputs" if self.name.isidentifier() else "outputs",
                self.output_names,
            )
        return self._outputs_type

    def options(
        self,
        *,
        name: str | None = None,
        cache: bool | None = None,
        retries: int | None = None,
        retry_backoff: float | None = None,
        timeout: float | None = None,
        checks: Mapping[str, Any] | None = None,
        output_checks: Any = None,
    ) -> Step:
        """A copy of this step with some options changed (the function is the same).

        ``checks``/``output_checks`` replace the step's checks when given (``{}`` and
        ``[]`` remove them).

        Example::

            @opsloop.pipeline
            def sweep():
                df = load()
                for lr in (0.1, 0.01):
                    train.options(name=f"train_lr{lr}", retries=1)(df, lr=lr)
        """
        return Step(
            self.fn,
            name=name if name is not None else self.name,
            cache=self.cache if cache is None else cache,
            retries=self.retries if retries is None else retries,
            retry_backoff=self.retry_backoff if retry_backoff is None else retry_backoff,
            timeout=self.timeout if timeout is None else timeout,
            outputs=self._outputs,
            checks=dict(self.checks.inputs) if checks is None else checks,
            output_checks=dict(self.checks.outputs) if output_checks is None else output_checks,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = current_graph()
        if graph is not None:
            return graph.add(self, *args, **kwargs)
        if refs_in(list(args)) or refs_in(kwargs):
            raise InvalidInput(
                f"step {self.name!r} was given a step output outside a pipeline's body; "
                "outputs only exist inside the @pipeline function that made them"
            )
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name!r} ({getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', '?')})>"

    def __getstate__(self) -> dict[str, Any]:
        # Signatures and generated named-tuple types are rebuilt where they are needed.
        state = dict(self.__dict__)
        state["_signature"] = None
        state["_outputs_type"] = None
        return state


@overload
def step(fn: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff: float = 0.5,
    timeout: float | None = None,
    outputs: int | Sequence[str] = 1,
    checks: Mapping[str, Any] | None = None,
    output_checks: Any = None,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff: float = 0.5,
    timeout: float | None = None,
    outputs: int | Sequence[str] = 1,
    checks: Mapping[str, Any] | None = None,
    output_checks: Any = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a pipeline step.

    ``cache``: reuse stored outputs when the code, params and inputs are unchanged.
    ``retries``: run again this many times after a failure, waiting ``retry_backoff``
    seconds, then twice that, and so on. ``timeout``: seconds an attempt may take before
    it is killed (and counts as failed). ``outputs``: a count or names, for a step that
    returns several values. ``name``: the step's name in runs (default: the function's).
    ``checks``: data checks (``opsloop.data.validation``) on arguments, by name, run
    before the function; ``output_checks``: checks on the output (a list), or on each
    named output (a dict), run before anything is stored. A failed check fails the step
    without retries; the reports are artifacts of its run (``checks/``).

    Example::

        @opsloop.step
        def load(path: str) -> pd.DataFrame:
            return pd.read_csv(path)

        @opsloop.step(outputs=("train", "test"), retries=2, timeout=300)
        def split(df: pd.DataFrame, frac: float = 0.8):
            cut = int(len(df) * frac)
            return df[:cut], df[cut:]

        @opsloop.step(
            checks={"df": [validation.not_null("id"), validation.unique("id")]},
            output_checks={"train": [validation.row_count(min=100)]},
            outputs=("train", "test"),
        )
        def split_checked(df: pd.DataFrame):
            ...
    """
    options: dict[str, Any] = {
        "name": name,
        "cache": cache,
        "retries": retries,
        "retry_backoff": retry_backoff,
        "timeout": timeout,
        "outputs": outputs,
        "checks": checks,
        "output_checks": output_checks,
    }
    if fn is not None:
        return Step(fn, **options)
    _check_options(name, cache, retries, retry_backoff, timeout, outputs)

    def decorate(f: Callable[..., Any]) -> Step:
        return Step(f, **options)

    return decorate
