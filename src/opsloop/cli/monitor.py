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

if TYPE_CHECKING:
    from opsloop.monitoring.checks import DriftReport

app = typer.Typer(
    help="Monitoring: drift of current data against a reference.",
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
