"""``opsloop serve``: the inference server for one model (V2 and MLflow's ``/invocations``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated

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

    from opsloop.serving.app import CONFIG_ENV, ServeConfig, config_to_env
    from opsloop.serving.model import fetch

    download = None if os.path.isdir(model) else tempfile.mkdtemp(prefix="opsloop-serve-")
    try:
        source = fetch(model, download)
        if name:
            source = type(source)(source.path, name, source.version, source.uri, source.signature)
        config = ServeConfig(
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            max_queue=max_queue,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
        )
        os.environ[CONFIG_ENV] = config_to_env([source], config)
        typer.echo(
            f"serving {source.name} version {source.version} ({source.uri}) on "
            f"http://{host}:{port} (V2: /v2/models/{source.name}, MLflow: /invocations)",
            err=True,
        )
        uvicorn.run(
            "opsloop.serving.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="info",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=30,
        )
    finally:
        if download is not None:
            shutil.rmtree(download, ignore_errors=True)
