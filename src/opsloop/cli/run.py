"""``opsloop run module:pipeline``: run a pipeline from the shell with a live DAG view."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from opsloop.errors import InvalidInput

console = Console()

_STYLE = {
    "pending": "dim",
    "RUNNING": "yellow",
    "FINISHED": "green",
    "cached": "cyan",
    "FAILED": "red",
    "SKIPPED": "dim",
}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as JSON (numbers, lists…)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"parameter {pair!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def run(
    target: Annotated[str, typer.Argument(help="MODULE:PIPELINE or path/to/file.py:PIPELINE.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (JSON values parsed).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step again.")] = False,
    executor: Annotated[
        str, typer.Option(help="local (processes), inline (this process) or ray (a cluster).")
    ] = "local",
    max_workers: Annotated[
        int | None, typer.Option(help="Steps at once (local: worker processes).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="The Ray cluster for --executor ray (ray://head:10001, host:6379, auto; "
            "default: RAY_ADDRESS, else a local Ray)."
        ),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="Experiment (default: the pipeline's name).")
    ] = None,
) -> None:
    """Run a pipeline: each step a tracked run, unchanged steps from the cache."""
    from opsloop.pipelines import run as run_pipeline
    from opsloop.pipelines.targets import load_pipeline, typed_params

    if address is not None:
        if executor != "ray":
            raise InvalidInput(f"--address is for --executor ray, not {executor!r}")
        if not address.strip():
            raise InvalidInput("--address is empty: give ray://host:port, host:port or auto")
        os.environ["RAY_ADDRESS"] = address  # what the shared Ray executor connects to
    pipe = load_pipeline(target)
    params = typed_params(pipe.fn, parse_params(param or []))
    graph = pipe.build(**params)
    status = dict.fromkeys(graph.nodes, "pending")

    def table() -> Table:
        t = Table(title=f"pipeline {graph.name!r}")
        t.add_column("step")
        t.add_column("needs")
        t.add_column("status")
        for name, node in graph.nodes.items():
            st = status[name]
            t.add_row(
                name, ", ".join(sorted(node.upstream)), f"[{_STYLE.get(st, '')}]{st.lower()}[/]"
            )
        return t

    with Live(table(), console=console, refresh_per_second=8, transient=False) as live:

        def progress(step: str, state: str) -> None:
            status[step] = state
            live.update(table())

        result = run_pipeline(
            pipe,
            params,
            executor=executor,
            max_workers=max_workers,
            cache=not no_cache,
            experiment=experiment,
            raise_on_failure=False,
            progress=progress,
        )
    hits = sum(1 for s in result.steps.values() if s.cache_hit)
    console.print()
    console.print(
        f"{result.status.lower()} in {result.duration:.2f} s — {len(result.steps)} steps, "
        f"{hits} from the cache; pipeline run {result.run_id}"
    )
    if not result.ok:
        for name, s in result.steps.items():
            if s.error:
                console.print(f"[red]{name}[/red]: {s.error.strip().splitlines()[-1]}")
        raise typer.Exit(1)
