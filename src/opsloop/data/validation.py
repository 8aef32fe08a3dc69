"""Declarative data validation: checks -> results -> a report.

A :class:`Check` is a small immutable description of one expectation about a dataset
("``temp`` lies in [-40, 125]", "``id`` is unique"). Build checks with the constructors
below, or from plain dicts (YAML/JSON config) with :func:`checks_from_dicts`; every check
turns back into its dict with :meth:`Check.to_dict`.

:func:`validate` runs *all* the checks on a pandas DataFrame or a pyarrow Table and returns
a :class:`ValidationReport` holding one :class:`CheckResult` per check, in order. It never
stops early: a check that cannot run (missing column, a type it does not apply to, a regex
that does not compile, a custom function that raises) gives a failed result whose
``error`` says why, and the other checks still run. Bad arguments to a constructor raise
:class:`~opsloop.errors.InvalidInput` at once. :meth:`ValidationReport.raise_for_failures`
turns a failed report into :class:`ValidationFailed`.

Example::

    from datetime import timedelta
    from opsloop.data import validation as v

    checks = [
        v.column_exists("temp", type="float"),
        v.unique("id"),
        v.in_range("temp", min=-40, max=125),
        v.fresh("ts", max_age=timedelta(hours=1)),
        v.custom("positive_margin", lambda df: df["price"] > df["cost"]),
    ]
    report = v.validate(df, checks)
    print(report.summary())
    report.raise_for_failures()

    # the same kind of checks, as config
    v.checks_from_dicts([{"check": "in_range", "column": "temp", "min": -40, "max": 125}])

The rules, decided once:

* **Missing values.** Checks work on Arrow data. A DataFrame's columns go through
  pyarrow's own pandas conversion, so pandas' missing markers (``NaN``, ``None``, ``NaT``,
  ``pd.NA``) all become null: in pandas, ``NaN`` in a float column *is* the missing marker.
  In an Arrow float column, null and ``NaN`` are different values:

  - ``not_null`` and ``max_missing`` count both null and NaN as missing;
  - the value checks (``in_range``, ``accepted_values``, ``matches``, ``compare``) skip
    nulls (missingness is what ``not_null`` is for) but treat NaN as a value that meets no
    condition: NaN is outside every range, never an accepted value, and fails every
    comparison, ``!=`` included;
  - ``compare`` skips rows where either side is null unless ``nulls_fail=True``;
  - ``unique`` ignores rows with a null or NaN in any key column (SQL's rule for UNIQUE);
  - a custom per-row check's NA result counts as a failure.

* **Time.** Naive timestamps are taken to be UTC; tz-aware ones are instants (their zone
  does not matter). A date is midnight UTC of that day. The same rule applies to the
  column, to ``in_range`` bounds and to ``fresh``'s ``now``. ``fresh`` passes when
  ``now - newest <= max_age``; ``now`` is the moment :func:`validate` runs unless the check
  fixes it; a newest value in the future passes.

* **Rows** are numbered by position from 0, for pandas and Arrow alike (a DataFrame's
  index labels are not used). Shares are of all rows of the table; an empty table passes
  every per-row check.

* ``matches`` is a full match in RE2 syntax (Arrow's vectorised engine: ``\\d`` and ``\\w``
  are ASCII). A pattern RE2 rejects but Python's :mod:`re` accepts (lookaround,
  backreferences) is matched with :mod:`re` over the column's distinct values: correct,
  slower.

* Dictionary-encoded (pandas categorical) columns are checked as their value type.

The JSON shape of a report (:meth:`ValidationReport.to_dict`)::

    {"passed": false, "rows": 1000, "checks": 2, "failed": 1,
     "results": [
       {"check": "in_range", "name": "in_range(temp, -40..125)", "columns": ["temp"],
        "passed": false, "failing_rows": 12, "failing_share": 0.012,
        "message": "temp: 12 of 1,000 rows (1.2%) outside [-40, 125]; e.g. row 17: 130.5",
        "error": null,
        "examples": [{"row": 17, "values": {"temp": 130.5}}, ...],
        "details": {},
        "spec": {"check": "in_range", "column": "temp", "min": -40, "max": 125, "strict": false}},
       ...]}

``failing_rows``/``failing_share`` are null for table-level checks (``column_exists``,
``row_count``, ``fresh``, a custom check returning one bool) and for checks that could not
run. Example values are JSON: NaN -> null, +/-inf -> "inf"/"-inf", timestamps and dates ->
ISO strings, decimals -> strings, bytes -> hex.
"""

from __future__ import annotations

import abc
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc

from opsloop.errors import InvalidInput

#: At most this many failing rows are kept as examples in a result.
MAX_EXAMPLES: Final = 5

#: Type families ``column_exists(type=...)`` accepts besides Arrow type names. A family
#: wins over an Arrow alias of the same name: ``"float"`` is any float width (ask for
#: ``"float32"`` to mean Arrow's ``float``), ``"string"`` includes ``large_string``.
TYPE_FAMILIES: Final[tuple[str, ...]] = (
    "integer",
    "float",
    "numeric",
    "string",
    "bool",
    "timestamp",
    "date",
)

#: The comparators of :func:`compare` (word aliases are accepted and stored as symbols).
COMPARATORS: Final[tuple[str, ...]] = ("<", "<=", "==", "!=", ">=", ">")
_COMPARATOR_WORDS: Final[dict[str, str]] = {
    "lt": "<",
    "le": "<=",
    "eq": "==",
    "ne": "!=",
    "ge": ">=",
    "gt": ">",
}
_COMPARE_FUNCTIONS: Final[dict[str, Any]] = {
    "<": pc.less,
    "<=": pc.less_equal,
    "==": pc.equal,
    "!=": pc.not_equal,
    ">=": pc.greater_equal,
    ">": pc.greater,
}
# Arrow type names that take parameters, so pa.type_for_alias cannot parse them.
_PARAMETRIC_TYPE = re.compile(
    r"(timestamp|time32|time64|duration|decimal(32|64|128|256)?|list|large_list|"
    r"fixed_size_list|fixed_size_binary|struct|map|dictionary)\s*[\[<(].*",
    re.DOTALL,
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|us|w|d|h|m|s)")
_DURATION_UNITS: Final[dict[str, timedelta]] = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
    "us": timedelta(microseconds=1),
}
_NS_PER_UNIT: Final[dict[str, int]] = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- errors


class ValidationFailed(InvalidInput):
    """A dataset failed one or more checks; ``.report`` holds the whole report.

    Raised by :meth:`ValidationReport.raise_for_failures`. The message lists every failed
    check with what failed.
    """

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(_failure_message(report))

    def __reduce__(self) -> tuple[type[ValidationFailed], tuple[ValidationReport]]:
        # Exceptions pickle their args (the message) by default; pipeline steps run in
        # other processes, so rebuild from the report instead.
        return (ValidationFailed, (self.report,))


