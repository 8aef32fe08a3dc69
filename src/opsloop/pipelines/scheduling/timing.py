"""Cron expressions and time zones: checking them, and the slots they give.

Standard 5-field cron (minute, hour, day of month, month, day of week) with ranges
(``1-5``), steps (``*/15``), lists (``0,30``) and names (``jan``, ``mon-fri``), plus
``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly`` and
``@yearly``/``@annually``. When both day fields are restricted a day matching either
fires, as in Vixie cron. Slots are computed in the schedule's time zone (so ``0 9 * * *``
in ``Europe/Berlin`` stays at 9:00 local time across daylight-saving changes) with
croniter, the library Airflow and Celery beat use.

Times are milliseconds since the epoch, as everywhere in the store.

Example::

    check_cron("*/15 9-17 * * mon-fri")        # the expression, or InvalidInput
    next_slot("0 9 * * *", "Europe/Berlin", now_ms)
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter  # type: ignore[import-untyped]

from opsloop.errors import InvalidInput

FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)
ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
EXAMPLES = "e.g. '*/15 * * * *', '0 9 * * mon-fri' or '@daily'"
# How many missed slots a catch-up counts before saying "at least".
MAX_COUNTED = 1000


def check_timezone(name: object) -> str:
    """An IANA time zone name (``UTC``, ``Europe/Berlin``), or InvalidInput."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a time zone must be an IANA name like 'UTC', got {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}: give an IANA name like 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


def check_cron(expr: object) -> str:
    """A cron expression, normalised (one space between fields), or InvalidInput
    naming the field that is wrong.

    Example::

        check_cron("0  9 * * MON-FRI")   # "0 9 * * MON-FRI"
        check_cron("61 * * * *")         # InvalidInput: the minute field '61' ...
    """
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput(f"a cron expression must be a non-empty string ({EXAMPLES})")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise InvalidInput(
                f"cron {expr!r}: unknown shortcut; use one of {', '.join(ALIASES)} "
                "or five fields (minute hour day-of-month month day-of-week)"
            )
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidInput(
            f"cron {expr!r} has {len(fields)} field(s); give five: minute hour day-of-month "
            f"month day-of-week ({EXAMPLES})"
        )
    for i, ((what, allowed), field) in enumerate(zip(FIELDS, fields, strict=True)):
        alone = ["*"] * 5
        alone[i] = field
        try:
            croniter(" ".join(alone), dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        except Exception:
            raise InvalidInput(
                f"cron {expr!r}: the {what} field {field!r} is not valid (allowed: {allowed}, "
                "with ranges a-b, steps */n and lists a,b)"
            ) from None
    try:
        croniter(text, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise InvalidInput(
            f"cron {expr!r} never fires: no date has that day-of-month in that month"
        ) from None
    except Exception as exc:
        raise InvalidInput(f"cron {expr!r} is not valid: {exc}") from None
    return text


def _at(ms: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(tz))


def _ms(when: dt.datetime) -> int:
    return round(when.timestamp() * 1000)


def next_slot(expr: str, tz: str, after_ms: int) -> int:
    """The first slot strictly after ``after_ms``."""
    nxt: dt.datetime = croniter(expr, _at(after_ms, tz)).get_next(dt.datetime)
    return _ms(nxt)


def last_slot(expr: str, tz: str, at_ms: int) -> int:
    """The latest slot at or before ``at_ms``."""
    # croniter's get_prev is strict; a microsecond later makes it include ``at_ms``.
    start = _at(at_ms, tz) + dt.timedelta(microseconds=1)
    prev: dt.datetime = croniter(expr, start).get_prev(dt.datetime)
    return _ms(prev)


def count_slots(expr: str, tz: str, first_ms: int, until_ms: int) -> int:
    """How many slots from ``first_ms`` (a slot) to ``until_ms``, both included; counts
    up to MAX_COUNTED."""
    if first_ms > until_ms:
        return 0
    it = croniter(expr, _at(first_ms, tz))
    n = 1
    while n < MAX_COUNTED:
        if _ms(it.get_next(dt.datetime)) > until_ms:
            break
        n += 1
    return n


def iso(ms: int | None, tz: str = "UTC") -> str | None:
    """A time for people and for pipelines' environment: ISO 8601 with its offset."""
    if ms is None:
        return None
    return _at(ms, tz).isoformat(timespec="seconds")
