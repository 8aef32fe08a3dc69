"""``opsloop schedule``: run pipelines on a cron schedule or on new dataset versions.

A face: it calls ``opsloop.pipelines.scheduling`` and prints Rich tables; errors reach
``main()``, which prints them and exits with their code. ``opsloop server`` runs the
schedules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from opsloop.pipelines.scheduling.entities import Fire, Schedule

app = typer.Typer(
    help="Pipeline schedules: cron and dataset triggers, run by `opsloop server`.",
    no_args_is_help=True,
)
console = Console()

_STYLE = {
    "queued": "yellow",
    "running": "yellow",
    "finished": "green",
    "failed": "red",
    "skipped": "dim",
}


def _time(ms: int | None, tz: str = "UTC") -> str:
    from opsloop.pipelines.scheduling.timing import iso

    return (iso(ms, tz) or "-").replace("T", " ")


def _status(fire: Fire | None) -> str:
    if fire is None:
        return "-"
    return f"[{_STYLE.get(fire.status, '')}]{fire.status}[/]"


def _state(s: Schedule) -> str:
    return "[green]active[/green]" if s.enabled else "[dim]paused[/dim]"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The schedule's name, e.g. churn-nightly.")],
    target: Annotated[
        str, typer.Argument(help="MODULE:PIPELINE or path/to/file.py:PIPELINE, as `opsloop run`.")
    ],
    cron: Annotated[
        str | None,
        typer.Option(help="Cron expression, e.g. '0 3 * * *', '*/15 * * * *', '@daily'."),
    ] = None,
    on_dataset: Annotated[
        str | None,
        typer.Option(help="Fire when a new version of this dataset is registered."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (JSON values parsed).")
    ] = None,
    timezone: Annotated[str, typer.Option(help="Time zone of the cron expression.")] = "UTC",
    max_active: Annotated[int, typer.Option(help="Runs of this pipeline at once, at most.")] = 1,
    overlap: Annotated[
        str,
        typer.Option(help="At max_active: 'queue' (one waits) or 'skip' (do not run)."),
    ] = "queue",
    executor: Annotated[
        str | None, typer.Option(help="local (processes), inline, ray or a Ray address.")
    ] = None,
    max_workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step.")] = False,
    experiment: Annotated[
        str | None, typer.Option(help="Experiment (default: the pipeline's name).")
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(help="Folder the server imports the module from (default: this one)."),
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    check: Annotated[
        bool, typer.Option(help="Import the target here first to check it is a pipeline.")
    ] = True,
) -> None:
    """Schedule a pipeline on a cron expression and/or on new versions of a dataset."""
    from opsloop.cli.run import parse_params
    from opsloop.pipelines import scheduling
    from opsloop.pipelines.scheduling.service import check_target
    from opsloop.pipelines.targets import load_pipeline

    folder = os.path.abspath(workdir or os.getcwd())
    params = parse_params(param or [])
    if check:
        check_target(target)
        load_pipeline(target, folder)
    s = scheduling.schedule(
        target,
        name,
        cron=cron,
        on_dataset=on_dataset,
        params=params,
        timezone=timezone,
        max_active=max_active,
        overlap=overlap,
        executor=executor,
        max_workers=max_workers,
        cache=False if no_cache else None,
        experiment=experiment,
        workdir=folder,
        enabled=not paused,
        description=description,
    )
    console.print(
        f"schedule {escape(s.name)!r} created: {escape(s.target)} on {escape(s.triggers)}"
    )
    if s.next_fire_time is not None:
        console.print(f"next cron fire: {_time(s.next_fire_time, s.timezone)}")
    console.print("`opsloop server` runs it; `opsloop schedule history` shows its fires.")


@app.command("ls")
def ls() -> None:
    """List schedules with their triggers, next fire and latest fire."""
    from opsloop.pipelines import scheduling

    table = Table(title="schedules")
    for col in ("name", "target", "triggers", "state", "next fire", "last fire", "status"):
        table.add_column(col)
    for s in scheduling.list_schedules():
        last = s.last_fire
        table.add_row(
            escape(s.name),
            escape(s.target),
            escape(s.triggers),
            _state(s),
            _time(s.next_fire_time, s.timezone) if s.enabled else "-",
            escape(f"{_time(last.fire_time, s.timezone)} ({last.reason})") if last else "-",
            _status(last),
        )
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Show a schedule and its latest fires."""
    from opsloop.pipelines import scheduling

    s = scheduling.get(name)
    console.print(f"[bold]{escape(s.name)}[/bold]  {_state(s)}  {escape(s.target)}")
    if s.description:
        console.print(escape(s.description))
    console.print(escape(f"triggers: {s.triggers}"))
    if s.cron and s.enabled:
        console.print(f"next cron fire: {_time(s.next_fire_time, s.timezone)}")
    if s.on_dataset:
        console.print(escape(f"dataset versions handled: up to {s.on_dataset}@{s.dataset_version}"))
    console.print(f"max active: {s.max_active} (overlap: {s.overlap})")
    console.print(escape(f"params: {s.params}"))
    if s.options:
        console.print(escape(f"options: {s.options}"))
    console.print(escape(f"workdir: {s.workdir or 'the server folder'}"))
    console.print(f"created: {_time(s.creation_time, s.timezone)}")
    _print_fires(scheduling.history(name, limit=10), s.timezone, title="latest fires")


def _print_fires(fires: list[Fire], tz: str, title: str) -> None:
    table = Table(title=title)
    for col in ("fire", "when", "reason", "status", "run", "message"):
        table.add_column(col)
    for f in fires:
        msg = (f.message or "").strip().splitlines()
        table.add_row(
            str(f.fire_id),
            _time(f.fire_time, tz),
            escape(f.reason),
            _status(f),
            f.run_id or "-",
            escape(msg[-1] if f.status == "failed" and msg else (msg[0] if msg else "")),
        )
    console.print(table)


@app.command("pause")
def pause(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Stop a schedule firing (manual triggers still run)."""
    from opsloop.pipelines import scheduling

    scheduling.pause(name)
    console.print(f"schedule {escape(name)!r} paused")


@app.command("resume")
def resume(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Fire again from now on (what came while paused does not fire)."""
    from opsloop.pipelines import scheduling

    s = scheduling.resume(name)
    nxt = f"; next cron fire {_time(s.next_fire_time, s.timezone)}" if s.next_fire_time else ""
    console.print(f"schedule {escape(name)!r} resumed{nxt}")


@app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Delete a schedule and its fire history."""
    from opsloop.pipelines import scheduling

    scheduling.delete(name)
    console.print(f"schedule {escape(name)!r} deleted")


@app.command("trigger")
def trigger(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE overriding the schedule's params."),
    ] = None,
) -> None:
    """Fire a schedule now; the server starts it when the pipeline has a free slot."""
    from opsloop.cli.run import parse_params
    from opsloop.pipelines import scheduling

    fire = scheduling.trigger_now(name, parse_params(param or []))
    console.print(f"fire {fire.fire_id} of {escape(name)!r} queued; the server starts it")


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    limit: Annotated[int, typer.Option(help="Fires shown, newest first.")] = 20,
    status: Annotated[
        str | None,
        typer.Option(help="Only fires in this status: queued, running, finished, failed, skipped."),
    ] = None,
) -> None:
    """A schedule's fires: when, why, what became of them, their pipeline runs."""
    from opsloop.pipelines import scheduling

    s = scheduling.get(name)
    _print_fires(scheduling.history(name, limit, status), s.timezone, title=f"fires of {name!r}")