def _failure_message(report: ValidationReport) -> str:
    failures = report.failures
    lines = [
        f"data validation failed: {len(failures)} of {len(report.results)} checks failed "
        f"on {report.rows:,} rows"
    ]
    lines += [f"- {r.name}: {r.message}" for r in failures]
    return "\n".join(lines)


class _CannotRun(Exception):
    """The check does not apply to this data; becomes the result's ``error``."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one dataset (JSON-serialisable via :meth:`to_dict`)."""

    check: str
    """The check's kind, e.g. ``"in_range"``."""
    name: str
    """A readable name, e.g. ``"in_range(temp, -40..125)"``."""
    columns: tuple[str, ...]
    passed: bool
    message: str
    """What was found, in words."""
    failing_rows: int | None = None
    """Rows that fail (None for table-level checks and checks that could not run)."""
    failing_share: float | None = None
    """``failing_rows / rows`` (0.0 on an empty table)."""
    examples: tuple[dict[str, Any], ...] = ()
    """Up to 5 failing rows: ``{"row": position, "values": {column: value}}``."""
    error: str | None = None
    """Why the check could not run, if it could not."""
    details: dict[str, Any] = field(default_factory=dict)
    """Kind-specific findings, e.g. ``{"newest": ..., "age_seconds": ...}`` for ``fresh``."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The check itself, as :meth:`Check.to_dict` gives it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "name": self.name,
            "columns": list(self.columns),
            "passed": self.passed,
            "failing_rows": self.failing_rows,
            "failing_share": self.failing_share,
            "message": self.message,
            "error": self.error,
            "examples": [dict(e) for e in self.examples],
            "details": dict(self.details),
            "spec": dict(self.spec),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        try:
            return cls(
                check=str(d["check"]),
                name=str(d["name"]),
                columns=tuple(d.get("columns") or ()),
                passed=bool(d["passed"]),
                message=str(d.get("message", "")),
                failing_rows=d.get("failing_rows"),
                failing_share=d.get("failing_share"),
                examples=tuple(dict(e) for e in d.get("examples") or ()),
                error=d.get("error"),
                details=dict(d.get("details") or {}),
                spec=dict(d.get("spec") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"not a check result: {e!r} in {d!r}") from None


@dataclass(frozen=True)
class ValidationReport:
    """The results of :func:`validate`: one :class:`CheckResult` per check, in order."""

    results: tuple[CheckResult, ...]
    rows: int
    """Rows in the validated table."""

    @property
    def passed(self) -> bool:
        """True when every check passed (a report with no checks passes)."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The results that did not pass, including those that could not run."""
        return [r for r in self.results if not r.passed]

    @property
    def errors(self) -> list[CheckResult]:
        """The results of checks that could not run."""
        return [r for r in self.results if r.error is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "checks": len(self.results),
            "failed": len(self.failures),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidationReport:
        """Rebuild a report from :meth:`to_dict`'s output (``passed``/``failed`` are derived)."""
        if not isinstance(d, Mapping) or "results" not in d:
            raise InvalidInput("not a validation report: expected a mapping with 'results'")
        return cls(
            results=tuple(CheckResult.from_dict(r) for r in d["results"]),
            rows=int(d.get("rows", 0)),
        )

    def summary(self) -> str:
        """A few readable lines: the verdict, then one line per check.

        >>> print(report.summary())  # doctest: +SKIP
        FAILED: 1 of 2 checks failed on 1,000 rows
          ok     unique(id)
          FAIL   in_range(temp, -40..125): temp: 12 of 1,000 rows (1.2%) outside [-40, 125]; ...
        """
        n_failed = len(self.failures)
        if n_failed:
            head = f"FAILED: {n_failed} of {len(self.results)} checks failed on {self.rows:,} rows"
        else:
            head = f"PASSED: all {len(self.results)} checks passed on {self.rows:,} rows"
        lines = [head]
        for r in self.results:
            if r.error is not None:
                lines.append(f"  ERROR  {r.name}: {r.message}")
            elif not r.passed:
                lines.append(f"  FAIL   {r.name}: {r.message}")
            else:
                lines.append(f"  ok     {r.name}")
        return "\n".join(lines)

    def raise_for_failures(self) -> ValidationReport:
        """Raise :class:`ValidationFailed` if any check failed; else return the report."""
        if not self.passed:
            raise ValidationFailed(self)
        return self


# --------------------------------------------------------------------------- checks


class Check(abc.ABC):
    """One declarative expectation about a dataset. Build with the constructors below.

    Checks are immutable and compare equal when they check the same thing;
    ``Check.from_dict(check.to_dict()) == check`` for every check but :func:`custom`.
    """

    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A readable name, e.g. ``in_range(temp, -40..125)``."""

    @property
    @abc.abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The columns the check reads (empty for table-level checks)."""

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-ready (None values are left out)."""

    @abc.abstractmethod
    def _run(self, data: _Data) -> CheckResult:
        """Check ``data``; raise :class:`_CannotRun` if the check does not apply."""

    def to_dict(self) -> dict[str, Any]:
        """The check as plain JSON-able data: ``{"check": kind, **arguments}``.

        >>> in_range("temp", min=-40).to_dict()
        {'check': 'in_range', 'column': 'temp', 'min': -40, 'strict': False}
        """
        return {"check": self.kind, **{k: v for k, v in self._params().items() if v is not None}}

    @staticmethod
    def from_dict(
        spec: Mapping[str, Any],
        *,
        functions: Mapping[str, Callable[[pd.DataFrame], Any]] | None = None,
    ) -> Check:
        """Build a check from :meth:`to_dict`'s form (e.g. one item of a YAML list).

        A custom check has no serialisable function: it can only be rebuilt when
        ``functions`` maps its name to the function; otherwise this raises InvalidInput.

        >>> Check.from_dict({"check": "not_null", "column": "id"})
        not_null(column='id')
        """
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"a check must be a mapping with a 'check' key, got {spec!r}")
        kind = spec.get("check")
        if kind == "custom":
            return _custom_from_dict(spec, functions or {})
        constructor = _CONSTRUCTORS.get(kind) if isinstance(kind, str) else None
        if constructor is None:
            known = ", ".join([*_CONSTRUCTORS, "custom"])
            raise InvalidInput(f"unknown check {kind!r}; known checks: {known}")
        args = {k: v for k, v in spec.items() if k != "check"}
        if kind == "unique" and "column" in args and "columns" not in args:
            args["columns"] = args.pop("column")
        params = inspect.signature(constructor).parameters
        unknown = sorted(set(args) - set(params))
        if unknown:
            raise InvalidInput(
                f"{kind}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(params)}"
            )
        missing = [
            p.name
            for p in params.values()
            if p.default is inspect.Parameter.empty and p.name not in args
        ]
        if missing:
            raise InvalidInput(f"{kind}: missing key(s) {', '.join(map(repr, missing))}")
        check: Check = constructor(**args)
        return check

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items() if v is not None)
        return f"{self.kind}({args})"


@dataclass(frozen=True, repr=False)
class _ColumnExists(Check):
    kind: ClassVar[str] = "column_exists"
    column: str
    dtype: str | None

    @property
    def name(self) -> str:
        return (
            f"column_exists({self.column}, {self.dtype})"
            if self.dtype
            else f"column_exists({self.column})"
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column, "type": self.dtype}

    def _run(self, data: _Data) -> CheckResult:
        if not data.has(self.column):
            return _table_result(self, False, f"{self.column}: {data.no_column(self.column)}")
        actual = data.column(self.column).type
        details = {"type": str(actual)}
        if self.dtype is None or _type_matches(actual, self.dtype):
            return _table_result(self, True, f"{self.column}: present ({actual})", details)
        return _table_result(
            self, False, f"{self.column}: type is {actual}, expected {self.dtype}", details
        )


@dataclass(frozen=True, repr=False)
class _NotNull(Check):
    kind: ClassVar[str] = "not_null"
    column: str

    @property
    def name(self) -> str:
        return f"not_null({self.column})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column}

    def _run(self, data: _Data) -> CheckResult:
        missing = _missing_mask(data.column(self.column))
        return _rows_result(self, data, missing, self.column, "are missing", self.columns)


@dataclass(frozen=True, repr=False)
class _MaxMissing(Check):
    kind: ClassVar[str] = "max_missing"
    column: str
    share: float

    @property
    def name(self) -> str:
        return f"max_missing({self.column}, {self.share:g})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column, "share": self.share}

    def _run(self, data: _Data) -> CheckResult:
        missing = _missing_mask(data.column(self.column))
        share = float(np.count_nonzero(missing)) / data.num_rows if data.num_rows else 0.0
        passed = share <= self.share
        verdict = "within" if passed else "more than"
        return _rows_result(
            self,
            data,
            missing,
            self.column,
            f"are missing, {verdict} the allowed {self.share * 100:g}%",
            self.columns,
            passed=passed,
        )


@dataclass(frozen=True, repr=False)
class _Unique(Check):
    kind: ClassVar[str] = "unique"
    keys: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"unique({', '.join(self.keys)})"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys

    def _params(self) -> dict[str, Any]:
        if len(self.keys) == 1:
            return {"column": self.keys[0]}
        return {"columns": list(self.keys)}

    def _run(self, data: _Data) -> CheckResult:
        first = data.column(self.keys[0])
        valid = ~_missing_mask(first)
        key, _ = _dense_codes(first)
        for name in self.keys[1:]:
            col = data.column(name)
            valid &= ~_missing_mask(col)
            codes, cardinality = _dense_codes(col)
            # Mixed radix, then re-densified so the key stays below the row count.
            key, _ = _dense_codes(pa.chunked_array([pa.array(key * cardinality + codes)]))
        counts = np.bincount(key[valid], minlength=int(key.max(initial=0)) + 1)
        duplicated = valid & (counts[key] > 1)
        n_values = int(np.count_nonzero(counts > 1))
        noun = "value" if len(self.keys) == 1 else "key"
        what = f"are duplicates ({n_values:,} {noun}{'' if n_values == 1 else 's'} repeated)"
        return _rows_result(
            self,
            data,
            duplicated,
            ", ".join(self.keys),
            what,
            self.keys,
            details={"duplicated_values": n_values},
        )


Bound = int | float | str
"""An ``in_range`` bound: a number, or an ISO date/time (datetimes are stored as ISO text)."""


@dataclass(frozen=True, repr=False)
class _InRange(Check):
    kind: ClassVar[str] = "in_range"
    column: str
    low: Bound | None
    high: Bound | None
    strict: bool

    @property
    def name(self) -> str:
        low = "" if self.low is None else _fmt_bound(self.low)
        high = "" if self.high is None else _fmt_bound(self.high)
        return f"in_range({self.column}, {low}..{high}{', strict' if self.strict else ''})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column, "min": self.low, "max": self.high, "strict": self.strict}

    def _interval(self) -> str:
        low = "-inf" if self.low is None else _fmt_bound(self.low)
        high = "inf" if self.high is None else _fmt_bound(self.high)
        opening = "(" if self.strict or self.low is None else "["
        closing = ")" if self.strict or self.high is None else "]"
        return f"{opening}{low}, {high}{closing}"

    def _run(self, data: _Data) -> CheckResult:
        col = data.column(self.column)
        typ = col.type
        if pa.types.is_null(typ):  # all null (e.g. an all-None object column): nothing to check
            return _rows_result(self, data, _no_rows(col), self.column, self._what(), self.columns)
        if _is_numeric(typ):
            convert: Callable[[Bound], Any] = _number_bound
        elif pa.types.is_timestamp(typ) or pa.types.is_date(typ):
            col = _as_utc(col)
            convert = _time_bound
        elif _is_string(typ):
            convert = _string_bound
        else:
            raise _CannotRun(
                f"in_range applies to numeric, timestamp, date and string columns; "
                f"{self.column} is {typ}"
            )
        inside = np.ones(len(col), dtype=bool)
        if self.low is not None:
            above = pc.greater if self.strict else pc.greater_equal
            inside &= _bool_np(above(col, convert(self.low)))
        if self.high is not None:
            below = pc.less if self.strict else pc.less_equal
            inside &= _bool_np(below(col, convert(self.high)))
        # NaN compares false with everything, so it lands outside: on purpose.
        fail = _valid_np(col) & ~inside
        return _rows_result(self, data, fail, self.column, self._what(), self.columns)

    def _what(self) -> str:
        return f"outside {self._interval()}"


@dataclass(frozen=True, repr=False)
class _AcceptedValues(Check):
    kind: ClassVar[str] = "accepted_values"
    column: str
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"accepted_values({self.column}, {_fmt_set(self.values)})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column, "values": list(self.values)}

    def _run(self, data: _Data) -> CheckResult:
        col = data.column(self.column)
        typ = col.type
        what = f"not in {_fmt_set(self.values)}"
        if pa.types.is_null(typ):
            return _rows_result(self, data, _no_rows(col), self.column, what, self.columns)
        kind = _value_kind(self.values[0]) or "string"  # one kind, checked when built
        fits = {"bool": pa.types.is_boolean, "number": _is_numeric, "string": _is_string}[kind]
        if not fits(typ):
            raise _CannotRun(f"accepted_values has {kind} values but {self.column} is {typ}")
        if kind == "number":
            number_type = (
                pa.float64() if any(isinstance(x, float) for x in self.values) else pa.int64()
            )
            value_set = pa.array(self.values, type=number_type)
        else:
            value_set = pa.array(self.values).cast(typ)
        ok = _bool_np(pc.is_in(col, value_set=value_set))
        fail = _valid_np(col) & ~ok
        return _rows_result(self, data, fail, self.column, what, self.columns)


@dataclass(frozen=True, repr=False)
class _Matches(Check):
    kind: ClassVar[str] = "matches"
    column: str
    pattern: str

    @property
    def name(self) -> str:
        return f"matches({self.column}, /{self.pattern}/)"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {"column": self.column, "pattern": self.pattern}

    def _run(self, data: _Data) -> CheckResult:
        col = data.column(self.column)
        what = f"do not match /{self.pattern}/"
        if pa.types.is_null(col.type):
            col = col.cast(pa.string())  # all null: still compile the pattern
        if not _is_string(col.type):
            raise _CannotRun(f"matches applies to string columns; {self.column} is {col.type}")
        if pa.types.is_string_view(col.type):
            col = col.cast(pa.large_string())
        ok = _bool_np(_full_match(col, self.pattern))
        fail = _valid_np(col) & ~ok
        return _rows_result(self, data, fail, self.column, what, self.columns)


@dataclass(frozen=True, repr=False)
class _RowCount(Check):
    kind: ClassVar[str] = "row_count"
    low: int | None
    high: int | None

    @property
    def name(self) -> str:
        low = "" if self.low is None else str(self.low)
        high = "" if self.high is None else str(self.high)
        return f"row_count({low}..{high})"

    @property
    def columns(self) -> tuple[str, ...]:
        return ()

    def _params(self) -> dict[str, Any]:
        return {"min": self.low, "max": self.high}

    def _run(self, data: _Data) -> CheckResult:
        n = data.num_rows
        if self.low is not None and self.high is not None:
            expected = f"between {self.low:,} and {self.high:,}"
        elif self.low is not None:
            expected = f"at least {self.low:,}"
        else:
            expected = f"at most {self.high:,}"
        too_few = self.low is not None and n < self.low
        too_many = self.high is not None and n > self.high
        passed = not (too_few or too_many)
        verdict = "expected" if passed else "but expected"
        return _table_result(self, passed, f"{n:,} rows, {verdict} {expected}", {"rows": n})


@dataclass(frozen=True, repr=False)
class _Fresh(Check):
    kind: ClassVar[str] = "fresh"
    column: str
    max_age: timedelta
    now: datetime | None

    @property
    def name(self) -> str:
        return f"fresh({self.column}, {_fmt_duration(self.max_age)})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _params(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "max_age": _fmt_duration(self.max_age),
            "now": None if self.now is None else self.now.isoformat(),
        }

    def _run(self, data: _Data) -> CheckResult:
        col = data.column(self.column)
        if pa.types.is_null(col.type):
            col = col.cast(pa.timestamp("us"))  # all null: fails below as "no values"
        if not (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)):
            raise _CannotRun(
                f"fresh applies to timestamp and date columns; {self.column} is {col.type}"
            )
        now = self.now if self.now is not None else datetime.now(UTC)
        now_ns = _epoch_ns(now)
        newest = pc.max(_as_utc(col))
        if not newest.is_valid:
            return _table_result(
                self, False, f"{self.column}: no values to check ({len(col):,} rows, none set)"
            )
        unit = newest.type.unit
        newest_ns = int(newest.cast(pa.int64()).as_py()) * _NS_PER_UNIT[unit]
        age = timedelta(microseconds=(now_ns - newest_ns) // 1000)
        newest_text = (_EPOCH + timedelta(microseconds=newest_ns // 1000)).isoformat()
        details = {
            "newest": newest_text,
            "now": _as_utc_datetime(now).isoformat(),
            "age_seconds": age.total_seconds(),
            "max_age_seconds": self.max_age.total_seconds(),
        }
        passed = age <= self.max_age
        if age < timedelta(0):
            said = f"is {_fmt_age(-age)} in the future"
        else:
            said = f"is {_fmt_age(age)} old"
        verdict = "within" if passed else "more than"
        message = (
            f"{self.column}: newest value {newest_text} {said}, {verdict} the allowed "
            f"{_fmt_duration(self.max_age)}"
        )
        return _table_result(self, passed, message, details)


@dataclass(frozen=True, repr=False)
class _Compare(Check):
    kind: ClassVar[str] = "compare"
    left: str
    op: str
    right: str
    nulls_fail: bool

    @property
    def name(self) -> str:
        return f"compare({self.left} {self.op} {self.right})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.left, self.right)

    def _params(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "op": self.op,
            "right": self.right,
            "nulls_fail": self.nulls_fail,
        }

    def _run(self, data: _Data) -> CheckResult:
        left, right = data.column(self.left), data.column(self.right)
        if _is_temporal(left.type) and _is_temporal(right.type):
            left, right = _as_utc(left), _as_utc(right)
        try:
            holds = _COMPARE_FUNCTIONS[self.op](left, right)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            raise _CannotRun(
                f"cannot compare {self.left} ({left.type}) with {self.right} ({right.type})"
            ) from None
        both = _valid_np(left) & _valid_np(right)
        nan = _nan_np(left) | _nan_np(right)
        fail = np.where(both, ~_bool_np(holds) | nan, self.nulls_fail)
        subject = f"{self.left} {self.op} {self.right}"
        return _rows_result(self, data, fail, subject, "fail", (self.left, self.right))


@dataclass(frozen=True, repr=False)
class _Custom(Check):
    kind: ClassVar[str] = "custom"
    label: str
    fn: Callable[[pd.DataFrame], Any]
    show: tuple[str, ...] | None

    @property
    def name(self) -> str:
        return self.label

    @property
    def columns(self) -> tuple[str, ...]:
        return self.show or ()

    def _params(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "serializable": False,
            "columns": None if self.show is None else list(self.show),
        }

    def __repr__(self) -> str:
        return f"custom(name={self.label!r}, fn={self.fn!r})"

    def _run(self, data: _Data) -> CheckResult:
        try:
            out = self.fn(data.frame())
        except Exception as e:
            raise _CannotRun(f"the function raised {type(e).__name__}: {e}") from None
        if isinstance(out, bool | np.bool_) or (isinstance(out, np.ndarray) and out.ndim == 0):
            passed = bool(out)
            verdict = "passed" if passed else "returned False"
            return _table_result(self, passed, f"{self.label}: {verdict}")
        fail = ~_custom_mask(out, data.num_rows)
        show = self.show if self.show is not None else tuple(data.names)
        return _rows_result(self, data, fail, self.label, "fail", show)


# --------------------------------------------------------------------------- constructors


def column_exists(column: str, type: str | None = None) -> Check:
    """The column exists, and (if ``type`` is given) has that type.

    ``type`` is a family (``"integer"``, ``"float"``, ``"numeric"``, ``"string"``,
    ``"bool"``, ``"timestamp"``, ``"date"``) or an Arrow type name (``"int32"``,
    ``"double"``, ``"timestamp[us, tz=UTC]"``).

    >>> column_exists("temp", type="float").name
    'column_exists(temp, float)'
    """
    column = _require_name(column, "column")
    if type is not None:
        if not isinstance(type, str) or not type.strip():
            raise InvalidInput(f"column_exists: type must be a type name, got {type!r}")
        _parse_type(type)
    return _ColumnExists(column, type)


def not_null(column: str) -> Check:
    """No value of the column is missing (null, or NaN in a float column).

    >>> not_null("id").name
    'not_null(id)'
    """
    return _NotNull(_require_name(column, "column"))


def max_missing(column: str, share: float) -> Check:
    """At most ``share`` (0..1) of the column's values are missing (null or NaN).

    >>> max_missing("temp", 0.05).name
    'max_missing(temp, 0.05)'
    """
    column = _require_name(column, "column")
    if not _is_number(share) or not 0 <= share <= 1:
        raise InvalidInput(f"max_missing: share must be a number from 0 to 1, got {share!r}")
    return _MaxMissing(column, float(share))


def unique(columns: str | Sequence[str]) -> Check:
    """No two rows share a value of the column (or of the combination of columns).

    Rows with a null or NaN in any of the columns are not compared. Every row of a
    repeated value fails, the first occurrence included.

    >>> unique(["site", "ts"]).name
    'unique(site, ts)'
    """
    if isinstance(columns, str):
        keys: tuple[str, ...] = (columns,)
    elif isinstance(columns, Sequence) and columns:
        keys = tuple(columns)
    else:
        raise InvalidInput(f"unique: give a column or a list of columns, got {columns!r}")
    keys = tuple(_require_name(c, "column") for c in keys)
    if len(set(keys)) != len(keys):
        raise InvalidInput(f"unique: a column is repeated in {list(keys)}")
    return _Unique(keys)


def in_range(
    column: str,
    min: Bound | date | None = None,
    max: Bound | date | None = None,
    *,
    strict: bool = False,
) -> Check:
    """Every value lies within ``[min, max]`` (``(min, max)`` with ``strict=True``).

    Either bound may be left out. Bounds are numbers for numeric columns, datetimes, dates
    or ISO strings for timestamp and date columns (naive means UTC), strings for string
    columns (compared by code point). Nulls are skipped; NaN is out of range.

    >>> in_range("temp", min=-40, max=125).name
    'in_range(temp, -40..125)'
    """
    column = _require_name(column, "column")
    low, high = _normalise_bound(min, "min"), _normalise_bound(max, "max")
    if low is None and high is None:
        raise InvalidInput("in_range: give min, max or both")
    if not isinstance(strict, bool):
        raise InvalidInput(f"in_range: strict must be true or false, got {strict!r}")
    if low is not None and high is not None:
        # Any: the kinds are checked at run time, mypy cannot order a union.
        lo: Any = _comparable_bound(low)
        hi: Any = _comparable_bound(high)
        if type(lo) is not type(hi):
            raise InvalidInput(f"in_range: min {low!r} and max {high!r} are not of one kind")
        if lo > hi or (strict and lo == hi):
            raise InvalidInput(f"in_range: the range {low!r}..{high!r} is empty (min > max)")
    return _InRange(column, low, high, strict)


def accepted_values(column: str, values: Iterable[str | int | float | bool]) -> Check:
    """Every value is one of ``values`` (all strings, all numbers or all booleans).

    Nulls are skipped; NaN is never accepted.

    >>> accepted_values("site", {"b", "a"}).name
    "accepted_values(site, {'a', 'b'})"
    """
    column = _require_name(column, "column")
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInput(f"accepted_values: values must be a list or set, got {values!r}")
    items = [x.item() if isinstance(x, np.generic) else x for x in values]
    if not items:
        raise InvalidInput("accepted_values: the set of values is empty")
    kinds = {_value_kind(x) for x in items}
    if len(kinds) != 1 or None in kinds:
        raise InvalidInput(
            f"accepted_values: values must be all strings, all numbers or all booleans "
            f"(no null, no NaN), got {items!r}"
        )
    # Sorted and deduplicated, so equal sets give equal checks and stable dicts.
    ordered = tuple(sorted(set(items)))
    return _AcceptedValues(column, ordered)


def matches(column: str, pattern: str) -> Check:
    """Every value of the string column matches ``pattern`` in full (RE2 syntax).

    A pattern that does not compile gives a result with ``error``, not an exception.

    >>> matches("code", r"[A-Z]{3}\\d+").name
    'matches(code, /[A-Z]{3}\\\\d+/)'
    """
    column = _require_name(column, "column")
    if not isinstance(pattern, str):
        raise InvalidInput(f"matches: pattern must be a string, got {pattern!r}")
    return _Matches(column, pattern)


def row_count(min: int | None = None, max: int | None = None) -> Check:
    """The table has between ``min`` and ``max`` rows (inclusive; either may be left out).

    >>> row_count(min=1).name
    'row_count(1..)'
    """
    for value, what in ((min, "min"), (max, "max")):
        if value is not None and (
            not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0
        ):
            raise InvalidInput(f"row_count: {what} must be a whole number >= 0, got {value!r}")
    if min is None and max is None:
        raise InvalidInput("row_count: give min, max or both")
    if min is not None and max is not None and min > max:
        raise InvalidInput(f"row_count: min ({min}) is greater than max ({max})")
    return _RowCount(None if min is None else int(min), None if max is None else int(max))


def fresh(
    column: str,
    max_age: timedelta | float | str,
    *,
    now: datetime | str | None = None,
) -> Check:
    """The column's newest value is no older than ``max_age`` at ``now``.

    ``max_age`` is a timedelta, seconds, or text such as ``"1h30m"`` or ``"2d"`` (units
    ``w d h m s ms us``). ``now`` defaults to the moment of validation (UTC). Naive
    timestamps (in the column or ``now``) are taken to be UTC; a date is midnight UTC.

    >>> fresh("ts", max_age=timedelta(hours=1)).name
    'fresh(ts, 1h)'
    """
    column = _require_name(column, "column")
    age = _parse_duration(max_age)
    if age <= timedelta(0):
        raise InvalidInput(f"fresh: max_age must be positive, got {max_age!r}")
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now)
        except ValueError:
            raise InvalidInput(f"fresh: now must be an ISO date-time, got {now!r}") from None
    if now is not None and not isinstance(now, datetime):
        raise InvalidInput(f"fresh: now must be a datetime, got {now!r}")
    return _Fresh(column, age, now)


def compare(left: str, op: str, right: str, *, nulls_fail: bool = False) -> Check:
    """Row by row, ``left op right`` holds (``op`` one of ``< <= == != >= >``).

    Rows where either side is null pass, unless ``nulls_fail=True``. NaN fails.
    Timestamps compare as instants (naive means UTC).

    >>> compare("start", "<=", "end").name
    'compare(start <= end)'
    """
    left, right = _require_name(left, "left"), _require_name(right, "right")
    symbol = _COMPARATOR_WORDS.get(op, op) if isinstance(op, str) else op
    if symbol not in COMPARATORS:
        raise InvalidInput(
            f"compare: unknown comparator {op!r}; use one of {' '.join(COMPARATORS)}"
        )
    if not isinstance(nulls_fail, bool):
        raise InvalidInput(f"compare: nulls_fail must be true or false, got {nulls_fail!r}")
    return _Compare(left, symbol, right, nulls_fail)


def custom(
    name: str,
    fn: Callable[[pd.DataFrame], Any],
    *,
    columns: Sequence[str] | None = None,
) -> Check:
    """A check written in Python: ``fn(df)`` returns a bool per row or one bool.

    ``fn`` gets a pandas DataFrame (a shallow copy; for Arrow input, the table converted
    once). It returns a boolean Series/array with one value per row, True meaning the row
    passes (NA counts as a failure), or a single bool for the whole table. ``columns``
    chooses the columns shown in the examples (default: all). If ``fn`` raises, the result
    carries the error. Custom checks do not serialise: :meth:`Check.to_dict` gives their
    name and ``"serializable": False``.

    >>> custom("positive_margin", lambda df: df["price"] > df["cost"]).name
    'positive_margin'
    """
    name = _require_name(name, "name")
    if not callable(fn):
        raise InvalidInput(f"custom: fn must be callable, got {fn!r}")
    show = None
    if columns is not None:
        if isinstance(columns, str):
            columns = [columns]
        show = tuple(_require_name(c, "column") for c in columns)
    return _Custom(name, fn, show)


_CONSTRUCTORS: Final[dict[str, Callable[..., Check]]] = {
    "column_exists": column_exists,
    "not_null": not_null,
    "max_missing": max_missing,
    "unique": unique,
    "in_range": in_range,
    "accepted_values": accepted_values,
    "matches": matches,
    "row_count": row_count,
    "fresh": fresh,
    "compare": compare,
}


def _custom_from_dict(
    spec: Mapping[str, Any], functions: Mapping[str, Callable[[pd.DataFrame], Any]]
) -> Check:
    name = spec.get("name")
    if not isinstance(name, str) or name not in functions:
        raise InvalidInput(
            f"custom check {name!r} cannot be built from a dict: its Python function is not "
            f"serialisable. Build it in code with validation.custom(name, fn), or pass "
            f"functions={{{name!r}: fn}}"
        )
    return custom(name, functions[name], columns=spec.get("columns"))


def checks_from_dicts(
    specs: Iterable[Mapping[str, Any]],
    *,
    functions: Mapping[str, Callable[[pd.DataFrame], Any]] | None = None,
) -> list[Check]:
    """Build checks from their dict form (e.g. a YAML list); the inverse of :func:`checks_to_dicts`.

    ``functions`` maps custom check names to their functions. A bad item raises
    InvalidInput naming its position.

    >>> checks_from_dicts([{"check": "in_range", "column": "temp", "min": -40}])
    [in_range(column='temp', min=-40, strict=False)]
    """
    if isinstance(specs, Mapping | str) or not isinstance(specs, Iterable):
        raise InvalidInput(f"checks must be a list of mappings, got {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(Check.from_dict(spec, functions=functions))
        except InvalidInput as e:
            raise InvalidInput(f"check #{i}: {e.message}") from None
    return out


def checks_to_dicts(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """The dict form of each check (see :meth:`Check.to_dict`)."""
    return [c.to_dict() for c in checks]


# --------------------------------------------------------------------------- the runner


def validate(data: pd.DataFrame | pa.Table, checks: Iterable[Check]) -> ValidationReport:
    """Run every check on ``data`` (a pandas DataFrame or a pyarrow Table/RecordBatch).

    All checks run, whatever fails; a check that cannot run gives a failed result with
    ``error`` set. Raises InvalidInput only if ``data`` is not a table or a check is not a
    :class:`Check`.

    >>> validate(df, [not_null("id"), unique("id")]).passed  # doctest: +SKIP
    True
    """
    table = _Data(data)
    todo = list(checks)
    for c in todo:
        if not isinstance(c, Check):
            raise InvalidInput(
                f"validate() takes Check objects (see checks_from_dicts for dicts), got {c!r}"
            )
    return ValidationReport(results=tuple(_run_one(c, table) for c in todo), rows=table.num_rows)


def _run_one(check: Check, data: _Data) -> CheckResult:
    try:
        result = check._run(data)
    except _CannotRun as e:
        error = str(e)
    except Exception as e:  # a check must never abort the report
        error = f"{type(e).__name__}: {e}"
    else:
        return result
    return CheckResult(
        check=check.kind,
        name=check.name,
        columns=check.columns,
        passed=False,
        message=f"could not run: {error}",
        error=error,
        spec=check.to_dict(),
    )


def _table_result(
    check: Check, passed: bool, message: str, details: dict[str, Any] | None = None
) -> CheckResult:
    return CheckResult(
        check=check.kind,
        name=check.name,
        columns=check.columns,
        passed=passed,
        message=message,
        details=details or {},
        spec=check.to_dict(),
    )


def _rows_result(
    check: Check,
    data: _Data,
    fail: np.ndarray[Any, np.dtype[np.bool_]],
    subject: str,
    what: str,
    show: Sequence[str],
    *,
    passed: bool | None = None,
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """The result of a per-row check, from the mask of failing rows."""
    n = data.num_rows
    count = int(np.count_nonzero(fail))
    rows = np.flatnonzero(fail)[:MAX_EXAMPLES]
    examples = data.examples(rows, show)
    message = f"{subject}: {count:,} of {n:,} rows ({_fmt_share(count, n)}) {what}"
    if examples:
        row, values = examples[0]
        if len(values) == 1:
            shown = _fmt_value(next(iter(values.values())))
        else:
            items = list(values.items())
            shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in items[:4])
            shown += ", ..." if len(items) > 4 else ""
        message += f"; e.g. row {row}: {shown}"
    return CheckResult(
        check=check.kind,
        name=check.name,
        columns=check.columns,
        passed=count == 0 if passed is None else passed,
        message=message,
        failing_rows=count,
        failing_share=count / n if n else 0.0,
        examples=tuple(
            {"row": row, "values": {k: _jsonable(v) for k, v in values.items()}}
            for row, values in examples
        ),
        details=details or {},
        spec=check.to_dict(),
    )


# --------------------------------------------------------------------------- the data


class _Data:
    """The table being validated, read as Arrow one column at a time (cached)."""

    def __init__(self, data: object) -> None:
        self._frame: pd.DataFrame | None = None
        self._table: pa.Table | None = None
        self._cache: dict[str, pa.ChunkedArray] = {}
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if isinstance(data, pa.Table):
            self._table = data
            self.names: list[str] = list(data.column_names)
            self.num_rows: int = data.num_rows
        elif isinstance(data, pd.DataFrame):
            self._frame = data
            self.names = [str(c) for c in data.columns]
            self.num_rows = len(data)
        else:
            raise InvalidInput(
                f"validate() takes a pandas DataFrame or a pyarrow Table, got {type(data).__name__}"
            )
        self._positions: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self._positions.setdefault(name, []).append(i)
        self._pandas_view: pd.DataFrame | None = None

    def has(self, name: str) -> bool:
        return name in self._positions

    def no_column(self, name: str) -> str:
        shown = ", ".join(self.names[:10]) + (", ..." if len(self.names) > 10 else "")
        return f"no column {name!r} (the table has {len(self.names)}: {shown})"

    def _position(self, name: str) -> int:
        positions = self._positions.get(name)
        if not positions:
            raise _CannotRun(self.no_column(name))
        if len(positions) > 1:
            raise _CannotRun(f"column name {name!r} is ambiguous: {len(positions)} columns have it")
        return positions[0]

    def column(self, name: str) -> pa.ChunkedArray:
        """The column as Arrow (dictionary columns decoded); _CannotRun if absent."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        position = self._position(name)
        if self._table is not None:
            col = self._table.column(position)
        else:
            assert self._frame is not None
            try:
                col = _arrow_from_pandas(self._frame.iloc[:, position])
            except (pa.ArrowException, TypeError, ValueError) as e:
                raise _CannotRun(f"column {name!r} cannot be read as one Arrow type: {e}") from None
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        self._cache[name] = col
        return col

    def frame(self) -> pd.DataFrame:
        """A pandas view for custom checks (a shallow copy: the function cannot change ours)."""
        if self._frame is not None:
            return self._frame.copy(deep=False)
        if self._pandas_view is None:
            assert self._table is not None
            self._pandas_view = self._table.to_pandas()
        return self._pandas_view.copy(deep=False)

    def examples(
        self, rows: np.ndarray[Any, np.dtype[np.intp]], columns: Sequence[str]
    ) -> list[tuple[int, dict[str, Any]]]:
        """The values of ``columns`` at ``rows``, as Python objects."""
        if len(rows) == 0:
            return []
        indices = pa.array(rows, type=pa.int64())
        values: dict[str, list[Any]] = {}
        for name in columns:
            if name in self._cache or self._table is not None:
                try:
                    values[name] = self.column(name).take(indices).to_pylist()
                except _CannotRun:
                    continue
            else:
                assert self._frame is not None
                position = self._positions.get(name)
                if not position or len(position) > 1:
                    continue
                part = self._frame.iloc[rows, position[0]]
                try:
                    values[name] = _arrow_from_pandas(part).to_pylist()
                except (pa.ArrowException, TypeError, ValueError):
                    values[name] = part.tolist()
        return [
            (int(row), {name: vals[i] for name, vals in values.items()})
            for i, row in enumerate(rows)
        ]


def _arrow_from_pandas(series: pd.Series) -> pa.ChunkedArray:
    arr = pa.Array.from_pandas(series)
    if isinstance(arr, pa.ChunkedArray):
        return arr
    return pa.chunked_array([arr])


# --------------------------------------------------------------------------- helpers


def _require_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    return value


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and not (isinstance(value, float | np.floating) and math.isnan(value))
    )


