"""Model serving: deployments from the registry, the inference server (Open Inference
Protocol v2 and MLflow's ``/invocations``), adaptive batching, and the prediction log.

The modules: ``deployments`` (records, traffic split, promote and rollback, with
history), ``predictions`` (the prediction log: written off the request path as Parquet
segments, read back by time window, joined with late labels), ``api`` (the functions
below, on the default store), ``model``/``codec``/``batcher``/``app``/``metrics`` (the
inference server). Example::

    from opsloop import serving

    serving.deploy("churn", "models:/churn@production", canary=4, canary_share=10)
    serving.promote("churn", reason="v4 wins")
    df = serving.predictions("churn", since=timedelta(hours=1), with_labels=True)
"""

import importlib
from typing import TYPE_CHECKING, Any

# Imported here so that the package's ``predictions`` is the function, never the
# submodule of that name (importing a submodule sets the package's attribute).
from opsloop.serving.predictions import log_labels, predictions

if TYPE_CHECKING:
    from opsloop.serving.api import (
        delete_deployment,
        deploy,
        deployment_history,
        get_deployment,
        list_deployments,
        promote,
        resolve_deployment,
        rollback,
        update_deployment,
    )
    from opsloop.serving.app import ServeConfig, ServingApp, create_app
    from opsloop.serving.batcher import Batcher, QueueFull
    from opsloop.serving.model import ServedModel, load_served_model

_LAZY = {
    name: "opsloop.serving.api"
    for name in (
        "delete_deployment",
        "deploy",
        "deployment_history",
        "get_deployment",
        "list_deployments",
        "promote",
        "resolve_deployment",
        "rollback",
        "update_deployment",
    )
}
_LAZY.update(
    ServeConfig="opsloop.serving.app",
    ServingApp="opsloop.serving.app",
    create_app="opsloop.serving.app",
    Batcher="opsloop.serving.batcher",
    QueueFull="opsloop.serving.batcher",
    ServedModel="opsloop.serving.model",
    load_served_model="opsloop.serving.model",
)

__all__ = [
    "Batcher",
    "QueueFull",
    "ServeConfig",
    "ServedModel",
    "ServingApp",
    "create_app",
    "delete_deployment",
    "deploy",
    "deployment_history",
    "get_deployment",
    "list_deployments",
    "load_served_model",
    "log_labels",
    "predictions",
    "promote",
    "resolve_deployment",
    "rollback",
    "update_deployment",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
