"""A line's time from its text, without knowing its format: the common shapes near a
line's start (ISO 8601 and its relatives, ``yy/MM/dd``, HDFS's ``yyMMdd HHmmss``,
syslog's ``Jun 14 15:16:01``, ``Sun Dec 04 04:47:44 2005``, BGL's
``2005-06-03-15.42.50.675872``, epoch seconds). Times without a zone are UTC; syslog
times without a year take the year of ``default``.

>>> line_time("2015-10-18 18:01:47,978 INFO [main] started")
1445191307978
>>> line_time("081109 203615 148 INFO dfs.DataNode: ok")
1226262975000
>>> line_time("no time here") is None
True
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_MON = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
HEAD = 100  # characters of a line searched


def _ms(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None = None) -> int | None:
    if not (1970 <= y <= 2200 and 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    ms = int((frac or "0")[:3].ljust(3, "0"))
    return calendar.timegm((y, mo, d, h, mi, min(s, 59), 0, 0, 0)) * 1000 + ms


def _zone(z: str | None) -> int:
    if not z or z == "Z":
        return 0
    sign = -1 if z[0] == "-" else 1
    digits = z[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:4] or 0)) * 60_000


def _iso(m: re.Match[str], _year: int) -> int | None:
    y, mo, d, h, mi, s, frac, z = m.groups()
    t = _ms(int(y), int(mo), int(d), int(h), int(mi), int(s), frac)
    return None if t is None else t - _zone(z)


def _slash(m: re.Match[str], _year: int) -> int | None:
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    return _ms(y + 2000 if y < 100 else y, mo, d, h, mi, s)


def _compact(m: re.Match[str], _year: int) -> int | None:
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    return _ms(2000 + y, mo, d, h, mi, s)


def _bgl(m: re.Match[str], _year: int) -> int | None:
    y, mo, d, h, mi, s, frac = m.groups()
    return _ms(int(y), int(mo), int(d), int(h), int(mi), int(s), frac)


def _ctime(m: re.Match[str], _year: int) -> int | None:
    mon, d, h, mi, s, y = m.groups()
    return _ms(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(s))


def _syslog(m: re.Match[str], year: int) -> int | None:
    mon, d, h, mi, s = m.groups()
    return _ms(year, _MONTHS[mon], int(d), int(h), int(mi), int(s))


def _epoch(m: re.Match[str], _year: int) -> int | None:
    return int(m.group(1)) * 1000


_SHAPES: list[tuple[re.Pattern[str], Callable[[re.Match[str], int], int | None]]] = [
    (
        re.compile(
            r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
            r"\s?(Z|[+-]\d{2}:?\d{2})?"
        ),
        _iso,
    ),
    (re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2})\.(\d{2})\.(\d{2})(?:\.(\d{1,9}))?"), _bgl),
    (re.compile(r"\b(\d{2}|\d{4})/(\d{2})/(\d{2})[ T:-](\d{2}):(\d{2}):(\d{2})"), _slash),
    (re.compile(r"^(\d{2})(\d{2})(\d{2}) (\d{2})(\d{2})(\d{2})\b"), _compact),
    (re.compile(rf"\b({_MON}) +(\d{{1,2}}) (\d{{2}}):(\d{{2}}):(\d{{2}}) (\d{{4}})\b"), _ctime),
    (re.compile(rf"\b({_MON}) +(\d{{1,2}}) (\d{{2}}):(\d{{2}}):(\d{{2}})\b"), _syslog),
    (re.compile(r"(?<![\d.])(1\d{9})(?![\d.])"), _epoch),
]


def line_time(line: str, default: int | None = None) -> int | None:
    """The time (ms since the epoch) nearest a line's start, or ``default`` when it has
    none that these shapes know (syslog times take ``default``'s year, or 1970's)."""
    head = line[:HEAD]
    year = 1970 if default is None else time_year(default)
    best: int | None = None
    best_at = HEAD + 1
    # The earliest time in the line wins: a header's time comes before any in the message.
    for rx, conv in _SHAPES:
        m = rx.search(head)
        if m is not None and m.start() < best_at:
            t = conv(m, year)
            if t is not None:
                best, best_at = t, m.start()
    return default if best is None else best


def time_year(ms: int) -> int:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).year
