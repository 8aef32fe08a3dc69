"""The inference server: an ASGI app serving one or more models.

Endpoints (the Open Inference Protocol v2 REST API, MLflow's scoring protocol, metrics)::

    GET  /v2/health/live  /v2/health/ready  /v2                  server health, metadata
    GET  /v2/models/{name}[/versions/{v}]                         model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready                   model readiness
    POST /v2/models/{name}[/versions/{v}]/infer                   inference (JSON, binary tensors)
    POST /invocations                                             MLflow (JSON formats, CSV)
    GET  /ping  /health                                           as ``mlflow models serve`` has
    GET  /metrics                                                 Prometheus text format

Every error is ``{"error": "..."}`` with one status: 400 bad input (naming the column),
404 unknown model or path, 405 wrong method, 413 body over the limit, 500 the model
failed (the server goes on), 503 queue full (with ``Retry-After``).

Every inference answer and every error carries ``X-Request-Id``: the V2 request's ``id``,
else the request's ``X-Request-Id`` header, else a new one. ``/invocations`` answers
say which model version answered in ``X-Model-Version`` (V2 answers have it in their
``model_version``).

Why a thin ASGI layer and not FastAPI or Starlette's router: on one connection the
server's whole budget over the model's own ``predict`` is a millisecond, and a routed
Starlette request with its Request object costs a tenth of that before any work. The
routes are few and fixed, so matching them by hand is short.

Example::

    import uvicorn
    from opsloop.serving import model as serving_model
    from opsloop.serving.app import ServeConfig, ServingApp

    app = ServingApp([serving_model.load("models:/churn@production")], ServeConfig())
    uvicorn.run(app, port=8080)
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Final

import orjson

from opsloop.errors import InvalidInput, OpsloopError
from opsloop.serving import codec
from opsloop.serving.batcher import Batcher, QueueFull
from opsloop.serving.metrics import CONTENT_TYPE, ModelMetrics, ServingMetrics
from opsloop.serving.model import ModelSource, ServedModel, load

log = logging.getLogger("opsloop.serving")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONFIG_ENV: Final = "OPSLOOP_SERVE_CONFIG"
_JSON: Final = b"application/json"
_TEXT: Final = b"text/plain; charset=utf-8"
_DRAIN_CAP: Final = 1 << 30  # read and drop at most this much of a too-large body
REQUEST_ID: Final = b"x-request-id"
MODEL_VERSION: Final = b"x-model-version"
MAX_REQUEST_ID: Final = 256


@dataclass(frozen=True)
class ServeConfig:
    """Serving settings (the ``opsloop serve`` options)."""

    max_batch_size: int = 64
    max_batch_wait_ms: float = 2.0
    max_queue: int = 1024
    max_body_bytes: int = 100 * 1024 * 1024
    fault_delay_ms: float = 0.0  # a drill: latency added to every predict call


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


@dataclass
class _Entry:
    model: ServedModel
    batcher: Batcher
    metrics: ModelMetrics
    metadata: bytes

    @property
    def version_header(self) -> tuple[bytes, bytes]:
        return (MODEL_VERSION, self.model.version.encode("latin-1", "replace"))


def _version() -> str:
    try:
        return package_version("opsloop")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


class ServingApp:
    """The ASGI app (see the module docstring)."""

    def __init__(self, models: Sequence[ServedModel], config: ServeConfig | None = None) -> None:
        if not models:
            raise InvalidInput("The inference server needs at least one model.")
        self.config = config or ServeConfig()
        self.metrics = ServingMetrics()
        self._models: dict[str, dict[str, _Entry]] = {}
        self._entries: list[_Entry] = []
        for m in models:
            entry = self._make_entry(m, self.config)
            self._models.setdefault(m.name, {})[m.version] = entry
            self._entries.append(entry)
        self._default = self._entries[0]
        self._server_metadata = orjson.dumps(
            {"name": "opsloop", "version": _version(), "extensions": ["binary_tensor_data"]}
        )
        self.ready = True  # the models are loaded; False again once shutting down

    def _make_entry(self, m: ServedModel, config: ServeConfig) -> _Entry:
        """A model's batcher, metrics and V2 metadata."""
        mm = self.metrics.for_model(m.name, m.version)
        batcher = Batcher(
            m,
            max_batch_size=config.max_batch_size,
            max_batch_wait_ms=config.max_batch_wait_ms,
            max_queue=config.max_queue,
            metrics=mm,
            fault_delay_ms=config.fault_delay_ms,
        )
        return _Entry(m, batcher, mm, orjson.dumps(m.metadata()))

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            started = False

            async def tracked(message: Message) -> None:
                nonlocal started
                started = True
                if message["type"] == "http.response.start" and message["status"] >= 400:
                    # Errors answered before a request id was known (a 404, a body too
                    # large ...) carry one too: the caller's, or a new one to quote.
                    headers = message.get("headers") or []
                    if not any(k == REQUEST_ID for k, _ in headers):
                        rid = header_request_id(scope) or uuid.uuid4().hex
                        message["headers"] = [*headers, *request_id_header(rid)]
                await send(message)

            try:
                await self._http(scope, receive, tracked)
            except _Disconnected:
                pass
            except Exception:
                log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
                if not started:
                    await _error(
                        send, 500, "Unexpected server error; the server log has the traceback."
                    )
            return
        if kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for e in self._entries:
                    e.batcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        """Finish the queued batches and stop (uvicorn calls this on SIGTERM, after the
        requests in flight are answered)."""
        self.ready = False
        await asyncio.gather(*(e.batcher.close() for e in self._entries))
        self.metrics.process_exiting()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v2/models/"):
            await self._v2_model(path[len("/v2/models/") :], method, scope, receive, send)
            return
        if path == "/invocations":
            if method != "POST":
                await _error(send, 405, "/invocations accepts POST.")
                return
            await self._invocations(scope, receive, send)
            return
        if method not in ("GET", "HEAD"):
            if path in _GET_PATHS:
                await _error(send, 405, f"{path} accepts GET.")
            else:
                await _error(send, 404, _not_found(method, path))
            return
        if path in ("/v2/health/live", "/ping", "/health"):
            await _respond(send, 200, b"\n" if path == "/ping" else b"OK", _TEXT)
        elif path == "/v2/health/ready":
            await _respond(send, 200 if self.ready else 503, b"", _TEXT)
        elif path == "/v2" or path == "/v2/":
            await _respond(send, 200, self._server_metadata)
        elif path == "/metrics":
            for e in self._entries:
                e.metrics.queue_depth.set(e.batcher.depth)
            await _respond(send, 200, self.metrics.exposition(), CONTENT_TYPE.encode())
        elif path == "/version":
            await _respond(send, 200, _version().encode(), _TEXT)
        else:
            await _error(send, 404, _not_found(method, path))

    async def _v2_model(
        self, rest: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        parts = rest.split("/")
        name, version, action = parts[0], None, ""
        tail = parts[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) == 1:
            action = tail[0]
        elif tail:
            await _error(send, 404, _not_found(method, scope["path"]))
            return
        if action not in ("", "ready", "infer"):
            await _error(send, 404, _not_found(method, scope["path"]))
            return
        want = "POST" if action == "infer" else "GET"
        if method != want and not (want == "GET" and method == "HEAD"):
            await _error(send, 405, f"{scope['path']} accepts {want}.")
            return
        entry = self._lookup(name, version)
        if entry is None:
            served = ", ".join(f"{m}/{v}" for m, vs in self._models.items() for v in vs)
            what = f"model {name!r}" + (f" version {version!r}" if version else "")
            await _error(send, 404, f"No {what} is served here; serving {served}.")
            return
        if action == "infer":
            await self._infer_v2(entry, scope, receive, send)
        elif action == "ready":
            await _respond(send, 200, b"", _TEXT)
        else:
            await _respond(send, 200, entry.metadata)

    def _lookup(self, name: str, version: str | None) -> _Entry | None:
        versions = self._models.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions, key=_version_order)]
        return versions.get(version)

    # -- inference -------------------------------------------------------------------

    async def _infer_v2(self, entry: _Entry, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 200
        rid = header_request_id(scope)
        try:
            header_length = v2_header_length(scope)
            body = await self._read_body(scope, receive)
            req = codec.decode_v2(body, entry.model.inputs, header_length)
            rid = req.id or rid or uuid.uuid4().hex
            outputs = await entry.batcher.submit(req.rows)
            await respond_v2(send, entry.model, req, outputs, request_id_header(rid))
        except Exception as exc:
            status = await self._fail(entry, send, exc, rid)
        entry.metrics.answered("v2", status, time.perf_counter() - started)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._default
        started = time.perf_counter()
        status = 200
        rid = header_request_id(scope) or uuid.uuid4().hex
        try:
            content_type = request_content_type(scope)
            body = await self._read_body(scope, receive)
            rows = codec.decode_invocations(body, content_type, entry.model.inputs)
            outputs = await entry.batcher.submit(rows)
            headers = [*request_id_header(rid), entry.version_header]
            await _respond(send, 200, codec.encode_invocations(outputs), _JSON, headers)
        except Exception as exc:
            status = await self._fail(entry, send, exc, rid)
        entry.metrics.answered("invocations", status, time.perf_counter() - started)

    async def _fail(self, entry: _Entry, send: Send, exc: Exception, rid: str | None = None) -> int:
        """Answer ``exc`` in the one error shape, with ``X-Request-Id`` ``rid`` (else the
        request's, else a new one); returns the status sent."""
        if isinstance(exc, _Disconnected):
            entry.metrics.error("disconnected")
            raise exc
        headers: list[tuple[bytes, bytes]] = request_id_header(rid) if rid else []
        if isinstance(exc, _TooLarge):
            status, kind = 413, "too_large"
            limit = self.config.max_body_bytes
            message = (
                f"The request body is larger than the server's limit of {_size(limit)} "
                "(opsloop serve --max-body-mb); send fewer rows per request."
            )
        elif isinstance(exc, QueueFull):
            status, kind, message = 503, "", exc.message
            headers.append((b"retry-after", str(exc.retry_after).encode()))
        elif isinstance(exc, codec.PredictError):
            status, kind, message = 500, "", str(exc)  # counted by the batcher, once a batch
            headers.append(entry.version_header)  # which version failed
        elif isinstance(exc, InvalidInput):
            status, kind, message = 400, "input", exc.message
        elif isinstance(exc, OpsloopError):
            status, kind, message = exc.http_status, "server", exc.message
        else:
            log.exception("unexpected error answering an inference request")
            status, kind = 500, "server"
            message = (
                f"Unexpected server error ({type(exc).__name__}); the server log has the traceback."
            )
        if kind:
            entry.metrics.error(kind)
        await _error(send, status, message, headers)
        return status

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        declared = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise InvalidInput("Content-Length must be an integer.") from None
        if declared is not None and declared > limit:
            await _drain(receive, declared)
            raise _TooLarge()
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > limit:
                raise _TooLarge()
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _drain(receive, _DRAIN_CAP)
                raise _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


_GET_PATHS: Final = frozenset(
    ("/v2/health/live", "/v2/health/ready", "/v2", "/ping", "/health", "/metrics", "/version")
)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _not_found(method: str, path: str) -> str:
    return f"No endpoint at {method} {path}."


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n} bytes"


