"""Data checks on a step's inputs and outputs, run where the step runs.

A step declares checks (from ``opsloop.data.validation``) on the arguments it takes and
on the outputs it returns::

    from opsloop.data import validation as v

    @opsloop.step(
        checks={"df": [v.not_null("id"), v.unique("id")]},
        output_checks=[v.row_count(min=1), v.in_range("price", min=0)],
    )
    def clean(df: pd.DataFrame) -> pd.DataFrame: ...

    @opsloop.step(outputs=("train", "test"),
                  output_checks={"train": [v.row_count(min=100)], "test": [v.row_count(min=10)]})
    def split(df): ...

A check is a ``Check`` or its dict form (``{"check": "not_null", "column": "id"}``);
one check may stand alone instead of in a list. Names are checked when the step is
decorated: an argument the function does not take, or an output it does not declare,
is an ``InvalidInput`` naming both.

Where and when they run: in the worker, on the live values - input checks after the
inputs are loaded and before the function is called, output checks after it returns and
before any output is stored, so a failed check leaves no output behind. Every check of
every checked value runs (one ``ValidationReport`` each), and each report is stored as
an artifact of the step's run (``checks/inputs/<argument>.json``,
``checks/outputs/<output>.json``; ``ValidationReport.to_dict``'s JSON), whether it
passed or not. A failed check fails the attempt with ``ChecksFailed`` and is not retried:
the same data would fail again. Downstream steps are then skipped.

Checks are part of the step's cache key (change a check and the step runs again); a
cache hit skips them, since the stored outputs passed them when they were made. Called
outside a pipeline, a step is its plain function, and its checks do not run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    from opsloop.data.validation import Check, ValidationReport

# Artifact folders of the reports, under the step run's artifacts.
INPUTS_DIR = "checks/inputs"
OUTPUTS_DIR = "checks/outputs"

Checks = tuple[tuple[str, tuple["Check", ...]], ...]


class ChecksFailed(InvalidInput):
    """A step's input or output failed its checks (raised inside the worker).

    Example message::

        step 'clean': input 'df' failed 1 of 2 checks on 1,000 rows: not_null(id):
        id: 3 of 1,000 rows (0.3%) are null; e.g. row 4: null (report: checks/inputs/df.json)
    """


@dataclass(frozen=True)
class StepChecks:
    """A step's checks: per argument name, and per output name, in declaration order.

    Example::

        StepChecks(inputs=(("df", (not_null("id"),)),), outputs=())
    """

    inputs: Checks = ()
    outputs: Checks = ()

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)

    def functions(self) -> list[Callable[..., Any]]:
        """The Python functions of the custom checks (their code counts in the cache key)."""
        out = []
        for _, checks in (*self.inputs, *self.outputs):
            for c in checks:
                fn = getattr(c, "fn", None)
                if c.kind == "custom" and callable(fn):
                    out.append(fn)
        return out

    def fingerprint(self, code_hash: Callable[[Callable[..., Any]], str]) -> Any:
        """The checks as plain data for the cache key; custom checks by their code hash.

        Example::

            step.checks.fingerprint(CodeHasher().hash)
        """

        def part(pairs: Checks) -> list[Any]:
            out = []
            for name, checks in pairs:
                specs = []
                for c in checks:
                    spec = c.to_dict()
                    fn = getattr(c, "fn", None)
                    if c.kind == "custom" and callable(fn):
                        spec["code"] = code_hash(fn)
                    specs.append(spec)
                out.append([name, specs])
            return out

        return {"inputs": part(self.inputs), "outputs": part(self.outputs)}


def _check_list(step: str, what: str, value: Any) -> tuple[Check, ...]:
    from opsloop.data.validation import Check

    items = [value] if isinstance(value, (Check, Mapping)) else value
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise InvalidInput(
            f"step {step!r}: the checks on {what} must be a list of checks "
            f"(opsloop.data.validation), got {value!r}"
        )
    out: list[Check] = []
    for i, item in enumerate(items):
        if isinstance(item, Check):
            out.append(item)
        elif isinstance(item, Mapping):
            try:
                out.append(Check.from_dict(item))
            except InvalidInput as exc:
                raise InvalidInput(f"step {step!r}: check #{i} on {what}: {exc.message}") from None
        else:
            raise InvalidInput(
                f"step {step!r}: check #{i} on {what} is not a check: {item!r}; build checks "
                "with opsloop.data.validation (e.g. validation.not_null('id')) or as dicts "
                "({'check': 'not_null', 'column': 'id'})"
            )
    return tuple(out)


def parse(
    step: str,
    signature: Callable[[], inspect.Signature],
    output_names: tuple[str, ...],
    multi: bool,
    checks: Mapping[str, Any] | None,
    output_checks: Any,
) -> StepChecks:
    """Check and normalise ``@step(checks=..., output_checks=...)``.

    ``signature`` is called only when there are input checks (reading it may fail).

    Example::

        parse("clean", lambda: inspect.signature(clean), ("output",), False,
              {"df": [not_null("id")]}, [row_count(min=1)])
    """
    inputs: list[tuple[str, tuple[Check, ...]]] = []
    if checks is not None:
        if not isinstance(checks, Mapping):
            raise InvalidInput(
                f"step {step!r}: checks must map argument names to lists of checks, "
                f"e.g. checks={{'df': [validation.not_null('id')]}}; got {checks!r}"
            )
        params = signature().parameters
        var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        for name, value in checks.items():
            p = params.get(name) if isinstance(name, str) else None
            if p is not None and p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidInput(
                    f"step {step!r}: cannot check {'*' if p.kind == p.VAR_POSITIONAL else '**'}"
                    f"{name}; check a named argument"
                )
            if p is None and not (var_kw and isinstance(name, str) and name.isidentifier()):
                known = [
                    n for n, q in params.items() if q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)
                ]
                raise InvalidInput(
                    f"step {step!r} has no argument {name!r} to check; its arguments: {known}"
                )
            found = _check_list(step, f"argument {name!r}", value)
            if found:
                inputs.append((name, found))
    outputs: list[tuple[str, tuple[Check, ...]]] = []
    if output_checks is not None:
        # A mapping names outputs, unless it is one check in its dict form.
        one_dict = (
            isinstance(output_checks, Mapping)
            and "check" in output_checks
            and "check" not in output_names
        )
        if isinstance(output_checks, Mapping) and not one_dict:
            by_name: dict[str, Any] = {}
            for key, value in output_checks.items():
                out: Any = key
                if isinstance(key, int) and not isinstance(key, bool):
                    out = output_names[key] if 0 <= key < len(output_names) else None
                if out not in output_names:
                    raise InvalidInput(
                        f"step {step!r} has no output {key!r} to check; its outputs: "
                        f"{list(output_names)}"
                    )
                if out in by_name:
                    raise InvalidInput(f"step {step!r}: output {out!r} is named twice")
                by_name[out] = value
            for out in output_names:  # in the order the step declares them
                if out in by_name:
                    found = _check_list(step, f"output {out!r}", by_name[out])
                    if found:
                        outputs.append((out, found))
        else:
            found = _check_list(step, "its output", output_checks)
            if found and multi:
                raise InvalidInput(
                    f"step {step!r} has the outputs {list(output_names)}: give output_checks "
                    f"by output, e.g. output_checks={{{output_names[0]!r}: [...]}}"
                )
            if found:
                outputs.append((output_names[0], found))
    return StepChecks(tuple(inputs), tuple(outputs))


def report_path(kind: str, name: str) -> str:
    """The artifact path (under the step run's artifacts) of one checked value's report.

    Example::

        >>> report_path("input", "df")
        'checks/inputs/df.json'
    """
    return f"{INPUTS_DIR if kind == 'input' else OUTPUTS_DIR}/{name}.json"


def run_checks(
    step: str,
    kind: str,
    values: Sequence[tuple[str, Any]],
    pairs: Checks,
    put: Callable[[bytes], tuple[str, int]],
) -> tuple[list[tuple[str, str, int]], str | None]:
    """Check each value, store each report with ``put``; the stored reports (relative
    path, sha256, size) and, if any check failed, the error message.

    ``kind`` is ``"input"`` or ``"output"``; ``values`` pairs each checked name with its
    value. Every check runs, whatever fails.

    Example::

        stored, error = run_checks("clean", "input", [("df", df)], step.checks.inputs, put)
    """
    from opsloop.data.validation import validate

    stored: list[tuple[str, str, int]] = []
    problems: list[str] = []
    for (name, value), (_, checks) in zip(values, pairs, strict=True):
        path = report_path(kind, name)
        try:
            report: ValidationReport = validate(value, checks)
        except InvalidInput:  # not a table: nothing to report on
            problems.append(
                f"{kind} {name!r} is a {type(value).__name__}; its checks need a pandas "
                "DataFrame or a pyarrow Table"
            )
            continue
        data = json.dumps(report.to_dict(), indent=1).encode()
        stored.append((path, *put(data)))
        if not report.passed:
            failures = report.failures
            listed = "; ".join(f"{r.name}: {r.message}" for r in failures)
            problems.append(
                f"{kind} {name!r} failed {len(failures)} of {len(report.results)} checks on "
                f"{report.rows:,} rows: {listed} (report: {path})"
            )
    if not problems:
        return stored, None
    return stored, f"step {step!r}: " + "; ".join(problems)
