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

from typing import TYPE_CHECKING, Any

from opsloop.errors import (
    Conflict,
    InvalidInput,
    InvalidState,
    NotFound,
    OpsloopError,
)

if TYPE_CHECKING:
    from opsloop import aiops, data, monitoring, pipelines, serving
    from opsloop.pipelines import pipeline, step
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

# Where each public name lives. They are loaded on first use, so that ``import opsloop``
# (every CLI command, every pipeline worker process) does not pay for SQLAlchemy,
# pandas and pyarrow until it needs them.
_LAZY = {
    "load_model": "opsloop.registry.api",
    "log_model": "opsloop.registry.api",
    "set_alias": "opsloop.registry.api",
    **{
        name: "opsloop.tracking.fluent"
        for name in (
            "active_run",
            "end_run",
            "flush",
            "get_run",
            "log_artifact",
            "log_artifacts",
            "log_metric",
            "log_metrics",
            "log_param",
            "log_params",
            "log_text",
            "search_runs",
            "set_tag",
            "set_tags",
            "start_run",
        )
    },
    "step": "opsloop.pipelines",
    "pipeline": "opsloop.pipelines",
    "sweep": "opsloop.pipelines.sweep",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("data", "pipelines", "serving", "monitoring", "aiops"):
        return importlib.import_module(f"opsloop.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opsloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Conflict",
    "InvalidInput",
    "InvalidState",
    "NotFound",
    "OpsloopError",
    "__version__",
    "active_run",
    "aiops",
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
    "monitoring",
    "pipeline",
    "pipelines",
    "search_runs",
    "serving",
    "set_alias",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
    "sweep",
]
