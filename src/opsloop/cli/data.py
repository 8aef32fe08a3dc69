"""``opsloop data``: datasets, their versions, profiles and diffs.

A face: it calls ``opsloop.data`` and prints Rich tables; errors reach ``main()``,
which prints them and exits with their code.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Datasets: register, list, show (schema, profile, validation) and diff versions.",
    no_args_is_help=True,
)
console = Console()

TOP_SHOWN = 5


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, fmt)
    return str(v)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _pct(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.1f}%)" if whole else str(part)


@app.command("ls")
def ls(
    name: Annotated[
        str | None, typer.Argument(help="A dataset name: list its versions instead.")
    ] = None,
) -> None:
    """List datasets (or the versions of one)."""
    from opsloop import data

    if name is None:
        table = Table(title="datasets")
        for col in ("name", "versions", "latest", "rows", "columns", "digest", "updated"):
            table.add_column(col)
        for d in data.list_datasets():
            table.add_row(
                escape(d.name),
                str(d.num_versions),
                escape(f"{d.name}@{d.latest_version}"),
                f"{d.num_rows:,}",
                str(d.num_columns),
                d.latest_digest[:12],
                _when(d.last_updated_time),
            )
        console.print(table)
        return
    table = Table(title=escape(f"versions of {name!r}"))
    for col in ("version", "digest", "rows", "columns", "size", "source", "run", "created"):
        table.add_column(col)
    for v in data.versions(name):
        table.add_row(
            str(v.version),
            v.digest[:12],
            f"{v.num_rows:,}",
            str(v.num_columns),
            _size(v.size_bytes),
            escape(v.source),
            v.run_id or "",
            _when(v.creation_time),
        )
    console.print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (a number, latest, a digest).")],
) -> None:
    """Show a version: its record, schema, profile and validation report."""
    from opsloop import data

    dv = data.get_version(ref)
    console.print(f"[bold]{escape(dv.ref)}[/bold]  digest {dv.digest}")
    console.print(
        f"{dv.num_rows:,} rows x {dv.num_columns} columns, {_size(dv.size_bytes)} Parquet"
        f" at {escape(dv.artifact_path)}"
    )
    origin = dv.source if dv.source != dv.source_type else ""
    console.print(escape(f"source: {dv.source_type} {origin}"))
    console.print(f"created: {_when(dv.creation_time)}")
    if dv.run_id or dv.produced_by_step:
        console.print(
            escape(f"produced by: run {dv.run_id or '-'}, step {dv.produced_by_step or '-'}")
        )
    if dv.description:
        console.print(escape(f"description: {dv.description}"))

    schema = Table(title="schema")
    for col in ("column", "type", "nullable", "kind", "present", "missing"):
        schema.add_column(col)
    for c in dv.schema:
        p = dv.profile.columns.get(c.name)
        schema.add_row(
            escape(c.name),
            escape(c.type),
            "yes" if c.nullable else "no",
            p.kind if p else "-",
            f"{p.count:,}" if p else "-",
            _pct(p.missing, p.count + p.missing) if p else "-",
        )
    console.print(schema)
    _print_profile(dv.profile)
    _print_validation(dv.validation_report)


def _print_profile(profile: Any) -> None:
    numeric = Table(title="numeric columns")
    for col in ("column", "mean", "std", "min", "p05", "p25", "p50", "p75", "p95", "max"):
        numeric.add_column(col, justify="left" if col == "column" else "right")
    categorical = Table(title=f"categorical columns (top {TOP_SHOWN} of up to {profile.top_k})")
    for col in ("column", "distinct", "top values"):
        categorical.add_column(col)
    datetimes = Table(title="datetime columns")
    for col in ("column", "min", "max"):
        datetimes.add_column(col)
    for c in profile.columns.values():
        if c.numeric is not None:
            n = c.numeric
            q = n.quantiles
            numeric.add_row(
                escape(c.name),
                _num(n.mean),
                _num(n.std),
                _num(n.min),
                *(_num(q.get(k)) for k in (0.05, 0.25, 0.5, 0.75, 0.95)),
                _num(n.max),
            )
        elif c.categorical is not None:
            total = c.count or 1
            top = ", ".join(
                f"{escape(v)} ({100 * k / total:.1f}%)" for v, k in c.categorical.top[:TOP_SHOWN]
            )
            categorical.add_row(escape(c.name), f"{c.categorical.distinct:,}", top)
        elif c.datetime is not None:
            datetimes.add_row(escape(c.name), c.datetime.min or "-", c.datetime.max or "-")
    for t in (numeric, categorical, datetimes):
        if t.row_count:
            console.print(t)


def _print_validation(report: dict[str, Any] | None) -> None:
    """The hook for validation reports stored with a version (``set_validation_report``):
    a summary line, then each failed check's message."""
    if report is None:
        console.print("validation: no report stored")
        return
    passed = report.get("passed", report.get("success"))
    checks = report.get("checks")
    results = report.get("results") or []
    failed_results = [r for r in results if isinstance(r, dict) and not r.get("passed", True)]
    failed = report.get("failed", len(failed_results))
    state = "[green]passed[/green]" if passed else "[red]failed[/red]"
    if passed is None:
        state = "stored"
    counts = f" ({checks} checks, {failed} failed)" if checks is not None else ""
    console.print(f"validation: {state}{counts}")
    if report.get("summary") and isinstance(report["summary"], str):
        console.print(escape(report["summary"]))
    for r in failed_results:
        what = escape(f"{r.get('name') or r.get('check')}: {r.get('message', '')}")
        console.print(f"  [red]✗[/red] {what}")


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="The reference: NAME@VERSION.")],
    b: Annotated[str, typer.Argument(help="The version compared with it: NAME@VERSION.")],
) -> None:
    """Compare two versions: schema changes, row counts, distribution shift per column."""
    from opsloop import data

    d = data.diff(a, b)
    same = " (same content)" if d.same_content else ""
    console.print(f"[bold]{escape(d.a)}[/bold] -> [bold]{escape(d.b)}[/bold]{same}")
    delta = d.rows_b - d.rows_a
    console.print(f"rows: {d.rows_a:,} -> {d.rows_b:,} ({delta:+,})")
    if d.schema_changed:
        changes = Table(title="schema changes")
        for col in ("change", "column", "type in a", "type in b"):
            changes.add_column(col)
        for c in d.added:
            changes.add_row("[green]added[/green]", escape(c.name), "", escape(c.type))
        for c in d.removed:
            changes.add_row("[red]removed[/red]", escape(c.name), escape(c.type), "")
        for r in d.retyped:
            changes.add_row(
                "[yellow]retyped[/yellow]", escape(r.column), escape(r.type_a), escape(r.type_b)
            )
        console.print(changes)
    else:
        console.print("schema: unchanged")
    shifts = Table(title="distribution shift (a is the reference)")
    for col in (
        "column",
        "kind",
        "missing a -> b",
        "PSI",
        "mean shift (ref std)",
        "std change",
        "TVD",
        "categories changed",
    ):
        shifts.add_column(col, justify="left" if col in ("column", "kind") else "right")
    for s in d.columns.values():
        shifts.add_row(
            escape(s.column),
            s.kind,
            f"{100 * s.missing_rate_a:.1f}% -> {100 * s.missing_rate_b:.1f}%",
            _psi(s.psi),
            _num(s.mean_shift, "+.3f"),
            _num(s.std_change, "+.1%"),
            _num(s.tvd, ".3f"),
            _num(s.category_change, ".0%"),
        )
    console.print(shifts)
    console.print("PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift")


def _psi(v: float | None) -> str:
    if v is None:
        return "-"
    color = "red" if v > 0.25 else "yellow" if v > 0.1 else "green"
    return f"[{color}]{v:.3f}[/{color}]"


@app.command("register")
def register(
    path: Annotated[str, typer.Argument(help="A CSV or Parquet file, or a folder of them.")],
    name: Annotated[str, typer.Option("--name", "-n", help="The dataset name.")],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="What the data is.")
    ] = None,
) -> None:
    """Register a file or folder as a new version of a dataset (same content: same version)."""
    from opsloop import data

    dv = data.register(path, name, description=description)
    what = "registered" if dv.is_new else "already registered as"
    console.print(
        f"{what} {escape(dv.ref)}: {dv.num_rows:,} rows x {dv.num_columns} columns, digest {dv.digest[:12]}"
    )
