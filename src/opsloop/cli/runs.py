"""``opsloop runs``: look at experiments and runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Experiments and runs.", no_args_is_help=True)
console = Console()


@app.command("ls")
def ls(
    experiment: Annotated[
        str, typer.Option("--experiment", "-e", help="Experiment name.")
    ] = "Default",
    filter_string: Annotated[
        str | None, typer.Option("--filter", help="MLflow-style filter.")
    ] = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", help="e.g. 'metrics.acc DESC'.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
) -> None:
    """List the runs of an experiment."""
    from opsloop.store import default_store
    from opsloop.tracking.service import TrackingService

    svc = TrackingService(default_store())
    exp = svc.get_experiment_by_name(experiment)
    page = svc.search_runs([exp.experiment_id], filter_string, None, limit, order_by or None)
    table = Table(title=f"runs of {experiment!r}")
    for col in ("run id", "name", "status", "params", "metrics"):
        table.add_column(col)
    for run in page.items:
        table.add_row(
            run.info.run_id,
            run.info.run_name,
            run.info.status,
            ", ".join(f"{k}={val}" for k, val in sorted(run.params.items())),
            ", ".join(f"{m.key}={m.value:.4g}" for m in sorted(run.metrics, key=lambda m: m.key)),
        )
    console.print(table)


@app.command("experiments")
def experiments() -> None:
    """List experiments."""
    from opsloop.store import default_store
    from opsloop.tracking.service import TrackingService

    page = TrackingService(default_store()).search_experiments(max_results=1000)
    table = Table(title="experiments")
    for col in ("id", "name", "artifact location"):
        table.add_column(col)
    for e in page.items:
        table.add_row(e.experiment_id, e.name, e.artifact_location)
    console.print(table)
