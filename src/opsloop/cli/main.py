"""``opsloop``: the command line. Errors print one line and exit with their code."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from opsloop.cli import data as data_cmd
from opsloop.cli import db as db_cmd
from opsloop.cli import deploy as deploy_cmd
from opsloop.cli import detect as detect_cmd
from opsloop.cli import events as events_cmd
from opsloop.cli import logs as logs_cmd
from opsloop.cli import models as models_cmd
from opsloop.cli import monitor as monitor_cmd
from opsloop.cli import run as run_cmd
from opsloop.cli import runs as runs_cmd
from opsloop.cli import schedule as schedule_cmd
from opsloop.cli import serve as serve_cmd
from opsloop.cli import signals as signals_cmd
from opsloop.errors import OpsloopError

app = typer.Typer(
    name="opsloop",
    help="opsloop: self-hosted MLOps — tracking, registry, and (soon) the rest of the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_cmd.app, name="db")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(models_cmd.app, name="models")
app.add_typer(data_cmd.app, name="data")
app.add_typer(schedule_cmd.app, name="schedule")
app.add_typer(deploy_cmd.app, name="deploy")
app.add_typer(logs_cmd.app, name="logs")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(signals_cmd.app, name="signals")
app.add_typer(events_cmd.app, name="events")
err = Console(stderr=True)


@app.command()
def demo(
    home: Annotated[
        str | None, typer.Option(help="Store folder (default: $OPSLOOP_HOME or ./.opsloop).")
    ] = None,
) -> None:
    """Run the main job: train, track and register models on the embedded store."""
    import os

    if home:
        os.environ["OPSLOOP_HOME"] = home
    from opsloop.cli.demo import run_demo

    run_demo()


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    scheduler: Annotated[
        bool, typer.Option(help="Run pipeline schedules (one server per database acts).")
    ] = True,
) -> None:
    """Serve opsloop's REST API (/api/v1) and MLflow's (/api/2.0/mlflow)."""
    import os

    from opsloop.server.runner import run_server

    if not scheduler:
        os.environ["OPSLOOP_SCHEDULER"] = "0"
    run_server(host, port, workers)


app.command("run")(run_cmd.run)
app.command("serve")(serve_cmd.serve)
app.command("detect")(detect_cmd.detect)


@app.command()
def version() -> None:
    """Print opsloop's version."""
    from opsloop import __version__

    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except OpsloopError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
