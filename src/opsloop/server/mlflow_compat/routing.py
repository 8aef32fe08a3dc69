"""Turning MLflow handlers into Starlette routes.

A handler is a plain function ``(services, fields) -> dict | None``. The route reads
the body (or the query string for GET), then parses, calls the handler and encodes
the answer in one trip to the threadpool, so the event loop never waits on the
database. These routes skip FastAPI's dependency and validation machinery on
purpose: MLflow's JSON is not described by pydantic models here, and the hot
endpoints (log-batch, runs/search, get-history) cannot afford it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from opsloop.server.mlflow_compat.protocol import Fields, parse_body
from opsloop.server.responses import EMPTY, JSON
from opsloop.server.services import Services

Handler = Callable[[Services, Fields], dict[str, Any] | None]
Endpoint = Callable[[Request], Awaitable[Response]]


def _invoke(
    handler: Handler,
    services: Services,
    method: str,
    body: bytes,
    query: list[tuple[str, str]],
    path: dict[str, Any],
) -> bytes:
    if (method == "GET" and query) or (not body and query):
        fields = Fields.from_query(query, path)
    else:
        fields = Fields.from_json(parse_body(body), path)
    out = handler(services, fields)
    return orjson.dumps(out) if out else EMPTY


def endpoint(handler: Handler, services: Services) -> Endpoint:
    async def call(request: Request) -> Response:
        query = request.query_params.multi_items()
        body = b"" if request.method == "GET" and query else await request.body()
        out = await run_in_threadpool(
            _invoke, handler, services, request.method, body, query, request.path_params
        )
        return Response(out, media_type=JSON)

    call.__name__ = handler.__name__
    call.__doc__ = handler.__doc__
    return call


def routes(table: Sequence[tuple[str, str, Handler]], services: Services) -> list[BaseRoute]:
    """One route per path, accepting each method the table gives it."""
    by_path: dict[str, dict[str, Handler]] = {}
    for method, path, handler in table:
        by_path.setdefault(path, {})[method] = handler
    out: list[BaseRoute] = []
    for path, methods in by_path.items():
        handlers = {m: endpoint(h, services) for m, h in methods.items()}
        if len(handlers) == 1:
            ((m, ep),) = handlers.items()
            out.append(Route(path, ep, methods=[m], include_in_schema=False))
        else:
            out.append(
                Route(path, _dispatch(handlers), methods=list(handlers), include_in_schema=False)
            )
    return out


def _dispatch(handlers: dict[str, Endpoint]) -> Endpoint:
    async def call(request: Request) -> Response:
        ep = handlers.get(request.method) or handlers["GET"]  # HEAD is a GET
        return await ep(request)

    return call
