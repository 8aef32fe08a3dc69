"""Data quality on prediction-log windows: the data part's validation checks, run on
what a deployment was asked.

The checks come from the reference dataset version (the specs of the validation
report stored with it: ``opsloop.data.set_validation_report``) or from a list given to
the monitor (dicts, as ``opsloop.data.validation.checks_from_dicts`` reads them, or
``Check`` objects). A custom check stored with a report has no function to rebuild and
is left out, with a note, and so is ``row_count`` (about the training set's size, not
a window's: give one to the monitor for that). Checks about columns the window does not have (the label, a
column only the training data had) are left out too when they come from the
reference; given ones run and fail with the reason, like any other check.

Example::

    from opsloop.monitoring.quality import reference_checks, window_quality

    checks, notes = reference_checks(dataset_version)
    report = window_quality(window_df, checks)
    report.passed, [r.name for r in report.failures]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opsloop.data.validation import Check, ValidationReport, checks_from_dicts, validate
from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from opsloop.data.entities import DatasetVersion


def checks_of(specs: Iterable[Mapping[str, Any] | Check]) -> list[Check]:
    """Checks from dicts or ``Check`` objects (InvalidInput naming a bad one).

    Example::

        checks_of([{"check": "in_range", "column": "age", "min": 0, "max": 120}])
    """
    if isinstance(specs, Mapping | str) or not isinstance(specs, Iterable):
        raise InvalidInput(f"quality checks must be a list of check dicts, got {specs!r}")
    items = list(specs)
    out: list[Check] = []
    dicts: list[Mapping[str, Any]] = []
    for item in items:
        if isinstance(item, Check):
            out.extend(checks_from_dicts(dicts))
            dicts = []
            out.append(item)
        else:
            dicts.append(item)
    out.extend(checks_from_dicts(dicts))
    return out


def specs_of(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """The stored form of checks; a custom check (a Python function) cannot be stored."""
    out = []
    for c in checks:
        spec = c.to_dict()
        if spec.get("check") == "custom":
            raise InvalidInput(
                f"the custom check {c.name!r} cannot be stored with a monitor (its function "
                "is Python code); give declarative checks (in_range, not_null, ...)"
            )
        out.append(spec)
    return out


def reference_checks(
    dv: DatasetVersion, columns: Iterable[str] | None = None
) -> tuple[list[Check], list[str]]:
    """The checks a dataset version carries (from its stored validation report), and
    notes on those left out: custom ones, and - when ``columns`` is given - those
    about other columns than these."""
    report = dv.validation_report or {}
    notes: list[str] = []
    results = report.get("results") if isinstance(report, Mapping) else None
    if not isinstance(results, list):
        return [], notes
    keep = None if columns is None else set(columns)
    out: list[Check] = []
    for r in results:
        spec = r.get("spec") if isinstance(r, Mapping) else None
        if not isinstance(spec, Mapping) or not spec.get("check"):
            continue
        if spec.get("check") == "custom":
            notes.append(f"{r.get('name')}: a custom check is not stored with its function")
            continue
        try:
            check = Check.from_dict(spec)
        except InvalidInput as exc:
            notes.append(f"{r.get('name')}: {exc.message}")
            continue
        if check.kind == "row_count":
            notes.append(f"{check.name}: about the dataset's size, not a window's")
            continue
        if keep is not None and check.columns and not set(check.columns) <= keep:
            notes.append(f"{check.name}: about column(s) the prediction log does not have")
            continue
        out.append(check)
    return out, notes


def window_quality(window: pd.DataFrame, checks: Sequence[Check]) -> ValidationReport:
    """Run ``checks`` on a window of the prediction log (every check runs; one that
    cannot gives a failed result with its error - see ``opsloop.data.validation``)."""
    return validate(window, checks)
