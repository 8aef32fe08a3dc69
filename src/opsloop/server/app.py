"""The opsloop server app: MLflow's REST protocol, opsloop's ``/api/v1``, one error shape.

Every error leaves as ``{"error_code": ..., "message": ...}`` with one HTTP status:

- an :class:`~opsloop.errors.OpsloopError` → its ``http_status`` and ``to_dict()``;
- a request that does not parse or has a field of the wrong type → 400
  ``INVALID_PARAMETER_VALUE``, naming the field;
- a path no route serves → 404 ``ENDPOINT_NOT_FOUND`` (MLflow's client reads that as
  "this server does not have the endpoint");
- anything else → 500 ``INTERNAL_ERROR``, with the traceback in the server log.

Example::

    import uvicorn
    from opsloop.server.app import create_app

    uvicorn.run(create_app(), port=5000)
"""

from __future__ import annotations

import gc
import logging
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsloop.errors import OpsloopError
from opsloop.server.api_v1 import router as api_v1_router
from opsloop.server.background import lifespan_for
from opsloop.server.mlflow_compat import mlflow_routes
from opsloop.server.responses import error_body, error_response
from opsloop.server.services import Services
from opsloop.store import Store, default_store

log = logging.getLogger("opsloop.server")

_HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    413: "REQUEST_LIMIT_EXCEEDED",
    429: "REQUEST_LIMIT_EXCEEDED",
}


def opsloop_version() -> str:
    try:
        return package_version("opsloop")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


async def _on_opsloop_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpsloopError)
    if exc.http_status >= 500:
        log.error("%s: %s", exc.error_code, exc.message)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no endpoint at {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.url.path} does not accept {request.method}"
    else:
        message = str(exc.detail)
    return error_body(exc.status_code, code, message)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_body(400, "INVALID_PARAMETER_VALUE", "invalid request: " + "; ".join(problems))


class CatchUnexpected:
    """Answer any exception nothing else handled with a 500 in the one error shape.

    Starlette's own catch-all re-raises after answering, so the error would be
    logged twice; this logs the traceback once and answers like every other error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            log.exception(
                "unexpected error answering %s %s", scope.get("method"), scope.get("path")
            )
            if started:
                raise
            response = error_body(
                500,
                "INTERNAL_ERROR",
                f"unexpected server error ({type(exc).__name__}); the server log has the traceback",
            )
            await response(scope, receive, send)


def _describe_errors_as_served(app: FastAPI) -> None:
    """Drop FastAPI's default 422 responses from the OpenAPI: invalid requests are
    answered 400 in the one error shape, which every route already documents."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _tune_gc() -> None:
    """Collect cycles less often than CPython's default (every 700 net allocations).

    A search answer of thousands of runs allocates hundreds of thousands of dicts
    and lists, none in cycles; at the default threshold the collector ran dozens of
    times per request and took ~40% of a 10,000-run ``runs/search``. Objects alive at
    start-up (modules, the app) are frozen out of collections altogether.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def create_app(store: Store | None = None) -> FastAPI:
    """The server app on ``store`` (default: the store the environment names)."""
    services = Services.open(store if store is not None else default_store())
    _tune_gc()
    app = FastAPI(
        title="opsloop",
        version=opsloop_version(),
        description=(
            "opsloop's REST API (`/api/v1`). The server also speaks MLflow's REST "
            "protocol under `/api/2.0/mlflow` for the stock `mlflow` client."
        ),
        exception_handlers={
            OpsloopError: _on_opsloop_error,
            StarletteHTTPException: _on_http_error,
            RequestValidationError: _on_validation_error,
        },
        lifespan=lifespan_for(services.store),
    )
    app.state.services = services
    app.add_middleware(CatchUnexpected)

    @app.get("/health", include_in_schema=False, response_class=PlainTextResponse)
    def health() -> str:
        return "OK"

    @app.get("/version", include_in_schema=False, response_class=PlainTextResponse)
    def version() -> str:
        return opsloop_version()

    app.include_router(api_v1_router, prefix="/api/v1")
    _describe_errors_as_served(app)
    # The MLflow mounts go first: the hot endpoints should not wait on other routes' matching.
    app.router.routes[:0] = mlflow_routes(services)
    return app
