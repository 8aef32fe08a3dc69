"""``opsloop serve``: the inference server for one model (V2 and MLflow's ``/invocations``)."""

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
            help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, or a local "
            "MLmodel folder (one `mlflow.sklearn.save_model` wrote works too)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the model).")] = 1,
    name: Annotated[
        str | None,
        typer.Option(help="The model's V2 name (default: its registered name, or the folder's)."),
    ] = None,
    max_batch_size: Annotated[int, typer.Option(help="Most rows in one predict call.", min=1)] = 64,
    max_batch_wait_ms: Annotated[
        float, typer.Option(help="How long a busy server waits to fill a batch.", min=0)
    ] = 2.0,
    max_queue: Annotated[
        int, typer.Option(help="Requests waiting per model before answering 503.", min=1)
    ] = 1024,
    max_body_mb: Annotated[
        float, typer.Option(help="Largest request body, in MB (larger: 413).", min=0)
    ] = 100.0,
) -> None:
    """Serve a model over the Open Inference Protocol v2 and MLflow's /invocations.

    Example: opsloop serve models:/churn@production --port 8080 --workers 2
    """
    import uvicorn

    from opsloop.serving.app import CONFIG_ENV, ServeConfig, config_to_env, create_app
    from opsloop.serving.metrics import MULTIPROC_ENV
    from opsloop.serving.model import fetch, load

    download = None if os.path.isdir(model) else tempfile.mkdtemp(prefix="opsloop-serve-")
    metrics_dir = None
    try:
        source = fetch(model, download)
        if name:
            source = dataclasses.replace(source, name=name)
        config = ServeConfig(
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            max_queue=max_queue,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
        )
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
        if workers <= 1:
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
