"""opsloop: self-hosted MLOps in one pip install.

The public API::

    import opsloop

    with opsloop.start_run(experiment="churn"):
        opsloop.log_params({"C": 1.0})
        opsloop.log_metrics({"acc": 0.93}, step=0)
        opsloop.log_artifact("report.html")
        mv = opsloop.log_model(clf, "churn", input_example=X[:5])
    opsloop.set_alias("churn", "production", mv.version)
    model = opsloop.load_model("models:/churn@production")
"""

from typing import Any

from opsloop.errors import (
    Conflict,
    InvalidInput,
    InvalidState,
    NotFound,
    OpsloopError,
)
from opsloop.registry.api import load_model, log_model, set_alias
from opsloop.tracking.fluent import (
    active_run,
    end_run,
    flush,
    get_run,
    log_artifact,
    log_artifacts,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    search_runs,
    set_tag,
    set_tags,
    start_run,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``opsloop.data`` and ``opsloop.pipelines`` pull in pandas and pyarrow: loaded on
    # first use, so that ``import opsloop`` (and every CLI command) stays quick.
    if name == "data":
        import opsloop.data

        return opsloop.data
    if name in ("step", "pipeline", "pipelines"):
        import opsloop.pipelines

        return opsloop.pipelines if name == "pipelines" else getattr(opsloop.pipelines, name)
    raise AttributeError(f"module 'opsloop' has no attribute {name!r}")


__all__ = [
    "Conflict",
    "InvalidInput",
    "InvalidState",
    "NotFound",
    "OpsloopError",
    "__version__",
    "active_run",
    "data",
    "end_run",
    "flush",
    "get_run",
    "load_model",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "pipeline",
    "pipelines",
    "search_runs",
    "set_alias",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
]