def _is_string(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)
    )


def _is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def _is_temporal(typ: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(typ) or pa.types.is_date(typ))


_FAMILY_TESTS: Final[dict[str, Callable[[pa.DataType], bool]]] = {
    "integer": lambda t: bool(pa.types.is_integer(t)),
    "float": lambda t: bool(pa.types.is_floating(t)),
    "numeric": _is_numeric,
    "string": _is_string,
    "bool": lambda t: bool(pa.types.is_boolean(t)),
    "timestamp": lambda t: bool(pa.types.is_timestamp(t)),
    "date": lambda t: bool(pa.types.is_date(t)),
}


def _parse_type(spec: str) -> Callable[[pa.DataType], bool]:
    """A predicate on Arrow types for a family or type name; InvalidInput if unknown."""
    key = spec.strip()
    family = _FAMILY_TESTS.get(key.lower())
    if family is not None:
        return family
    try:
        wanted = str(pa.type_for_alias(key))
    except (ValueError, KeyError, TypeError):
        if not _PARAMETRIC_TYPE.fullmatch(key):
            raise InvalidInput(
                f"column_exists: unknown type {spec!r}; use a family "
                f"({', '.join(TYPE_FAMILIES)}) or an Arrow type name (int64, double, ...)"
            ) from None
        wanted = key
    compact = re.sub(r"\s+", "", wanted)
    return lambda t: re.sub(r"\s+", "", str(t)) == compact


