"""``opsloop signals``: operational time series — push, list, query, scrape, limits.

A face: it calls ``opsloop.aiops.signals`` on the local store (``$OPSLOOP_HOME`` or
``$OPSLOOP_DATABASE_URL``) and prints Rich tables; errors reach ``main()``, which
prints them and exits with their code. ``opsloop server`` scrapes the targets,
collects the host's signals and checks the limits.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opsloop.cli.common import local_store, parse_when, utc_time
from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Signals: operational time series, pushed, scraped or from the host; limits "
    "with a forecast of the breach.",
    no_args_is_help=True,
)
scrape_app = typer.Typer(
    help="Prometheus /metrics endpoints that `opsloop server` scrapes.", no_args_is_help=True
)
limit_app = typer.Typer(
    help="Limits (SLOs) on signals, warned of before they are crossed.", no_args_is_help=True
)
app.add_typer(scrape_app, name="scrape")
app.add_typer(limit_app, name="limit")
console = Console()

Labels = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="NAME=VALUE (repeat for more).")
]


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"label {pair!r} is not NAME=VALUE (e.g. host=db-1)")
        out[key.strip()] = value
    return out


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return "NaN" if math.isnan(v) else f"{v:.6g}"


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _read_points(file: str) -> Any:
    text = sys.stdin.read() if file == "-" else _read_text(file)
    text = text.strip()
    if not text:
        return []
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None  # JSON lines, one point a line
    if isinstance(body, dict):
        return body.get("points", [body])
    if isinstance(body, list):
        return body
    points = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                points.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{file}: line {n} is not JSON: {exc.msg}") from None
    return points


def _read_text(file: str) -> str:
    try:
        return Path(file).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read {file}: not UTF-8 text") from None


@app.command("push")
def push(
    name: Annotated[str | None, typer.Argument(help="The signal's name.")] = None,
    value: Annotated[str | None, typer.Argument(help="Its value (a number or NaN).")] = None,
    label: Labels = None,
    time: Annotated[
        str | None, typer.Option("--time", "-t", help="ms since the epoch or ISO (default now).")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="Points as JSON ({points: [...]} or a list) or JSON lines; - stdin.",
        ),
    ] = None,
) -> None:
    """Store one point (NAME VALUE) or a batch from a file: all of it or, on a bad
    point, none."""
    from opsloop.aiops.signals.storage import Signals
    from opsloop.core.ids import now_ms

    if file is not None:
        if name is not None:
            raise InvalidInput("give NAME VALUE or --file, not both")
        points = _read_points(file)
    else:
        if name is None or value is None:
            raise InvalidInput("give NAME VALUE (e.g. queue_depth 12) or --file FILE")
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"the value must be a number (or NaN), got {value!r}") from None
        point: dict[str, Any] = {"name": name, "labels": _labels(label), "value": number}
        point["timestamp"] = parse_when(time, now_ms()) if time else None
        points = [point]
    report = Signals(local_store()).push(points)
    console.print(
        f"stored {report.points} point(s) in {report.series} series ({report.new_series} new)"
    )


@app.command("ls")
def ls(
    selector: Annotated[
        str | None, typer.Argument(help='Only these: name or name{label="value"}.')
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """The stored series with their last point (or, without a selector, the names)."""
    from opsloop.aiops.signals.storage import Signals

    sig = Signals(local_store())
    if selector is None and not as_json:
        names = sig.names()
        t = Table("name", "series")
        for n, count in names:
            t.add_row(escape(n), str(count))
        console.print(t)
        usage = sig.storage()
        console.print(
            f"{usage['series']} series, {usage['points']} points in {usage['chunks']} chunks "
            f"({usage['bytes']} bytes packed)"
        )
        return
    found = sig.series(selector)
    if as_json:
        for s in found:
            typer.echo(json.dumps(s.to_dict(), default=str))
        return
    t = Table("id", "name", "labels", "last time (UTC)", "last value")
    for s in found:
        t.add_row(
            str(s.series_id),
            escape(s.name),
            escape(_labels_text(s.labels)),
            utc_time(s.last_time),
            _num(s.last_value),
        )
    console.print(t)


@app.command("query")
def query(
    selector: Annotated[str, typer.Argument(help='name or name{label="value", x=~"re.*"}.')],
    since: Annotated[
        str | None, typer.Option(help="From: ms, ISO date, or a span before now (1h).")
    ] = "1h",
    until: Annotated[str | None, typer.Option(help="Up to: ms, ISO date, or a span ago.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="table (the last points), csv or json.")
    ] = "table",
    output: Annotated[str | None, typer.Option("-o", help="Write to this file.")] = None,
) -> None:
    """The points of the series a selector picks in a time range."""
    from opsloop.aiops.signals.storage import Signals
    from opsloop.core.ids import now_ms

    now = now_ms()
    start = parse_when(since, now) if since else None
    end = parse_when(until, now) if until else None
    sig = Signals(local_store())
    if fmt == "csv":
        df = sig.query_frame(selector, start, end)
        out = output or sys.stdout
        df.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
        return
    found = sig.query(selector, start, end)
    if fmt == "json":
        lines = [
            json.dumps(
                {
                    "name": d.series.name,
                    "labels": d.series.labels,
                    "timestamps": d.timestamps.tolist(),
                    "values": [None if math.isnan(v) else v for v in d.values.tolist()],
                }
            )
            for d in found
        ]
        text = "\n".join(lines) + ("\n" if lines else "")
        if output:
            Path(output).write_text(text)
        else:
            typer.echo(text, nl=False)
        return
    if fmt != "table":
        raise InvalidInput(f"--format is table, csv or json, got {fmt!r}")
    import numpy as np

    t = Table("name", "labels", "points", "first (UTC)", "last (UTC)", "last value", "min", "max")
    for d in found:
        n = len(d)
        finite = d.values[~np.isnan(d.values)]
        t.add_row(
            escape(d.series.name),
            escape(_labels_text(d.series.labels)),
            str(n),
            utc_time(int(d.timestamps[0])) if n else "-",
            utc_time(int(d.timestamps[-1])) if n else "-",
            _num(float(d.values[-1])) if n else "-",
            _num(float(finite.min())) if len(finite) else "-",
            _num(float(finite.max())) if len(finite) else "-",
        )
    console.print(t)


@app.command("host")
def host() -> None:
    """Collect the host's signals once (CPU, memory, disk, network) and store them."""
    from opsloop.aiops.signals.host import HostCollector
    from opsloop.aiops.signals.storage import Signals

    rows = HostCollector().collect()
    Signals(local_store()).ingest(rows)
    t = Table("name", "labels", "value")
    for name, labels, _t, value in rows:
        extra = {k: v for k, v in labels.items() if k not in ("job", "host")}
        t.add_row(escape(name), escape(_labels_text(extra)), _num(value))
    console.print(t)


