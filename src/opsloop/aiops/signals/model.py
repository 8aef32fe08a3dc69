"""What a signal is: a name, labels, and points (time in ms, float value).

Names and label names follow Prometheus' rules (``[a-zA-Z_:][a-zA-Z0-9_:]*`` and
``[a-zA-Z_][a-zA-Z0-9_]*``), so what is scraped and what is pushed live side by side.
A series is identified by its name and its whole label set; a selector picks series::

    parse_selector('http_requests_total{job="api", code=~"5.."}')
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from opsloop.errors import InvalidInput
from opsloop.store.tables import MAX_NAME_LENGTH

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
# Times are ms since the epoch; beyond year 9999 is a unit mistake (ns or µs given).
MAX_TIME_MS = 253_402_300_800_000
OPS = ("=", "!=", "=~", "!~")


def check_name(name: object, what: str = "a signal's name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"{what} must match [a-zA-Z_:][a-zA-Z0-9_:]* (as Prometheus'), got {name!r}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{what} is limited to {MAX_NAME_LENGTH} characters, got {len(name)}")
    return name


def check_labels(labels: object) -> dict[str, str]:
    """A copy of ``labels`` if it is a valid label set (str -> str), sorted by name."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidInput(f"labels must be an object of name: value, got {labels!r}")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"a series has at most {MAX_LABELS} labels, got {len(labels)}")
    out: dict[str, str] = {}
    for k in sorted(labels, key=str):
        v = labels[k]
        if not isinstance(k, str) or not LABEL_RE.match(k) or k.startswith("__"):
            raise InvalidInput(
                f"a label name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with '__', got {k!r}"
            )
        if not isinstance(v, str):
            raise InvalidInput(f"label {k!r} must have a string value, got {v!r}")
        if "\x00" in v:
            raise InvalidInput(f"label {k!r}: a value cannot hold a NUL character")
        if len(v) > MAX_LABEL_VALUE:
            raise InvalidInput(
                f"label {k!r} is limited to {MAX_LABEL_VALUE} characters, got {len(v)}"
            )
        out[k] = v
    return out


def check_time(value: object, what: str = "timestamp") -> int:
    """An integer time in ms since the epoch (bools and fractions refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what} must be an integer in ms since the epoch, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidInput(f"{what} must be a whole number of ms, got {value!r}")
        value = int(value)
    if not 0 <= value <= MAX_TIME_MS:
        raise InvalidInput(
            f"{what} must be ms since the epoch between 0 and {MAX_TIME_MS} (year 9999), "
            f"got {value!r}: seconds, µs or ns given?"
        )
    return value


_NONFINITE = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "infinity": math.inf}


def check_value(value: object, what: str = "value") -> float:
    """A float: a number, or the strings ``NaN``, ``Infinity``, ``-Infinity``."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a number, got {value!r}")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise InvalidInput(f"{what} {value!r} is too large for a float") from None
    if isinstance(value, str):
        s = value.strip().lower()
        neg = s.startswith("-")
        found = _NONFINITE.get(s.lstrip("+-") if neg else s)
        if found is not None:
            return -found if neg else found
    raise InvalidInput(f"{what} must be a number (or 'NaN', 'Infinity'), got {value!r}")


def labels_key(name: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """The canonical labels JSON and the hash that identifies the series."""
    text = json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{name}\x00{text}".encode()).hexdigest()
    return text, digest


@dataclass(frozen=True)
class Series:
    """One stored series."""

    series_id: int
    name: str
    labels: dict[str, str]
    last_time: int | None = None
    last_value: float | None = None

    def selector(self) -> str:
        """The selector that picks exactly this series."""
        return format_selector(self.name, self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_id": self.series_id,
            "name": self.name,
            "labels": self.labels,
            "last_time": self.last_time,
            "last_value": self.last_value,
        }


@dataclass(frozen=True)
class SeriesData:
    """A series' points in a time range: sorted by time, one point per timestamp."""

    series: Series
    timestamps: np.ndarray  # int64 ms
    values: np.ndarray  # float64; NaN kept

    def __len__(self) -> int:
        return len(self.timestamps)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``timestamp`` (ms), ``value``."""
        import pandas as pd

        return pd.DataFrame({"timestamp": self.timestamps, "value": self.values})


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # As in Prometheus, a missing label reads as "".
        have = labels.get(self.label, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(have) is not None
        return hit if self.op == "=~" else not hit


def matcher(label: str, op: str, value: str) -> Matcher:
    """A label matcher (``=``, ``!=``, ``=~``, ``!~``; regexes are anchored)."""
    if op not in OPS:
        raise InvalidInput(f"a label matcher's operator is one of {', '.join(OPS)}, got {op!r}")
    if not LABEL_RE.match(label):
        raise InvalidInput(f"not a label name: {label!r}")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise InvalidInput(
                f"label {label!r}: bad regular expression {value!r}: {exc}"
            ) from None
    return Matcher(label, op, value, regex)


@dataclass(frozen=True)
class Selector:
    """A series selector: a name and label matchers, as PromQL's ``name{a="b"}``."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def __str__(self) -> str:
        if not self.matchers:
            return self.name
        inner = ",".join(f"{m.label}{m.op}{json.dumps(m.value)}" for m in self.matchers)
        return f"{self.name}{{{inner}}}"


_MATCHER_RE = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)'
)


def parse_selector(text: object, labels: Mapping[str, str] | None = None) -> Selector:
    """``name`` or ``name{label="v", other=~"re.*", x!="y"}``, plus exact ``labels``.

    Example::

        sel = parse_selector('host_disk_used_percent{mountpoint="/"}')
        sel.matches({"mountpoint": "/", "host": "a"})   # True
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(
            f'a selector is a signal name with optional {{label="value"}}, got {text!r}'
        )
    text = text.strip()
    brace = text.find("{")
    name = text if brace < 0 else text[:brace].strip()
    check_name(name, "the selector's signal name")
    matchers: list[Matcher] = []
    if brace >= 0:
        if not text.endswith("}"):
            raise InvalidInput(f"selector {text!r}: the label matchers must end with '}}'")
        body = text[brace + 1 : -1].strip()
        pos = 0
        while pos < len(body):
            m = _MATCHER_RE.match(body, pos)
            if m is None:
                raise InvalidInput(
                    f"selector {text!r}: cannot read a matcher at {body[pos:]!r} "
                    f'(write label="value", label=~"regex", label!="value")'
                )
            value = json.loads(f'"{m.group(3)}"')
            matchers.append(matcher(m.group(1), m.group(2), value))
            pos = m.end()
    for k, v in check_labels(labels).items():
        matchers.append(matcher(k, "=", v))
    return Selector(name, tuple(matchers))


def format_selector(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration_ms(value: object, what: str = "duration") -> int:
    """``90s``, ``15m``, ``6h``, ``1h30m``, ``2d`` or a number of seconds, in ms.

    Example::

        parse_duration_ms("1h30m")   # 5_400_000
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a duration like 15s, 5m, 6h, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{what} must be a positive number of seconds, got {value!r}")
        return max(1, round(value * 1000))
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a duration like 15s, 5m, 6h, got {value!r}")
    s = value.strip().lower()
    try:
        return parse_duration_ms(float(s), what)
    except ValueError:
        pass
    total, pos = 0.0, 0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or total <= 0:
        raise InvalidInput(f"{what} must be a duration like 15s, 5m, 6h or 1h30m, got {value!r}")
    return max(1, round(total))


def format_duration_ms(ms: int) -> str:
    """The shortest exact form: 5400000 -> '1h30m'."""
    if ms <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