async def _drain(receive: Receive, cap: int) -> None:
    """Read and drop the rest of a body we refuse, so the client reads our answer."""
    seen = 0
    while seen <= min(cap, _DRAIN_CAP):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def header_request_id(scope: Scope) -> str | None:
    """The request's ``X-Request-Id`` header (stripped, at most 256 characters), or None."""
    for key, value in scope["headers"]:
        if key == REQUEST_ID:
            text: str = value.decode("latin-1").strip()[:MAX_REQUEST_ID]
            return text or None
    return None


def request_id_header(rid: str) -> list[tuple[bytes, bytes]]:
    """``X-Request-Id`` for the answer (left out if the id cannot be a header value)."""
    if rid.isascii() and rid.isprintable() and len(rid) <= MAX_REQUEST_ID:
        return [(REQUEST_ID, rid.encode())]
    return []


def v2_header_length(scope: Scope) -> int | None:
    """The JSON part's length of a V2 request with binary tensors (the
    ``Inference-Header-Content-Length`` header), None without it."""
    for key, value in scope["headers"]:
        if key == b"inference-header-content-length":
            try:
                return int(value)
            except ValueError:
                raise InvalidInput("Inference-Header-Content-Length must be an integer.") from None
    return None


def request_content_type(scope: Scope) -> str:
    """The request's Content-Type (empty when it has none)."""
    content_type = ""
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
    return content_type