# -- scrape ------------------------------------------------------------------------------


@scrape_app.command("add")
def scrape_add(
    url: Annotated[
        str, typer.Argument(help="A Prometheus text endpoint, e.g. http://h:8080/metrics.")
    ],
    every: Annotated[str, typer.Option(help="How often: 15s, 1m, ...")] = "15s",
    job: Annotated[str | None, typer.Option(help="The job label (default 'scrape').")] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Per scrape (default min(10s, every)).")
    ] = None,
    label: Labels = None,
    name: Annotated[str | None, typer.Option(help="The target's name (default the URL).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace a target of that name.")] = False,
) -> None:
    """Scrape a /metrics URL from now on (`opsloop server` does it)."""
    from opsloop.aiops.signals.scrape import ScrapeTargets

    t = ScrapeTargets(local_store()).add(
        url,
        job=job,
        every=every,
        timeout=timeout,
        labels=_labels(label),
        name=name,
        replace=replace,
    )
    console.print(f"scraping {escape(t.url)} every {t.to_dict()['every']} as job {escape(t.job)}")


@scrape_app.command("ls")
def scrape_ls() -> None:
    """The scrape targets and how their last scrape went."""
    from opsloop.aiops.signals.scrape import ScrapeTargets

    t = Table("name", "job", "every", "last scrape (UTC)", "up", "samples", "error")
    for x in ScrapeTargets(local_store()).list():
        up = {None: "-", True: "[green]1[/green]", False: "[red]0[/red]"}[x.up]
        t.add_row(
            escape(x.name),
            escape(x.job),
            x.to_dict()["every"],
            utc_time(x.last_scrape_time),
            up,
            "-" if x.last_samples is None else str(x.last_samples),
            escape(x.last_error or ""),
        )
    console.print(t)


@scrape_app.command("rm")
def scrape_rm(name: Annotated[str, typer.Argument(help="The target's name (its URL).")]) -> None:
    """Stop scraping a target (its series stay)."""
    from opsloop.aiops.signals.scrape import ScrapeTargets

    ScrapeTargets(local_store()).remove(name)
    console.print(f"removed {escape(name)}")


