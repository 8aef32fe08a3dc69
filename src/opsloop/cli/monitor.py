"""``opsloop monitor``: drift of current data against a reference (issue 6).

A face: it calls ``opsloop.monitoring`` and prints a Rich table, or writes the report
as HTML (``opsloop.monitoring.report_html``) or JSON; errors reach ``main()``, which
prints them and exits with their code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opsloop.cli.common import utc_time

if TYPE_CHECKING:
    from opsloop.monitoring.checks import DriftReport

app = typer.Typer(
    help="Monitoring: drift reports, and monitors that watch deployments' prediction logs.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

SOURCE_HELP = "A CSV or Parquet file, a folder of them, or a registered dataset NAME@VERSION."


def load_side(source: str, what: str) -> tuple[object, str]:
    """(a table or a dataset reference, a label) for one side of the comparison.

    An existing path is read as a file or folder; otherwise ``name@version`` is a
    registered dataset (resolved here, so an unknown one fails before any work)."""
    from opsloop.data.canonical import load_path
    from opsloop.errors import InvalidInput, NotFound

    path = Path(source)
    if path.exists():
        return load_path(path).table, source
    if "@" in source and "/" not in source:
        from opsloop.data.service import DatasetService
        from opsloop.store import default_store

        dv = DatasetService(default_store()).get_version(source)
        return dv.ref, dv.ref
    if not source:
        raise InvalidInput(f"the {what} is empty: {SOURCE_HELP}")
    raise NotFound(
        f"{what} {source!r} does not exist: give {SOURCE_HELP[0].lower()}{SOURCE_HELP[1:]}"
    )


def _threshold(value: str | None) -> float | str | None:
    from opsloop.errors import InvalidInput

    if value is None or value == "learned":
        return value
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"--threshold must be 'learned' or a number, not {value!r}") from None


@app.command("report")
def report(
    reference: Annotated[str, typer.Argument(help=f"The reference. {SOURCE_HELP}")],
    current: Annotated[str, typer.Argument(help=f"The current data. {SOURCE_HELP}")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option("--json", help="Write the report as JSON here ('-': standard output)."),
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", help="Only these columns, comma-separated.")
    ] = None,
    test: Annotated[
        str | None,
        typer.Option(
            "--test",
            help="One test for every column: ks, wasserstein, psi, jensenshannon, hellinger, "
            "chisquare (default: chosen per column).",
        ),
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option(
            "--threshold",
            help="'learned' (from the reference's own variation) or a number "
            "(an alpha for p-value tests, a bound for distances).",
        ),
    ] = None,
) -> None:
    """Compare CURRENT with REFERENCE column by column: a table, or --html / --json."""
    from opsloop.errors import InvalidInput
    from opsloop.monitoring import columns as cols
    from opsloop.monitoring.checks import _check_tests, drift, read_dataset
    from opsloop.monitoring.reference import Reference

    thr = _threshold(threshold)
    _check_tests(test)
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    if columns is not None and not wanted:
        raise InvalidInput("--columns names no column")
    to_stdout = json_out == "-"
    ref_side, ref_label = load_side(reference, "reference")
    cur_side, cur_label = load_side(current, "current data")
    learn = thr == "learned"
    if isinstance(ref_side, str):
        ref = Reference.from_dataset(ref_side, learn_thresholds=learn)
    else:
        ref = Reference.fit(ref_side, learn_thresholds=learn, tests=test)
    cur = read_dataset(cur_side) if isinstance(cur_side, str) else cur_side
    common = set(ref.columns) & set(cols.names(cur))
    if not common:
        raise InvalidInput(
            f"{ref_label} and {cur_label} have no column in common: nothing to compare"
        )
    result = drift(ref, cur, columns=wanted, tests=test, threshold=thr)
    # Everything computed: now write (an error above leaves nothing behind).
    if html is not None:
        from opsloop.monitoring.report_html import render

        page = render(
            result,
            ref,
            cur,
            title=f"Drift: {cur_label} against {ref_label}",
            reference_label=ref_label,
            current_label=cur_label,
        )
        html.write_text(page, encoding="utf-8")
        err.print(f"wrote {escape(str(html))}")
    if json_out is not None:
        text = result.to_json(indent=2)
        if to_stdout:
            typer.echo(text)
        else:
            Path(json_out).write_text(text + "\n", encoding="utf-8")
            err.print(f"wrote {escape(json_out)}")
    if html is None and json_out is None:
        _print(result, ref_label, cur_label)


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None:
        return "-"
    return format(v, fmt) if isinstance(v, float) else str(v)


def _print(result: DriftReport, ref_label: str, cur_label: str) -> None:
    verdict = (
        "[red]dataset drift[/red]" if result.dataset_drift else "[green]no dataset drift[/green]"
    )
    console.print(
        f"[bold]{escape(cur_label)}[/bold] ({result.current_rows:,} rows) against "
        f"[bold]{escape(ref_label)}[/bold] ({result.reference_rows:,} rows): "
        f"{len(result.drifted_columns)} of {result.tested} tested columns drifted "
        f"({result.share_drifted:.0%}), {verdict}"
    )
    table = Table(title="columns")
    for col in (
        "column",
        "kind",
        "test",
        "statistic",
        "p (adjusted)",
        "threshold",
        "drifted",
        "note",
    ):
        table.add_column(
            col, justify="right" if col in ("statistic", "p (adjusted)", "threshold") else "left"
        )
    for e in result.columns.values():
        drifted = "[red]yes[/red]" if e.drifted else ("-" if e.drifted is None else "no")
        table.add_row(
            escape(e.column),
            e.kind or "-",
            e.test or "-",
            _num(e.statistic),
            _num(e.p_value_adjusted, ".3g"),
            _num(e.threshold),
            drifted,
            escape(e.error or e.note or ""),
        )
    console.print(table)
    for kind, res in result.multivariate.items():
        line = res.get("error") or res.get("summary") or ""
        flag = "[red]drift[/red]" if res.get("drifted") else "ok"
        console.print(
            f"multivariate {escape(kind)}: {flag if not res.get('error') else 'error'} {escape(str(line))}"
        )
    if result.alerts:
        console.print(f"[bold]alerts ({len(result.alerts)})[/bold]")
        for a in result.alerts:
            console.print(f"  [yellow]![/yellow] {escape(a)}")


# -- monitors over deployments' prediction logs ----------------------------------------------


def _service() -> Any:
    from opsloop.monitoring.monitors import MonitorService
    from opsloop.store import default_store

    return MonitorService(default_store())


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def _metric_bounds(items: list[str] | None) -> dict[str, float]:
    from opsloop.errors import InvalidInput

    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidInput(
                f"--metric takes METRIC=BOUND, e.g. accuracy=0.85 or rmse=4; got {item!r}"
            ) from None
    return out


def _quality_file(path: Path | None) -> list[Any] | None:
    import json

    from opsloop.errors import InvalidInput

    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"--quality-checks: cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml

            data = yaml.safe_load(text)
        except Exception:
            raise InvalidInput(
                f"--quality-checks: {path} is neither JSON nor YAML (a list of check dicts)"
            ) from None
    if not isinstance(data, list):
        raise InvalidInput(f"--quality-checks: {path} must hold a list of check dicts")
    return data


def _print_monitor(m: Any) -> None:
    console.print(f"[bold]{escape(m.name)}[/bold] watches deployment {escape(m.deployment)}")
    console.print(f"  reference  {escape(m.reference)}")
    console.print(f"  checks     {', '.join(m.checks)}")
    d = m.to_dict()
    console.print(f"  every      {d['every']}, window {d['window']}")
    console.print(
        f"  state      {'enabled' if m.enabled else 'paused'}; next run {utc_time(m.next_run_time)}"
    )
    cfg = m.config
    console.print(f"  features   {escape(', '.join(cfg.get('features') or []))}")
    extra = {
        k: v
        for k, v in cfg.items()
        if k not in ("features",) and v not in (None, {}, [], True, 1, "prediction")
    }
    if extra:
        console.print(f"  options    {escape(str(extra))}")
    for note in m.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}")
    if m.last_run:
        _print_run(m.last_run, prefix="  last run   ")


def _print_run(r: Any, prefix: str = "") -> None:
    colour = {"ok": "green", "alert": "red", "no_data": "yellow", "failed": "red"}[r.status]
    console.print(
        f"{prefix}[{colour}]{r.status}[/{colour}] {utc_time(r.window_start)} .. "
        f"{utc_time(r.window_end)} UTC, {r.rows:,} rows: {escape(r.message)}"
        + (f" (event {r.event_id})" if r.event_id else "")
    )


@app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="The monitor's name (and, by default, the deployment's).")
    ],
    reference: Annotated[
        str, typer.Option("--reference", "-r", help="A registered dataset version NAME@VERSION.")
    ],
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="The deployment (default: NAME).")
    ] = None,
    every: Annotated[str, typer.Option("--every", help="How often: 30s, 10m, 1h, 1d.")] = "10m",
    window: Annotated[
        str, typer.Option("--window", help="The span of the log each run checks.")
    ] = "1h",
    checks: Annotated[
        str | None,
        typer.Option(
            "--checks",
            help="Comma-separated: input_drift, output_drift, quality, performance, cbpe "
            "(default: every one the reference allows).",
        ),
    ] = None,
    features: Annotated[
        str | None, typer.Option("--features", help="Input columns to test, comma-separated.")
    ] = None,
    prediction: Annotated[
        str, typer.Option("--prediction", help="The log's prediction column.")
    ] = "prediction",
    score: Annotated[
        str | None,
        typer.Option("--score", help="The probability of the positive class (for CBPE, ROC AUC)."),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="The reference's label column (default: label or target)."),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="classification or regression (default: guessed).")
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option("--threshold", help="Drift: 'learned' or a number (default: per test)."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="A performance bound METRIC=VALUE (a minimum for scores, a maximum for "
            "errors), repeatable: --metric accuracy=0.85",
        ),
    ] = None,
    quality_checks: Annotated[
        Path | None,
        typer.Option("--quality-checks", help="A JSON or YAML list of validation check dicts."),
    ] = None,
    no_multivariate: Annotated[
        bool, typer.Option("--no-multivariate", help="Skip the PCA and classifier checks.")
    ] = False,
    min_rows: Annotated[
        int, typer.Option("--min-rows", help="Fewer rows in a window count as no data.")
    ] = 1,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    description: Annotated[str, typer.Option("--description")] = "",
) -> None:
    """Watch a deployment's prediction log against a reference dataset version."""
    m = _service().create(
        name,
        reference=reference,
        deployment=deployment,
        every=every,
        window=window,
        checks=_split(checks),
        features=_split(features),
        prediction_column=prediction,
        score_column=score,
        label_column=label,
        task=task,
        drift_threshold=_threshold(threshold),
        multivariate=not no_multivariate,
        performance_thresholds=_metric_bounds(metric),
        quality_checks=_quality_file(quality_checks),
        min_rows=min_rows,
        enabled=not paused,
        description=description,
    )
    err.print(f"created monitor {escape(m.name)}")
    _print_monitor(m)


