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

from typing import Any

from opsloop.pipelines.executors import Executor, InlineExecutor, LocalExecutor
from opsloop.pipelines.graph import Graph, Output
from opsloop.pipelines.pipeline import Pipeline, pipeline
from opsloop.pipelines.ray_executor import RayExecutor
from opsloop.pipelines.result import PipelineFailed, PipelineResult, StepResult
from opsloop.pipelines.runner import run
from opsloop.pipelines.steps import Step, step
from opsloop.pipelines.sweep import SweepFailed, SweepOutputs, SweepResult, Trial, sweep

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
    # Schedules load on first use: worker processes import this package and need none of it.
    if name in ("schedule", "scheduling"):
        import importlib

        scheduling = importlib.import_module("opsloop.pipelines.scheduling")
        return scheduling if name == "scheduling" else scheduling.schedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
