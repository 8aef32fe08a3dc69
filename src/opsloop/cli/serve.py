"""``opsloop serve``: the inference server for a deployment or one model (V2 and MLflow's
``/invocations``)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Annotated, Any

import typer


def serve(
    model: Annotated[
        str,
        typer.Argument(
            help="A deployment's name, models:/NAME@ALIAS, models:/NAME/VERSION, "
            "runs:/RUN_ID/PATH, or a local MLmodel folder (one `mlflow.sklearn.save_model` "
            "wrote works too)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes, each loading the model (default 1, or the deployment's).",
            min=1,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The model's V2 name (default: its registered name, or the folder's)."),
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Most rows in one predict call (default 64, or the deployment's).", min=1
        ),
    ] = None,
    max_batch_wait_ms: Annotated[
        float | None,
        typer.Option(
            help="How long a busy server waits to fill a batch (default 2, or the deployment's).",
            min=0,
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting per model before answering 503 (default 1024, or the "
            "deployment's).",
            min=1,
        ),
    ] = None,
    max_body_mb: Annotated[
        float | None,
        typer.Option(
            help="Largest request body in MB, larger is a 413 (default 100, or the deployment's).",
            min=0,
        ),
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            help="A deployment: seconds between checks for a change (a new version swaps in).",
            min=0.05,
        ),
    ] = 5.0,
) -> None:
    """Serve a deployment (its stable version, canary and shadow, logging its
    predictions), or one model, over the Open Inference Protocol v2 and MLflow's
    /invocations.

    Example: opsloop serve churn --port 8080 (a deployment: `opsloop deploy create`);
    opsloop serve models:/churn@production --port 8080 --workers 2
    """
    import uvicorn

    from opsloop.serving.app import CONFIG_ENV, ServeConfig, config_to_env, create_app
    from opsloop.serving.deployment_server import is_deployment
    from opsloop.serving.metrics import MULTIPROC_ENV
    from opsloop.serving.model import fetch, load

    given: dict[str, Any] = {
        "max_batch_size": max_batch_size,
        "max_batch_wait_ms": max_batch_wait_ms,
        "max_queue": max_queue,
        "max_body_bytes": None if max_body_mb is None else int(max_body_mb * 1024 * 1024),
    }
    given = {k: v for k, v in given.items() if v is not None}
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": "info",
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": 30,
    }
    if is_deployment(model):
        if name:
            raise typer.BadParameter("a deployment serves under its own name; drop --name")
        _serve_deployment(model, workers, given, poll_interval, options)
        return
    if not os.path.isdir(model) and ":" not in model:
        from opsloop.errors import NotFound

        raise NotFound(
            f"{model!r} is neither a deployment (opsloop deploy ls) nor a model folder; "
            "to serve a registered model give models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    download = None if os.path.isdir(model) else tempfile.mkdtemp(prefix="opsloop-serve-")
    metrics_dir = None
    try:
        source = fetch(model, download)
        if name:
            source = dataclasses.replace(source, name=name)
        config = ServeConfig(**given)
        if (workers or 1) <= 1:
            # In this process: a model that does not load is one error line, not a traceback.
            app: Any = create_app([source], config)
        else:
            load(source)  # fail here, once, rather than in every worker
            metrics_dir = tempfile.mkdtemp(prefix="opsloop-serve-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
            os.environ[CONFIG_ENV] = config_to_env([source], config)
            app = "opsloop.serving.app:create_app_from_env"
            options.update(factory=True, workers=workers)
        typer.echo(
            f"serving {source.name} version {source.version} ({source.uri}) on "
            f"http://{host}:{port} (V2: /v2/models/{source.name}, MLflow: /invocations)",
            err=True,
        )
        uvicorn.run(app, **options)
    finally:
        for folder in (download, metrics_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _serve_deployment(
    name: str,
    workers: int | None,
    given: dict[str, Any],
    poll_interval: float,
    options: dict[str, Any],
) -> None:
    """``opsloop serve DEPLOYMENT``: its versions, split and shadow, re-resolved every
    ``poll_interval`` seconds, every answer in the prediction log."""
    import uvicorn

    from opsloop.serving.deployment_server import (
        DEPLOYMENT_ENV,
        DeploymentOptions,
        create_deployment_app,
    )
    from opsloop.serving.deployments import DeploymentService
    from opsloop.serving.metrics import MULTIPROC_ENV
    from opsloop.store import default_store

    resolved = DeploymentService(default_store()).resolve(name)
    count = workers if workers is not None else int(resolved.settings.get("workers") or 1)
    deployment = DeploymentOptions(name, poll_interval, given)
    metrics_dir = None
    try:
        if count <= 1:
            app: Any = create_deployment_app(deployment)
        else:
            metrics_dir = tempfile.mkdtemp(prefix="opsloop-serve-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
            os.environ[DEPLOYMENT_ENV] = deployment.to_env()
            app = "opsloop.serving.deployment_server:create_deployment_app_from_env"
            options.update(factory=True, workers=count)
        split = ", ".join(f"version {t.version} {t.share:g}%" for t in resolved.served)
        shadow = f", shadow version {resolved.shadow.version}" if resolved.shadow else ""
        typer.echo(
            f"serving deployment {name} (models:/{resolved.model}: {split}{shadow}; revision "
            f"{resolved.revision}) on http://{options['host']}:{options['port']} "
            f"(V2: /v2/models/{name}, MLflow: /invocations)",
            err=True,
        )
        uvicorn.run(app, **options)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
