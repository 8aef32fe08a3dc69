"""Reading MLflow requests: typed fields from a JSON body or a query string.

MLflow's server parses each request into a protobuf message; we read the same JSON
directly, checking each field's type as protobuf's JSON parser would (int64 may come
as a string, doubles as ``"NaN"``/``"Infinity"``, enums by name or number). GET
requests carry their fields in the query string, where every value is a string and a
repeated field is a repeated parameter (``?experiment_ids=1&experiment_ids=2``).

A wrong type is a 400 ``INVALID_PARAMETER_VALUE`` whose message names the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from opsloop.errors import InvalidInput
from opsloop.server.responses import parse_number

_MISSING: Any = object()


def invalid(name: str, value: Any, expected: str) -> InvalidInput:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidInput(f"Invalid value {shown} for parameter '{name}': expected {expected}")


def missing(name: str) -> InvalidInput:
    return InvalidInput(f"Missing value for required parameter '{name}'")


_NUL_MESSAGE = "the request contains a NUL character (\\u0000), which no name or value may hold"


def _holds_nul(data: Any) -> bool:
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_holds_nul(v) for v in data)
    return False


def parse_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is ``{}``."""
    if not body or body.isspace():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    # A cheap look at the bytes first; only a body that may hold one is walked.
    if b"\\u0000" in body and _holds_nul(data):
        raise InvalidInput(_NUL_MESSAGE)
    if isinstance(data, str):
        # Older MLflow clients post their JSON encoded twice.
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"the request body must be a JSON object, got a JSON {type(data).__name__}"
        )
    return data


class Fields:
    """The fields of one request, read by name and type.

    ``Fields.from_json({...})`` for a body, ``Fields.from_query(pairs)`` for a query
    string; path parameters (``/logged-models/{model_id}``) are merged in and win.
    """

    __slots__ = ("_data", "_query")

    def __init__(self, data: dict[str, Any], *, query: bool) -> None:
        self._data = data
        self._query = query

    @classmethod
    def from_json(cls, data: dict[str, Any], path: dict[str, Any] | None = None) -> Fields:
        if path:
            data = {**data, **path}
        return cls(data, query=False)

    @classmethod
    def from_query(
        cls, pairs: Iterable[tuple[str, str]], path: dict[str, Any] | None = None
    ) -> Fields:
        data: dict[str, Any] = {}
        for k, val in pairs:
            if "\x00" in val or "\x00" in k:
                raise InvalidInput(_NUL_MESSAGE)
            data.setdefault(k, []).append(val)
        for k, val in (path or {}).items():
            data[k] = [val]
        return cls(data, query=True)

    @property
    def raw(self) -> dict[str, Any]:
        return self._data

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def _scalar(self, name: str) -> Any:
        value = self._data.get(name, _MISSING)
        if self._query and value is not _MISSING:
            return value[0]
        return value

    # -- scalars ----------------------------------------------------------------

    def text(self, name: str, *, required: bool = False, default: str = "") -> str:
        value = self._scalar(name)
        if value is _MISSING or value is None:
            if required:
                raise missing(name)
            return default
        if not isinstance(value, str):
            raise invalid(name, value, "a string")
        if required and value == "":
            raise missing(name)
        return value

    def opt_text(self, name: str) -> str | None:
        """A string field, or None when absent or empty (protobuf's unset)."""
        value = self.text(name)
        return value or None

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self._scalar(name)
        if value is _MISSING or value is None:
            if required:
                raise missing(name)
            return None
        if type(value) is int:
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        raise invalid(name, value, "an integer")

    def number(self, name: str, *, required: bool = False, default: float = 0.0) -> float:
        value = self._scalar(name)
        if value is _MISSING or value is None:
            if required:
                raise missing(name)
            return default
        out = parse_number(value)
        if out is None:
            raise invalid(name, value, 'a number (or "NaN", "Infinity", "-Infinity")')
        return out

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._scalar(name)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise invalid(name, value, "true or false")

    def enum(self, name: str, numbers: dict[int, str], *, default: str | None = None) -> str | None:
        """An enum given by name or by number; returns its name."""
        value = self._scalar(name)
        if value is _MISSING or value is None or value == "":
            return default
        if isinstance(value, str):
            if value in numbers.values():
                return value
            if value.isdigit() and int(value) in numbers:
                return numbers[int(value)]
        elif type(value) is int and value in numbers:
            return numbers[value]
        raise invalid(name, value, "one of " + ", ".join(numbers.values()))

    # -- repeated -----------------------------------------------------------------

    def texts(self, name: str) -> list[str]:
        value = self._data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid(name, value, "a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid(f"{name}[{i}]", item, "a string")
        return value

    def objects(self, name: str) -> list[dict[str, Any]]:
        if self._query:
            if name in self._data:
                raise InvalidInput(f"parameter '{name}' cannot be given in a query string")
            return []
        value = self._data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid(name, value, "a list of objects")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid(f"{name}[{i}]", item, "an object")
        return value

    def key_values(self, name: str = "tags", *, key: str = "key") -> dict[str, str]:
        """A repeated ``{key, value}`` message as a dict (a later key wins)."""
        out: dict[str, str] = {}
        for i, item in enumerate(self.objects(name)):
            k = item.get(key)
            if not isinstance(k, str) or not k:
                raise invalid(f"{name}[{i}].{key}", k, "a non-empty string")
            val = item.get("value", "")
            if val is None:
                val = ""
            if not isinstance(val, str):
                raise invalid(f"{name}[{i}].value", val, "a string")
            out[k] = val
        return out

    # -- MLflow's common fields -----------------------------------------------------

    def run_id(self) -> str:
        """``run_id``, or the older ``run_uuid`` that some clients still send."""
        value = self.text("run_id")
        if not value:
            value = self.text("run_uuid")
        if not value:
            raise missing("run_id")
        return value

    def max_results(self, name: str = "max_results") -> int | None:
        return self.integer(name)

    def page_token(self) -> str | None:
        return self.opt_text("page_token")