@scrape_app.command("once")
def scrape_once_cmd(
    url: Annotated[str, typer.Argument(help="A Prometheus text endpoint.")],
    job: Annotated[str | None, typer.Option(help="The job label (default 'scrape').")] = None,
    store: Annotated[bool, typer.Option(help="Store what was scraped.")] = True,
) -> None:
    """Scrape a URL now and say how it went (and store it, unless --no-store)."""
    from opsloop.aiops.signals.scrape import make_target, scrape_once
    from opsloop.aiops.signals.storage import Signals

    result = scrape_once(make_target(url, job=job))
    if store:
        Signals(local_store()).ingest(result.rows)
    if result.up:
        console.print(
            f"up: {result.samples} samples in {result.duration_ms} ms"
            + (f" ({result.skipped} skipped)" if result.skipped else "")
        )
    else:
        console.print(f"[red]down[/red]: {escape(result.error or '')}")
        raise typer.Exit(1)


# -- limits -------------------------------------------------------------------------------


@limit_app.command("add")
def limit_add(
    selector: Annotated[str, typer.Argument(help='The series: name or name{label="value"}.')],
    above: Annotated[float | None, typer.Option(help="Breached at or above this.")] = None,
    below: Annotated[float | None, typer.Option(help="Breached at or below this.")] = None,
    horizon: Annotated[str, typer.Option(help="Warn this far ahead: 30m, 6h, 2d.")] = "6h",
    window: Annotated[
        str | None, typer.Option(help="Fit the trend on this much history (horizon/2).")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Required probability, 0.5-1.")] = 0.9,
    min_points: Annotated[int, typer.Option(help="Points needed to forecast.")] = 10,
    name: Annotated[
        str | None, typer.Option(help="The limit's name (default the selector).")
    ] = None,
    description: Annotated[str, typer.Option(help="What it protects.")] = "",
    replace: Annotated[bool, typer.Option(help="Replace a limit of that name.")] = False,
) -> None:
    """Watch a signal against a limit; `opsloop server` raises signal.breach_forecast
    before it is crossed and signal.breach when it is."""
    from opsloop.aiops.signals.limits import Limits

    x = Limits(local_store()).add(
        selector,
        above=above,
        below=below,
        horizon=horizon,
        window=window,
        confidence=confidence,
        min_points=min_points,
        name=name,
        description=description,
        replace=replace,
    )
    console.print(
        f"limit {escape(x.name)}: {escape(x.selector)} {x.op} {x.threshold:g}, "
        f"warned {x.to_dict()['horizon']} ahead"
    )


@limit_app.command("ls")
def limit_ls() -> None:
    """The limits."""
    from opsloop.aiops.signals.limits import Limits

    t = Table("name", "selector", "limit", "horizon", "window", "confidence")
    for x in Limits(local_store()).list():
        d = x.to_dict()
        t.add_row(
            escape(x.name),
            escape(x.selector),
            f"{x.op} {x.threshold:g}",
            d["horizon"],
            d["window"],
            f"{x.confidence:g}",
        )
    console.print(t)


@limit_app.command("rm")
def limit_rm(name: Annotated[str, typer.Argument(help="The limit's name.")]) -> None:
    """Remove a limit."""
    from opsloop.aiops.signals.limits import Limits

    Limits(local_store()).remove(name)
    console.print(f"removed {escape(name)}")


_STATE = {
    "ok": "[green]ok[/green]",
    "forecast": "[yellow]forecast[/yellow]",
    "breached": "[red]breached[/red]",
    "insufficient": "[dim]insufficient[/dim]",
}


@limit_app.command("forecast")
def limit_forecast(name: Annotated[str, typer.Argument(help="The limit's name.")]) -> None:
    """Evaluate a limit now on each series it watches (records nothing)."""
    from opsloop.aiops.signals.limits import Limits

    t = Table("series", "state", "now", "per hour", "predicted breach (UTC)", "interval", "p")
    for s, f in Limits(local_store()).forecast(name):
        interval = (
            f"{utc_time(f.earliest_time)} .. {utc_time(f.latest_time)}"
            if f.status == "forecast"
            else "-"
        )
        t.add_row(
            escape(s.selector()),
            _STATE.get(f.status, f.status),
            _num(f.current),
            _num(f.slope_per_hour),
            utc_time(f.predicted_time),
            interval,
            _num(f.probability),
        )
    console.print(t)


@limit_app.command("check")
def limit_check(
    everything: Annotated[
        bool, typer.Option("--all", help="Every series, not just those with new points.")
    ] = False,
) -> None:
    """Check the limits now, as the server does, recording changes as events."""
    from opsloop.aiops.signals.limits import Limits

    found = Limits(local_store()).check(everything=everything)
    for e in found:
        mark = f" (event {e.event_id})" if e.event_id else ""
        console.print(
            f"{escape(e.limit)}: {escape(e.series.selector())} {_STATE.get(e.state, e.state)}{mark}"
        )
    if not found:
        console.print("no series with new points")
