"""Rules for names and values, as MLflow's, so its clients meet the same answers."""

from __future__ import annotations

import math
import numbers
import posixpath
import re
from typing import Any

from opsloop.errors import InvalidInput
from opsloop.store.tables import (
    MAX_EXPERIMENT_TAG_VALUE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
)

_KEY_RE = re.compile(r"^[/\w.\- :]*$")
_RUN_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000


def key(kind: str, name: Any) -> str:
    if not isinstance(name, str) or name == "":
        raise InvalidInput(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _KEY_RE.match(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}: names may only contain alphanumerics, underscores (_), "
            "dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    if posixpath.normpath(name) != name.rstrip("/") and ".." in name.split("/"):
        raise InvalidInput(f"invalid {kind} name {name!r}: it would resolve to another path")
    if name.startswith("/") or ".." in name.split("/"):
        raise InvalidInput(f"invalid {kind} name {name!r}: it may not be an absolute or '..' path")
    return name


def run_id(value: Any) -> str:
    if not isinstance(value, str) or not _RUN_ID_RE.match(value):
        raise InvalidInput(f"invalid run id {value!r}")
    return value


def experiment_id(value: Any) -> int:
    try:
        out = int(str(value))
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid experiment id {value!r}: it must be an integer") from None
    if out < 0 or out > 2**31 - 1:
        raise InvalidInput(f"invalid experiment id {value!r}")
    return out


def experiment_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"experiment name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"experiment name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    return name


def param_value(name: str, value: Any) -> str:
    s = value if isinstance(value, str) else str(value)
    if len(s) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"param {name!r} value is {len(s)} characters long; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return s


def tag_value(name: str, value: Any, *, experiment: bool = False) -> str:
    s = value if isinstance(value, str) else str(value)
    limit = MAX_EXPERIMENT_TAG_VALUE_LENGTH if experiment else MAX_TAG_VALUE_LENGTH
    if len(s) > limit:
        raise InvalidInput(f"tag {name!r} value is {len(s)} characters long; the limit is {limit}")
    return s


def metric_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            if isinstance(value, str):
                return float(value)
            if isinstance(value, numbers.Real):
                return float(value)
        except ValueError:
            pass
        raise InvalidInput(f"metric {name!r} value {value!r} is not a number")
    return float(value)


def integer(what: str, value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(float(value))
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise InvalidInput(f"{what} must be an integer, got {value!r}")


def max_results(value: Any, default: int, limit: int) -> int:
    n = integer("max_results", value, default)
    if n < 1 or n > limit:
        raise InvalidInput(f"max_results must be between 1 and {limit}, got {n}")
    return n
