"""JSON responses written with orjson, and the one error body.

Why not FastAPI's ``JSONResponse``: the hot MLflow endpoints build plain dicts and
orjson writes them several times faster than ``json.dumps``. orjson writes NaN and
±inf as ``null``, so numbers that may be non-finite (metric values) go through
:func:`number` first, which gives protobuf JSON's ``"NaN"``/``"Infinity"``/``"-Infinity"``
— what MLflow's server sends and its client parses.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import Response

from opsloop.errors import OpsloopError

_INF = math.inf
JSON = "application/json"
EMPTY = b"{}"


def number(x: float) -> float | str:
    """A float as protobuf JSON writes it: finite as a number, else a string."""
    if -_INF < x < _INF:
        return x
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def parse_number(value: Any) -> float | None:
    """A protobuf JSON double (a number or one of its string forms); None if it is not one."""
    t = type(value)
    if t is float:
        return float(value)
    if t is int:
        return float(value)
    if t is str:
        try:
            # float() also takes "NaN", "Infinity", "-Infinity" and numeric strings,
            # as protobuf's JSON parser does.
            return float(value)
        except ValueError:
            return None
    return None


def dumps(content: Any) -> bytes:
    return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON)


def error_response(err: OpsloopError) -> Response:
    return json_response(err.to_dict(), err.http_status)


def error_body(status_code: int, error_code: str, message: str) -> Response:
    return json_response({"error_code": error_code, "message": message}, status_code)
