"""``opsloop events``: what the parts raised — monitor alerts, detector anomalies,
forecast breaches, deployment changes and failures — newest last.

A face: it calls ``opsloop.store.events`` on the local store (``$OPSLOOP_HOME`` or
``$OPSLOOP_DATABASE_URL``); ``GET /api/v1/events`` serves the same over HTTP.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opsloop.cli.common import local_store, parse_when, utc_time
from opsloop.errors import InvalidInput, NotFound

app = typer.Typer(
    help="Events: monitor alerts, detector anomalies, forecast breaches, deployment changes.",
    no_args_is_help=True,
)
console = Console()
SCAN = 100_000  # events read at most to find the newest ones


@app.command("ls")
def ls(
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="A kind (repeat for more); 'monitor.*' a prefix."),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="What it is about (a deployment...).")] = None,
    source: Annotated[str | None, typer.Option(help="What raised it.")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning or critical.")] = None,
    since: Annotated[
        str, typer.Option(help="From: a span before now (1h, 7d), an ISO date or ms.")
    ] = "7d",
    limit: Annotated[int, typer.Option(help="The newest this many.", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The newest events, oldest of them first."""
    from opsloop.store.events import list_events

    now = int(time.time() * 1000)
    found = list_events(
        local_store().db,
        kind=kind or None,
        subject=subject,
        source=source,
        severity=severity,
        since_ms=parse_when(since, now),
        limit=SCAN,
    )[-limit:]
    if as_json:
        for e in found:
            typer.echo(json.dumps(e.to_dict(), default=str))
        return
    table = Table(title=f"{len(found)} event(s) since {utc_time(parse_when(since, now))} UTC")
    for col in ("id", "time (UTC)", "kind", "severity", "subject", "message"):
        table.add_column(col, overflow="fold")
    for e in found:
        table.add_row(
            str(e.event_id),
            utc_time(e.time_ms),
            e.kind,
            e.severity,
            escape(e.subject or "-"),
            escape(e.message if len(e.message) <= 160 else e.message[:157] + "..."),
        )
    console.print(table)


@app.command("show")
def show(event_id: Annotated[int, typer.Argument(help="The event's id.")]) -> None:
    """One event, whole, as JSON (its payload included)."""
    from opsloop.store.events import list_events

    if event_id < 1:
        raise InvalidInput(f"an event id is a positive integer, got {event_id}")
    found = list_events(local_store().db, after_id=event_id - 1, limit=1)
    if not found or found[0].event_id != event_id:
        raise NotFound(f"no event with id {event_id}")
    typer.echo(json.dumps(found[0].to_dict(), indent=2, default=str))
