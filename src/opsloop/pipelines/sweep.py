"""Hyper-parameter sweeps: a step run once per point of a grid, each trial a step run.

::

    @opsloop.step
    def train(df: pd.DataFrame, lr: float, depth: int) -> dict[str, float]:
        ...
        return {"accuracy": acc, "loss": loss}

    result = opsloop.sweep(train, {"lr": [0.01, 0.1], "depth": [3, 5]},
                           metric="accuracy", mode="max", df=frame)
    result.best.params        # {"lr": 0.1, "depth": 5}
    result.to_frame()         # one row per trial

A sweep is a pipeline of its own: one node per trial (``train[lr=0.01,depth=3]``, the
step with the fixed arguments and one point of the grid), run by ``runner.run``, so
each trial is a tracked run nested under the sweep's run, is served from the cache
when nothing changed, and runs in parallel on the executor (``"local"``, ``"inline"``,
``"ray"`` or an ``Executor``). Afterwards the sweep reads each trial's objective - the
number the step returned, or the ``metric`` entry of the dict (or named output) it
returned - logs it and the dict's other numbers as metrics of the trial's run, and logs
the best trial (by ``metric`` and ``mode``) on the sweep's run: tags
``opsloop.sweep.best_run``/``best_trial``, params ``best_<param>`` and the metric
``best_<metric>``. A failed trial does not stop the others; a sweep whose every trial
failed raises ``SweepFailed``.

**Random search.** With ``samples=N`` the sweep runs N points drawn without
replacement from the grid, seeded by ``sample_seed`` (so the same sweep draws the same
points and hits the cache). A grid value may then also be a distribution - anything
with scipy's ``rvs(random_state=...)``, e.g. ``scipy.stats.loguniform(1e-4, 1e-1)``.
The sampling is written here rather than taken from scikit-learn's
``ParameterGrid``/``ParameterSampler``: those order the keys alphabetically (the
trials' names and order should follow the grid as written) and materialise the grid.

**Inside a pipeline's body** ``opsloop.sweep(train, grid, df=features)`` adds the
trials to the pipeline instead and returns their outputs (a list, ``SweepOutputs``,
with the points as ``.params``) for a downstream step to choose from::

    @opsloop.pipeline
    def tune():
        trials = opsloop.sweep(train, {"lr": [0.01, 0.1]}, df=load())
        pick(trials, params=trials.params)
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Only light modules here: the package imports this one at its own import (so that its
# ``sweep`` is this function, never this module), and worker processes import the
# package. The runner, the store and the tracking service load when a sweep runs.
from opsloop.errors import InvalidInput, OpsloopError
from opsloop.pipelines.graph import Graph, Output, current_graph, refs_in
from opsloop.pipelines.pipeline import Pipeline

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from opsloop.pipelines.executors import Executor
    from opsloop.pipelines.result import PipelineResult
    from opsloop.pipelines.steps import Step
    from opsloop.store import Store
    from opsloop.tracking.service import TrackingService

MAX = "max"
MIN = "min"
# A grid with more points needs samples=: thousands of step runs are rarely meant.
MAX_TRIALS = 10_000
# A trial's name is its step's name (at most 200 characters, as any step's).
MAX_TRIAL_NAME = 200
# Labels of values in trial names are cut to this many characters.
_MAX_LABEL = 40

TAG_SWEEP = "opsloop.sweep"
TAG_BEST_RUN = "opsloop.sweep.best_run"
TAG_BEST_TRIAL = "opsloop.sweep.best_trial"
OBJECTIVE = "objective"  # the metric name of a step's numeric result without metric=
# A step run's status (as ``result`` names them), repeated to keep this module light.
FINISHED = "FINISHED"
FAILED = "FAILED"
# As ``tracking.validation.MAX_BATCH_METRICS``: the metrics one trial may log.
MAX_TRIAL_METRICS = 1000

_RUN_OPTIONS = ("executor", "max_workers", "cache", "experiment", "name", "store", "progress")


# -- the outcome --------------------------------------------------------------------------


@dataclass
class Trial:
    """One trial of a sweep: a point of the grid and how its step run went.

    ``objective`` is None when the trial failed or its result held no objective;
    ``note`` then says why (``error`` holds a failed trial's error). ``metrics`` are the
    numbers logged on the trial's run.

    Example::

        t = result.best
        t.params, t.objective, t.run_id     # {"lr": 0.1}, 0.93, "5f0c..."
        model = t.value                      # the step's output, read when asked
    """

    name: str
    params: dict[str, Any]
    status: str
    run_id: str | None
    cache_hit: bool
    duration: float
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None
    _result: PipelineResult | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the trial's step finished.

        Example::

            [t.params for t in result.trials if not t.ok]
        """
        return self.status == FINISHED

    @property
    def value(self) -> Any:
        """What the trial's step returned (several outputs: a tuple), read when asked.

        Example::

            model = result.best.value
        """
        if self._result is None:
            raise InvalidInput(f"trial {self.name!r} has no result to read")
        return self._result.output(self.name)


@dataclass
class SweepResult:
    """The outcome of a sweep: its trials, the best of them, and its pipeline run.

    Example::

        result = opsloop.sweep(train, {"lr": [0.01, 0.1]}, metric="accuracy", df=frame)
        result.best.params          # {"lr": 0.1}
        result.failed               # [] - the trials whose step failed
        result.to_frame().sort_values("accuracy")
    """

    name: str
    step: str
    run_id: str
    experiment_id: str
    metric: str
    mode: str
    trials: list[Trial]
    best: Trial | None
    result: PipelineResult = field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether every trial finished.

        Example::

            if not result.ok:
                print([t.error for t in result.failed])
        """
        return all(t.ok for t in self.trials)

    @property
    def failed(self) -> list[Trial]:
        """The trials whose step failed, in trial order.

        Example::

            result.failed[0].error     # "ValueError: lr must be positive"
        """
        return [t for t in self.trials if not t.ok]

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: its name, params, objective, status, run and timing.

        The objective's column is named after ``metric`` (``objective`` without one);
        ``error`` holds a failed trial's error or why a trial has no objective.

        Example::

            result.to_frame().sort_values("accuracy", ascending=False).head()
        """
        import pandas as pd

        keys = list(dict.fromkeys(k for t in self.trials for k in t.params))
        fixed = {"trial", self.metric, "status", "run_id", "cache_hit", "duration", "error"}
        # A param named like one of the other columns keeps its value, under another name.
        columns_of = {k: f"param.{k}" if k in fixed else k for k in keys}
        rows = [
            {
                "trial": t.name,
                **{columns_of[k]: t.params.get(k) for k in keys},
                self.metric: t.objective,
                "status": t.status,
                "run_id": t.run_id,
                "cache_hit": t.cache_hit,
                "duration": t.duration,
                "error": t.error or t.note,
            }
            for t in self.trials
        ]
        columns = [
            "trial",
            *columns_of.values(),
            self.metric,
            "status",
            "run_id",
            "cache_hit",
            "duration",
        ]
        return pd.DataFrame(rows, columns=[*columns, "error"])


class SweepFailed(OpsloopError):
    """Every trial of a sweep failed; ``.sweep`` holds them, ``.result`` the pipeline run.

    (Part of opsloop's error tree under ``OpsloopError``: exit code 1, HTTP 500.)

    Example::

        try:
            opsloop.sweep(train, {"lr": [0.1, 1.0]}, df=frame)
        except SweepFailed as exc:
            print([t.error for t in exc.sweep.trials])
    """

    def __init__(self, sweep: SweepResult) -> None:
        self.sweep = sweep
        self.result = sweep.result
        first = sweep.trials[0]
        super().__init__(
            f"every trial of sweep {sweep.name!r} failed ({len(sweep.trials)} trials); the "
            f"first, trial {first.name!r}: {first.error}. The tracebacks are in the artifact "
            f"logs/traceback.txt of each trial's run (sweep run {sweep.run_id})",
        )


class SweepOutputs(list[Any]):
    """The trials' outputs, made by a sweep inside a pipeline's body: pass them on.

    A list of the trials' output placeholders (in trial order), so a step given it
    receives the list of their values; ``params`` holds each trial's grid point and
    ``names`` its step's name.

    Example::

        trials = opsloop.sweep(train, {"lr": [0.01, 0.1]}, df=features)
        pick(trials, params=trials.params)     # pick(scores: list, params: list[dict])
    """

    def __init__(self, outputs: list[Any], params: list[dict[str, Any]], names: list[str]):
        super().__init__(outputs)
        self.params = params
        self.names = names

    @property
    def outputs(self) -> list[Any]:
        """The output placeholders, as a plain list."""
        return list(self)


# -- the grid ------------------------------------------------------------------------------


def _is_distribution(value: Any) -> bool:
    return callable(getattr(value, "rvs", None))


def _describe(value: Any) -> str:
    """A grid value for the sweep run's params: the list, or the distribution."""
    if _is_distribution(value):
        dist = getattr(value, "dist", None)
        name = getattr(dist, "name", None) or type(value).__name__
        args = [
            *map(repr, getattr(value, "args", ())),
            *(f"{k}={v!r}" for k, v in getattr(value, "kwds", {}).items()),
        ]
        return f"{name}({', '.join(args)})"
    return "[" + ", ".join(_label(v, i) for i, v in enumerate(value)) + "]"


def _check_grid(
    step: Step, grid: Any, fixed: Mapping[str, Any], samples: int | None
) -> dict[str, Any]:
    """The grid, checked: each key's values as a list (numpy numbers made plain), or its
    distribution."""
    if not isinstance(grid, Mapping) or not grid:
        raise InvalidInput(
            f"sweep of step {step.name!r} needs a grid: a non-empty dict of parameter name "
            f"-> list of values, e.g. {{'lr': [0.01, 0.1]}}; got {grid!r}"
        )
    params = step.signature.parameters
    var_keyword = any(p.kind == p.VAR_KEYWORD for p in params.values())
    checked: dict[str, Any] = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInput(
                f"sweep of step {step.name!r}: grid key {key!r} is not a parameter name"
            )
        p = params.get(key)
        if p is None and not var_keyword:
            raise InvalidInput(
                f"sweep of step {step.name!r}: grid key {key!r} is not a parameter of the "
                f"step (its parameters: {', '.join(params) or 'none'})"
            )
        if p is not None and p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidInput(
                f"sweep of step {step.name!r}: grid key {key!r} names a parameter that "
                "cannot be passed by name"
            )
        if key in fixed:
            raise InvalidInput(
                f"sweep of step {step.name!r}: {key!r} is given both in the grid and as a "
                "fixed argument; keep one"
            )
        if _is_distribution(values):
            if samples is None:
                raise InvalidInput(
                    f"sweep of step {step.name!r}: grid key {key!r} is a distribution; give "
                    "samples=N to draw N random points"
                )
            checked[key] = values
            continue
        # Ordered and sized: a list, tuple, range or numpy array; not a set (its order,
        # and so the trials' order and names, would change from run to run).
        if (
            isinstance(values, (str, bytes, Mapping, set, frozenset))
            or not hasattr(values, "__len__")
            or not hasattr(values, "__iter__")
            or len(values) == 0
        ):
            raise InvalidInput(
                f"sweep of step {step.name!r}: grid key {key!r} must map to a non-empty list "
                f"of values (or, with samples=N, a distribution), got {values!r}"
            )
        checked[key] = [_plain(v) for v in values]
    return checked


def _plain(value: Any) -> Any:
    """A numpy scalar (as distributions draw) as the Python number it holds."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _points(
    grid: Mapping[str, Any], samples: int | None, seed: int
) -> list[tuple[dict[str, Any], dict[str, int]]]:
    """The grid's points (each with the list position of its values), in order.

    Every point without ``samples``; else ``samples`` distinct points drawn with
    ``seed`` (all of them if the grid has no more).
    """
    keys = list(grid)
    if not any(_is_distribution(v) for v in grid.values()):
        sizes = [len(grid[k]) for k in keys]
        total = math.prod(sizes)
        if samples is None or samples >= total:
            if total > MAX_TRIALS:
                raise InvalidInput(
                    f"the grid has {total} points, more than {MAX_TRIALS}; give samples=N "
                    "to run N of them drawn at random"
                )
            indexes: Iterator[tuple[int, ...]] = itertools.product(*map(range, sizes))
        else:
            # Positions in the grid, decoded into one index per key (the last key
            # varies fastest, as in itertools.product); range() keeps a huge grid lazy.
            drawn = sorted(random.Random(seed).sample(range(total), samples))
            indexes = iter([_decode(n, sizes) for n in drawn])
        return [
            (
                {k: grid[k][i] for k, i in zip(keys, idx, strict=True)},
                dict(zip(keys, idx, strict=True)),
            )
            for idx in indexes
        ]
    assert samples is not None
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[tuple[dict[str, Any], dict[str, int]]] = []
    seen: set[tuple[Any, ...]] = set()
    # Distinct points: a discrete distribution may repeat itself; give up after a while.
    for _ in range(samples * 20):
        point: dict[str, Any] = {}
        where: dict[str, int] = {}
        for k in keys:
            values = grid[k]
            if _is_distribution(values):
                point[k] = _plain(values.rvs(random_state=rng))
            else:
                where[k] = int(rng.integers(len(values)))
                point[k] = values[where[k]]
        ident = tuple(where[k] if k in where else _hashable(point[k]) for k in keys)
        if ident in seen:
            continue
        seen.add(ident)
        out.append((point, where))
        if len(out) == samples:
            break
    return out


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:  # e.g. an array from a multivariate distribution
        return repr(value)
    return value


def _decode(n: int, sizes: list[int]) -> tuple[int, ...]:
    idx = []
    for size in reversed(sizes):
        n, i = divmod(n, size)
        idx.append(i)
    return tuple(reversed(idx))


def _label(value: Any, position: int | None) -> str:
    """How a value reads in a trial's name."""
    if isinstance(value, Output):
        return value.node if value.index == 0 else f"{value.node}.{value.index}"
    value = _plain(value)
    if value is None or isinstance(value, (bool, int)):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
        if len(text) > 12:
            text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    else:
        text = type(value).__name__ + (f"#{position}" if position is not None else "")
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _trial_name(step: Step, point: Mapping[str, Any], where: Mapping[str, int]) -> str:
    inner = ",".join(f"{k}={_label(v, where.get(k))}" for k, v in point.items())
    name = f"{step.name}[{inner}]"
    if len(name) > MAX_TRIAL_NAME:
        name = name[: MAX_TRIAL_NAME - 2] + "…]"
    return name


# -- objectives ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _metric_name(key: Any) -> str | None:
    from opsloop.tracking import validation

    try:
        return validation.key("metric", key)
    except InvalidInput:
        return None


def _measure(
    step: Step, value: Any, metric: str | None
) -> tuple[float | None, dict[str, float], str | None]:
    """A finished trial's objective, the numbers to log as its metrics, and a note
    saying why there is no objective (if there is none)."""
    if step.named_outputs:
        value = dict(zip(step.output_names, value, strict=True))
    number = _number(value)
    if number is not None:
        return number, {metric or OBJECTIVE: number}, _nan_note(number)
    if isinstance(value, Mapping):
        metrics: dict[str, float] = {}
        for k, v in value.items():
            n, key = _number(v), _metric_name(k)
            if n is not None and key is not None and len(metrics) < MAX_TRIAL_METRICS:
                metrics[key] = n
        if metric is None:
            return (
                None,
                metrics,
                (
                    "no objective: the trial returned a dict; pass metric= to name the entry "
                    "to compare"
                ),
            )
        if metric not in value:
            keys = ", ".join(map(repr, list(value)[:10])) or "none"
            return None, metrics, f"no objective: the result has no {metric!r} (its keys: {keys})"
        objective = _number(value[metric])
        if objective is None:
            return (
                None,
                metrics,
                (f"no objective: its {metric!r} is a {type(value[metric]).__name__}, not a number"),
            )
        return objective, metrics, _nan_note(objective)
    what = type(value).__name__
    if metric is None:
        return None, {}, f"no objective: the trial returned a {what}, not a number"
    return (
        None,
        {},
        (f"no objective: the trial returned a {what}, neither a number nor a dict with {metric!r}"),
    )


def _nan_note(objective: float) -> str | None:
    return "the objective is NaN: it cannot be compared" if math.isnan(objective) else None


def _best(trials: list[Trial], mode: str) -> Trial | None:
    scored = [t for t in trials if t.objective is not None and not math.isnan(t.objective)]
    if not scored:
        return None
    pick = max if mode == MAX else min
    # max/min keep the first of equal values: ties go to the earlier trial.
    return pick(scored, key=lambda t: t.objective or 0.0)


# -- the entry point -----------------------------------------------------------------------


def _check_options(samples: int | None, sample_seed: int, metric: str | None, mode: str) -> None:
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise InvalidInput(f"samples must be an integer >= 1 or None, got {samples!r}")
    if samples is not None and samples > MAX_TRIALS:
        raise InvalidInput(f"samples must be at most {MAX_TRIALS}, got {samples}")
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int):
        raise InvalidInput(f"sample_seed must be an integer, got {sample_seed!r}")
    if metric is not None:
        from opsloop.tracking import validation

        validation.key("metric", metric)
    if mode not in (MAX, MIN):
        raise InvalidInput(f"mode must be 'max' or 'min', got {mode!r}")


