"""Pipelines: steps wired into a DAG, run tracked, cached, retried and in parallel.

::

    import opsloop
    from opsloop.pipelines import pipeline, step

    @step
    def load(path: str) -> pd.DataFrame:
        return pd.read_csv(path)

    @step(outputs=("train", "test"))
    def split(df: pd.DataFrame, frac: float = 0.8):
        cut = int(len(df) * frac)
        return df[:cut], df[cut:]

    @step(retries=2, timeout=600)
    def train(df: pd.DataFrame, lr: float):
        return fit(df, lr)

    @pipeline
    def churn(path: str, lr: float = 0.1):
        train_df, test_df = split(load(path))
        train(train_df, lr=lr)

    result = churn(path="churn.csv")         # or opsloop.pipelines.run(churn, {...})
    model = result.output("train")

Each step execution is a run nested under the pipeline's run, with its params, its
stdout/stderr (``logs/``), its outputs (``outputs/``, Parquet for frames, cloudpickle
otherwise) and a tag with each output's content hash. An unchanged step (same code,
params and inputs) is served from the cache. The modules: ``steps`` and ``pipeline``
(the decorators), ``graph`` (the DAG and its checks), ``fingerprint`` (code and params
hashes), ``values`` (serialisation), ``cache`` (keys and the index), ``worker`` (one
attempt), ``executors`` (where attempts run), ``records`` (batched tracking writes),
``runner`` (the scheduler), ``result`` and ``sweep`` (hyper-parameter sweeps: a step
run once per point of a grid, each trial a step run).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Light, and imported here so that the package's ``pipeline`` is the decorator, never
# the submodule of that name (importing a submodule sets the package's attribute).
from opsloop.pipelines.pipeline import Pipeline, pipeline

# Likewise, so that the package's ``sweep`` is the function, never the submodule.
from opsloop.pipelines.sweep import sweep

if TYPE_CHECKING:
    from opsloop.pipelines import scheduling
    from opsloop.pipelines.executors import Executor, InlineExecutor, LocalExecutor
    from opsloop.pipelines.graph import Graph, Output
    from opsloop.pipelines.ray_executor import RayExecutor
    from opsloop.pipelines.result import PipelineFailed, PipelineResult, StepResult
    from opsloop.pipelines.runner import run
    from opsloop.pipelines.scheduling import schedule
    from opsloop.pipelines.steps import Step, step
    from opsloop.pipelines.sweep import SweepFailed, SweepOutputs, SweepResult, Trial

# Where each public name lives, loaded on first use: worker processes import this
# package (for ``worker`` and ``executors``) and need none of the runner, the tracking
# service or SQLAlchemy, which would add half a second to every worker pool's start.
_LAZY = {
    "Executor": "executors",
    "InlineExecutor": "executors",
    "LocalExecutor": "executors",
    "Graph": "graph",
    "Output": "graph",
    "RayExecutor": "ray_executor",
    "PipelineFailed": "result",
    "PipelineResult": "result",
    "StepResult": "result",
    "run": "runner",
    "schedule": "scheduling",
    "Step": "steps",
    "step": "steps",
    "SweepFailed": "sweep",
    "SweepOutputs": "sweep",
    "SweepResult": "sweep",
    "Trial": "sweep",
}

__all__ = [
    "Executor",
    "Graph",
    "InlineExecutor",
    "LocalExecutor",
    "Output",
    "Pipeline",
    "PipelineFailed",
    "PipelineResult",
    "RayExecutor",
    "Step",
    "StepResult",
    "SweepFailed",
    "SweepOutputs",
    "SweepResult",
    "Trial",
    "pipeline",
    "run",
    "schedule",
    "scheduling",
    "step",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name == "scheduling":
        return importlib.import_module("opsloop.pipelines.scheduling")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"opsloop.pipelines.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