async def respond_v2(
    send: Send,
    model: ServedModel,
    req: codec.V2Request,
    outputs: codec.Outputs,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Answer a V2 infer request: JSON, or with binary outputs when they were asked for
    (their JSON part's length in ``Inference-Header-Content-Length``)."""
    data, json_length = codec.encode_v2(model.name, model.version, req, outputs)
    if json_length is not None:
        headers = [*headers, (b"inference-header-content-length", str(json_length).encode())]
    await _respond(
        send,
        200,
        data,
        _JSON if json_length is None else b"application/octet-stream",
        headers,
    )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, codec.v2_error(message), _JSON, headers)


# --------------------------------------------------------------------------- workers


def config_to_env(sources: Sequence[ModelSource], config: ServeConfig) -> str:
    """What :func:`create_app_from_env` reads: the fetched models and the settings."""
    return json.dumps(
        {
            "models": [
                {
                    "path": str(s.path),
                    "name": s.name,
                    "version": s.version,
                    "uri": s.uri,
                    "signature": s.signature.to_json() if s.signature is not None else None,
                }
                for s in sources
            ],
            "config": asdict(config),
        }
    )


def sources_from_env() -> tuple[list[ModelSource], ServeConfig]:
    """Inverse of :func:`config_to_env`, reading ``$OPSLOOP_SERVE_CONFIG``."""
    from opsloop.registry.signature import Signature

    spec = json.loads(os.environ[CONFIG_ENV])
    sources = [
        ModelSource(
            Path(m["path"]),
            m["name"],
            m["version"],
            m["uri"],
            Signature.from_json(m["signature"]) if m.get("signature") else None,
        )
        for m in spec["models"]
    ]
    return sources, ServeConfig(**spec["config"])


def warm_up(model: ServedModel) -> None:
    """Predict once on the model's serving example, if it has one, before taking traffic.

    The first call of a model pays for lazy imports and caches (~10 ms for scikit-learn);
    better here than in the first caller's latency. A failure is logged, not raised: the
    example may predate a signature change, and the model may still serve.
    """
    example = Path(model.pyfunc.path) / "serving_input_example.json"
    if not example.is_file():
        return
    try:
        rows = codec.decode_invocations(example.read_bytes(), "application/json", model.inputs)
        model.predict(codec.model_input(rows, model.inputs))
    except Exception as exc:
        log.warning("warming up %s on its serving example failed: %s", model.name, exc)


def create_app(sources: Sequence[ModelSource], config: ServeConfig) -> ServingApp:
    """Load the models and make the app (what each server process runs)."""
    models = [load(s) for s in sources]
    for model in models:
        warm_up(model)
    app = ServingApp(models, config)
    # The model and the app live as long as the process: keep the collector off them,
    # and collect young objects less often (fewer pauses in the tail latency).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app


def create_app_from_env() -> ServingApp:
    """The app of one uvicorn worker, from ``$OPSLOOP_SERVE_CONFIG`` (set by ``opsloop serve``)."""
    return create_app(*sources_from_env())


__all__ = [
    "CONFIG_ENV",
    "ServeConfig",
    "ServingApp",
    "config_to_env",
    "create_app",
    "create_app_from_env",
    "header_request_id",
    "request_id_header",
    "sources_from_env",
    "warm_up",
]