def _as_step(step: Any) -> Step:
    from opsloop.pipelines.steps import Step

    if isinstance(step, Step):
        return step
    if isinstance(step, Pipeline) or not callable(step):
        raise InvalidInput(f"sweep needs a @step function, got {step!r}")
    return Step(step)


def sweep(
    step: Step | Callable[..., Any],
    grid: Mapping[str, Any],
    *,
    samples: int | None = None,
    sample_seed: int = 0,
    metric: str | None = None,
    mode: str = MAX,
    executor: str | Executor = "local",
    max_workers: int | None = None,
    cache: bool = True,
    experiment: str | None = None,
    name: str | None = None,
    store: Store | None = None,
    progress: Callable[[str, str], None] | None = None,
    fixed: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``step`` once per point of ``grid`` (a trial each) and find the best trial.

    ``grid`` maps parameter names to lists of values; every combination is a trial
    (``samples=N``: N of them drawn at random with ``sample_seed``; a value may then be
    a scipy distribution). The other arguments of the step are given as keywords
    (``df=frame``), or in ``fixed`` when their name is one of this function's. Each
    trial's objective is what the step returned, if a number, or its ``metric`` entry
    (of a dict, or a named output); the best has the largest (``mode="max"``) or the
    smallest (``"min"``). ``executor``, ``max_workers``, ``cache``, ``experiment``
    (default: the sweep's ``name``, default ``<step>-sweep``), ``store`` and
    ``progress`` are ``runner.run``'s. Returns a ``SweepResult``; raises ``SweepFailed``
    if every trial failed, ``InvalidInput`` for a bad grid before anything runs.

    Inside a pipeline's body, adds the trials to the pipeline and returns their outputs
    (``SweepOutputs``); the run options, ``metric`` and ``mode`` do not apply there.

    Example::

        result = opsloop.sweep(
            train, {"lr": [0.01, 0.1], "depth": [3, 5]},
            metric="accuracy", executor="local", max_workers=4, df=frame,
        )
        result.best.params       # {"lr": 0.1, "depth": 5}

        result = opsloop.sweep(train, {"lr": scipy.stats.loguniform(1e-4, 1e-1)},
                               samples=20, metric="loss", mode="min", df=frame)
    """
    s = _as_step(step)
    _check_options(samples, sample_seed, metric, mode)
    if fixed is not None and not isinstance(fixed, Mapping):
        raise InvalidInput(f"fixed must be a dict of argument name -> value, got {fixed!r}")
    both = set(fixed or {}) & set(kwargs)
    if both:
        raise InvalidInput(
            f"sweep of step {s.name!r}: {sorted(both)[0]!r} is given both in fixed and as a "
            "keyword; keep one"
        )
    args = {**(fixed or {}), **kwargs}
    grid = _check_grid(s, grid, args, samples)
    points = _points(grid, samples, sample_seed)
    try:
        s.signature.bind(**args, **points[0][0])
    except TypeError as exc:
        raise InvalidInput(f"sweep of step {s.name!r}: {exc}") from None
    graph = current_graph()
    if graph is not None:
        given = {
            "executor": executor != "local",
            "max_workers": max_workers is not None,
            "cache": cache is not True,
            "experiment": experiment is not None,
            "name": name is not None,
            "store": store is not None,
            "progress": progress is not None,
            "metric": metric is not None,
            "mode": mode != MAX,
        }
        wrong = [k for k, v in given.items() if v]
        if wrong:
            raise InvalidInput(
                f"sweep of step {s.name!r} inside pipeline {graph.name!r}: {', '.join(wrong)} "
                "do not apply there (the pipeline's run options do; pick the best trial in a "
                "step that takes the sweep's outputs)"
            )
        return _add(graph, s, points, args)
    if refs_in(args) or any(refs_in(list(v)) for v in grid.values() if not _is_distribution(v)):
        raise InvalidInput(
            f"sweep of step {s.name!r} was given a step output outside a pipeline's body; "
            "outputs only exist inside the @pipeline function that made them"
        )
    return _run(
        s,
        grid,
        points,
        args,
        samples=samples,
        sample_seed=sample_seed,
        metric=metric,
        mode=mode,
        executor=executor,
        max_workers=max_workers,
        cache=cache,
        experiment=experiment,
        name=name,
        store=store,
        progress=progress,
    )


def _add(
    graph: Graph,
    step: Step,
    points: list[tuple[dict[str, Any], dict[str, int]]],
    args: Mapping[str, Any],
) -> SweepOutputs:
    outputs: list[Any] = []
    names: list[str] = []
    for point, where in points:
        out = graph.add(step.options(name=_trial_name(step, point, where)), **args, **point)
        outputs.append(out)
        names.append((out[0] if isinstance(out, tuple) else out).node)
    return SweepOutputs(outputs, [p for p, _ in points], names)


def _run(
    step: Step,
    grid: Mapping[str, Any],
    points: list[tuple[dict[str, Any], dict[str, int]]],
    args: Mapping[str, Any],
    *,
    samples: int | None,
    sample_seed: int,
    metric: str | None,
    mode: str,
    executor: str | Executor,
    max_workers: int | None,
    cache: bool,
    experiment: str | None,
    name: str | None,
    store: Store | None,
    progress: Callable[[str, str], None] | None,
) -> SweepResult:
    sweep_name = name if name is not None else f"{step.name}-sweep"
    params: dict[str, Any] = {"step": step.name, "trials": str(len(points)), "mode": mode}
    if metric is not None:
        params["metric"] = metric
    if samples is not None:
        params["samples"] = str(samples)
        params["sample_seed"] = str(sample_seed)
    params.update({f"grid.{k}": _describe(v) for k, v in grid.items()})
    graph = Graph(sweep_name, params)
    graph.experiment = experiment
    names: list[str] = []
    for point, where in points:
        out = graph.add(step.options(name=_trial_name(step, point, where)), **args, **point)
        names.append((out[0] if isinstance(out, tuple) else out).node)
    from opsloop.pipelines.runner import run
    from opsloop.store import default_store
    from opsloop.tracking.service import TrackingService

    store = store or default_store()
    result = run(
        graph,
        executor=executor,
        max_workers=max_workers,
        cache=cache,
        experiment=experiment,
        store=store,
        raise_on_failure=False,
        progress=progress,
    )
    trials = []
    for node, (point, _) in zip(names, points, strict=True):
        info = result.steps[node]
        trial = Trial(
            node,
            point,
            info.status,
            info.run_id,
            info.cache_hit,
            info.duration,
            error=info.error,
            _result=result,
        )
        if info.status == FINISHED:
            trial.objective, trial.metrics, trial.note = _measure(step, result.output(node), metric)
        elif info.status != FAILED:
            trial.note = f"the trial did not run ({info.status})"
        trials.append(trial)
    best = _best(trials, mode)
    out = SweepResult(
        sweep_name,
        step.name,
        result.run_id,
        result.experiment_id,
        metric or OBJECTIVE,
        mode,
        trials,
        best,
        result,
    )
    _record(TrackingService(store), out)
    if not any(t.ok for t in trials):
        raise SweepFailed(out)
    return out


def _record(svc: TrackingService, sweep: SweepResult) -> None:
    """Log each trial's metrics on its run and the best trial on the sweep's run (the
    runs exist and have ended by now: the tracking service takes late writes)."""
    from opsloop.core.ids import now_ms
    from opsloop.tracking.entities import Metric

    ts = now_ms()
    for t in sweep.trials:
        if t.run_id is not None and t.metrics:
            svc.log_batch(t.run_id, [Metric(k, v, ts, 0) for k, v in t.metrics.items()])
    tags = {TAG_SWEEP: sweep.step}
    best = sweep.best
    if best is None or best.run_id is None:
        svc.log_batch(sweep.run_id, tags_=tags)
        return
    tags[TAG_BEST_RUN] = best.run_id
    tags[TAG_BEST_TRIAL] = best.name
    logged = svc.get_run(best.run_id).params
    best_params = [(f"best_{k}", logged[k]) for k in best.params if k in logged]
    assert best.objective is not None
    svc.log_batch(
        sweep.run_id,
        [Metric(f"best_{sweep.metric}", best.objective, ts, 0)],
        params_=best_params,
        tags_=tags,
    )


__all__ = ["SweepFailed", "SweepOutputs", "SweepResult", "Trial", "sweep"]