def _type_matches(actual: pa.DataType, spec: str) -> bool:
    return _parse_type(spec)(actual)


def _value_kind(value: object) -> str | None:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _normalise_bound(value: object, what: str) -> Bound | None:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_) or (
        isinstance(value, float | np.floating) and math.isnan(value)
    ):
        raise InvalidInput(f"in_range: {what} must be a number, date or string, got {value!r}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, date):  # datetime included; stored as text so dicts round-trip
        return value.isoformat()
    raise InvalidInput(f"in_range: {what} must be a number, date or string, got {value!r}")


def _comparable_bound(value: Bound) -> float | datetime | str:
    """The bound in a form that orders like the column will (for min <= max)."""
    if isinstance(value, str):
        try:
            return _as_utc_datetime(_parse_time(value))
        except ValueError:
            return value
    return float(value)


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    day = date.fromisoformat(text)  # raises ValueError with a clear message
    return datetime.combine(day, time())


def _as_utc_datetime(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _epoch_ns(moment: datetime) -> int:
    return (_as_utc_datetime(moment) - _EPOCH) // timedelta(microseconds=1) * 1000


def _number_bound(value: Bound) -> Any:
    if isinstance(value, str):
        raise _CannotRun(f"bound {value!r} is not a number, but the column is numeric")
    return pa.scalar(value)


def _time_bound(value: Bound) -> Any:
    if not isinstance(value, str):
        raise _CannotRun(f"bound {value!r} is a number, but the column holds times")
    try:
        moment = _parse_time(value)
    except ValueError:
        raise _CannotRun(f"bound {value!r} is not an ISO date or date-time") from None
    return pa.scalar(_epoch_ns(moment), type=pa.timestamp("ns", tz="UTC"))


def _string_bound(value: Bound) -> Any:
    if not isinstance(value, str):
        raise _CannotRun(f"bound {value!r} is a number, but the column holds strings")
    return pa.scalar(value)


def _as_utc(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as tz=UTC instants (naive read as UTC), dates as midnight UTC."""
    typ = col.type
    if pa.types.is_date(typ):
        return col.cast(pa.timestamp("s", tz="UTC"))
    if pa.types.is_timestamp(typ) and typ.tz != "UTC":
        # Arrow stores UTC epoch values for aware and wall-clock values for naive
        # timestamps, so relabelling as UTC is exactly the "naive means UTC" rule.
        return col.cast(pa.timestamp(typ.unit, tz="UTC"))
    return col


def _bool_np(values: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """An Arrow boolean array as numpy, null read as False."""
    out: np.ndarray[Any, np.dtype[np.bool_]] = np.asarray(
        values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool
    )
    return out


def _valid_np(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    if col.null_count == 0:
        return np.ones(len(col), dtype=bool)
    return _bool_np(pc.is_valid(col))


def _nan_np(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    if not pa.types.is_floating(col.type):
        return np.zeros(len(col), dtype=bool)
    return _bool_np(pc.is_nan(col))


def _no_rows(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.zeros(len(col), dtype=bool)


def _missing_mask(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return ~_valid_np(col) | _nan_np(col)


def _dense_codes(col: pa.ChunkedArray) -> tuple[np.ndarray[Any, np.dtype[np.int64]], int]:
    """Each row's value as a code 0..k-1 (equal values, equal codes) and k."""
    if len(col) == 0:
        return np.zeros(0, dtype=np.int64), 1
    encoded = col.combine_chunks().dictionary_encode()
    codes = np.asarray(encoded.indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, max(len(encoded.dictionary), 1)


def _full_match(col: pa.ChunkedArray, pattern: str) -> Any:
    """Arrow booleans: does each value match ``pattern`` in full."""
    try:
        # Compile the pattern alone first: wrapping an invalid pattern could make it valid.
        pc.match_substring_regex(pa.array([""]), pattern=pattern)
    except pa.ArrowInvalid:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise _CannotRun(f"pattern /{pattern}/ does not compile: {e}") from None
        if len(col) == 0:
            return pa.chunked_array([], pa.bool_())
        # RE2 cannot, Python can (lookaround, backreferences): match distinct values only.
        distinct = pc.unique(col).drop_null()
        good = [s for s in distinct.to_pylist() if compiled.fullmatch(s)]
        return pc.is_in(col, value_set=pa.array(good, type=col.type))
    return pc.match_substring_regex(col, pattern=rf"\A(?:{pattern})\z")


def _custom_mask(out: Any, n: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A custom function's per-row result as numpy booleans (True = pass, NA = fail)."""
    if isinstance(out, pa.Array | pa.ChunkedArray):
        if not pa.types.is_boolean(out.type):
            raise _CannotRun(f"the function returned Arrow {out.type}, not booleans")
        mask = _bool_np(out)
    elif isinstance(out, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        if not pd.api.types.is_bool_dtype(out.dtype):
            raise _CannotRun(f"the function returned {out.dtype} values, not booleans")
        mask = np.asarray(out.to_numpy(dtype=bool, na_value=False), dtype=bool)
    elif isinstance(out, np.ndarray | list | tuple):
        array = np.asarray(out)
        if array.size == 0:
            array = array.astype(bool)
        if array.dtype != np.bool_ or array.ndim != 1:
            raise _CannotRun(
                f"the function returned {array.ndim}-d {array.dtype} values, not one bool per row"
            )
        mask = array
    else:
        raise _CannotRun(
            f"the function must return a bool or one bool per row, got {type(out).__name__}"
        )
    if len(mask) != n:
        raise _CannotRun(f"the function returned {len(mask):,} values for {n:,} rows")
    return mask


def _parse_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
        if not math.isfinite(seconds):
            raise InvalidInput(f"fresh: max_age must be finite, got {value!r}")
        return timedelta(seconds=seconds)
    if isinstance(value, str):
        text = value.replace(" ", "")
        parts = list(_DURATION_PART.finditer(text))
        if parts and "".join(p.group(0) for p in parts) == text:
            total = timedelta(0)
            for p in parts:
                total += float(p.group(1)) * _DURATION_UNITS[p.group(2)]
            return total
        try:
            return timedelta(seconds=float(text))
        except ValueError:
            pass
    raise InvalidInput(
        f"fresh: max_age must be a timedelta, seconds, or text like '1h30m', got {value!r}"
    )


def _fmt_duration(span: timedelta) -> str:
    """Compact, exact and parseable by _parse_duration: '1d2h', '90s' -> '1m30s', '1.5s'."""
    micros = span // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    days, micros = divmod(micros, 86_400_000_000)
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    out = "".join(f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v)
    if seconds or micros:
        out += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "s"
    return sign + out


def _fmt_age(span: timedelta) -> str:
    """Roughly, for people: the two largest units ('3d4h', '2h5m', '42s')."""
    seconds = round(span.total_seconds())
    if seconds < 60:
        return f"{span.total_seconds():.3g}s" if seconds < 1 else f"{seconds}s"
    parts = [(seconds // 86_400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m")]
    parts.append((seconds % 60, "s"))
    first = next(i for i, (value, _) in enumerate(parts) if value)
    return "".join(f"{value}{unit}" for value, unit in parts[first : first + 2] if value)


def _fmt_share(count: int, n: int) -> str:
    if n == 0 or count == 0:
        return "0%"
    if count == n:
        return "100%"
    text = f"{100.0 * count / n:.3g}"
    if text == "100":
        return ">99.9%"
    if "e" in text:
        return "<0.001%"
    return text + "%"


def _fmt_bound(value: Bound) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _fmt_set(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:5])
    more = f", ... ({len(values)} values)" if len(values) > 5 else ""
    return "{" + shown + more + "}"


def _fmt_value(value: Any) -> str:
    """A value for a message: like repr, but null, NaN, ISO times, and short."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, float | np.floating) and math.isnan(value):
        return "NaN"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> Any:
    """An example value as JSON: NaN -> None, times -> ISO text, numpy -> Python."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    return str(value)


__all__ = [
    "COMPARATORS",
    "MAX_EXAMPLES",
    "TYPE_FAMILIES",
    "Check",
    "CheckResult",
    "ValidationFailed",
    "ValidationReport",
    "accepted_values",
    "checks_from_dicts",
    "checks_to_dicts",
    "column_exists",
    "compare",
    "custom",
    "fresh",
    "in_range",
    "matches",
    "max_missing",
    "not_null",
    "row_count",
    "unique",
    "validate",
]