@app.command("ls")
def ls(
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")
    ] = None,
) -> None:
    """List monitors with their last run."""
    monitors = _service().list_monitors(deployment)
    if not monitors:
        err.print("no monitors (opsloop monitor create NAME --reference DATASET@VERSION)")
        return
    table = Table("name", "deployment", "reference", "every", "window", "state", "last run")
    for m in monitors:
        d = m.to_dict()
        last = m.last_run
        table.add_row(
            escape(m.name),
            escape(m.deployment),
            escape(m.reference),
            d["every"],
            d["window"],
            "enabled" if m.enabled else "paused",
            f"{last.status} at {utc_time(last.window_end)}" if last else "-",
        )
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument()]) -> None:
    """A monitor's settings and its last run."""
    _print_monitor(_service().get(name))


@app.command("run")
def run(
    name: Annotated[str, typer.Argument()],
    window: Annotated[
        str | None,
        typer.Option("--window", help="This long instead of the monitor's window, e.g. 5m."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run a monitor now over its last window; store the results (exit 0 also on alert)."""
    import json

    r = _service().run(name, window=window)
    if json_out:
        typer.echo(json.dumps(r.to_dict(), indent=2))
        return
    _print_run(r)
    for note in r.summary.get("notes", []):
        err.print(f"[dim]note: {escape(str(note))}[/dim]")


@app.command("results")
def results(
    name: Annotated[str, typer.Argument()],
    check: Annotated[
        str | None, typer.Option("--check", help="input_drift, output_drift, quality, ...")
    ] = None,
    signal: Annotated[str | None, typer.Option("--signal", help="A column or metric.")] = None,
    alerts: Annotated[bool, typer.Option("--alerts", help="Only rows that alerted.")] = False,
    last: Annotated[int, typer.Option("--last", help="The last N runs.")] = 10,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write the whole time series as CSV.")
    ] = None,
) -> None:
    """A monitor's results: one row per run and signal, oldest first."""
    svc = _service()
    if csv is not None:
        svc.results(name, check=check, signal=signal, alerts_only=alerts).to_csv(csv, index=False)
        err.print(f"wrote {escape(str(csv))}")
        return
    runs = svc.runs(name, limit=max(1, last))
    if not runs:
        err.print(f"monitor {escape(name)} has not run yet (opsloop monitor run {escape(name)})")
        return
    rows = svc.result_rows(
        name,
        since_ms=min(r.window_end for r in runs),
        check=check,
        signal=signal,
        alerts_only=alerts,
    )
    wanted = {r.run_id for r in runs}
    table = Table(
        "window end", "check", "signal", "metric", "value", "p-value", "threshold", "alert"
    )
    for row in rows:
        if row["run_id"] not in wanted:
            continue
        table.add_row(
            utc_time(row["window_end"], "%m-%d %H:%M:%S"),
            row["check"],
            escape(row["signal"]),
            escape(row["metric"]),
            _num(row["value"]),
            _num(row["p_value"]),
            _num(row["threshold"]),
            "[red]yes[/red]" if row["alert"] else "",
        )
    console.print(table)
    for r in runs:
        if r.status in ("no_data", "failed"):
            _print_run(r)


@app.command("pause")
def pause(name: Annotated[str, typer.Argument()]) -> None:
    """Stop running on schedule (opsloop monitor run still runs it)."""
    _service().pause(name)
    err.print(f"paused monitor {escape(name)}")


@app.command("resume")
def resume(name: Annotated[str, typer.Argument()]) -> None:
    """Run on schedule again, from the next slot on."""
    m = _service().resume(name)
    err.print(f"resumed monitor {escape(name)}; next run {utc_time(m.next_run_time)} UTC")


@app.command("delete")
def delete(name: Annotated[str, typer.Argument()]) -> None:
    """Delete a monitor with its runs and results (its alert events stay)."""
    _service().delete(name)
    err.print(f"deleted monitor {escape(name)}")
