"""Serving a deployment by name: ``opsloop serve DEPLOYMENT``.

:class:`DeploymentApp` is the inference server (:class:`~opsloop.serving.app.ServingApp`)
for one deployment of the store. It loads the versions ``DeploymentService.resolve``
names (the stable one, the canary, the shadow) under the deployment's name, and:

* routes each request to ``/invocations`` and ``/v2/models/{deployment}/infer`` with
  ``Resolved.route(request_id)``: the request id is the V2 ``id``, else the
  ``X-Request-Id`` header, else a new uuid4 hex; it comes back in the ``X-Request-Id``
  header (and the V2 ``id``). ``/v2/models/{deployment}/versions/{v}/infer`` reaches a
  loaded version directly;
* gives the shadow version a copy of each answered request after the answer is sent:
  its answer is logged, never returned, and its failure only counted
  (``opsloop_serving_errors_total{kind="shadow"}``);
* logs every answered request to the prediction log (:class:`PredictionWriter`, which
  never waits on I/O), as the settings ``log_predictions``, ``log_sample_rate`` and
  ``log_flush_interval_s`` say, and closes the writer on shutdown, so the last segment
  is flushed. The batching settings (``max_batch_size``, ``max_batch_wait_ms``,
  ``max_queue``, ``max_body_bytes``) apply unless ``opsloop serve`` was given them, and
  ``workers`` unless ``--workers`` was;
* re-resolves the deployment every ``poll_interval`` seconds; when its ``revision``
  changed, loads the new versions first (in a thread: the server keeps answering), then
  swaps them in with one assignment. Requests in flight finish on the models they
  started with; the retired batchers close once those requests are answered. A version
  that fails to load leaves the old ones serving; the failure is logged, counted in
  ``opsloop_serving_load_errors{model,version}`` on ``/metrics`` and listed under
  ``parameters.load_errors`` in ``GET /v2/models/{deployment}``.

Example::

    app = create_deployment_app(DeploymentOptions("churn", poll_interval=5))
    uvicorn.run(app, port=8080)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import orjson
from prometheus_client import Gauge

from opsloop.errors import NotFound
from opsloop.serving import codec
from opsloop.serving.app import (
    _JSON,
    Receive,
    Scope,
    Send,
    ServeConfig,
    ServingApp,
    _Entry,
    _respond,
    _version_order,
    header_request_id,
    request_content_type,
    request_id_header,
    respond_v2,
    v2_header_length,
    warm_up,
)
from opsloop.serving.deployments import DeploymentService
from opsloop.serving.entities import Resolved
from opsloop.serving.model import ServedModel, fetch, load
from opsloop.serving.predictions import ColumnBlock, PredictionWriter
from opsloop.serving.schema import InputSchema

log = logging.getLogger("opsloop.serving")

DEPLOYMENT_ENV: Final = "OPSLOOP_SERVE_DEPLOYMENT"
_RETIRE_WAIT_S: Final = 60.0
_SHADOW_WAIT_S: Final = 10.0
_CONFIG_KEYS: Final = tuple(f.name for f in fields(ServeConfig))


@dataclass(frozen=True)
class DeploymentOptions:
    """How ``opsloop serve DEPLOYMENT`` serves: the deployment, how often it is
    re-resolved, and serving settings given on the command line (they win over the
    deployment's own: ``ServeConfig`` field -> value)."""

    name: str
    poll_interval: float = 5.0
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> DeploymentOptions:
        return cls(**json.loads(os.environ[DEPLOYMENT_ENV]))


def serve_config(settings: dict[str, Any], overrides: dict[str, Any]) -> ServeConfig:
    """The batching and body settings: the deployment's, then the command line's."""
    values = {k: settings[k] for k in _CONFIG_KEYS if settings.get(k) is not None}
    values.update({k: v for k, v in overrides.items() if k in _CONFIG_KEYS and v is not None})
    return ServeConfig(**values)


@dataclass(eq=False)
class _State:
    """What one revision of the deployment serves. Replaced whole on a swap."""

    resolved: Resolved
    config: ServeConfig
    entries: dict[str, _Entry]  # version -> entry: the served versions and the shadow
    front: _Entry  # the deployment's own name: the stable model, the deployment's metadata
    shadow: _Entry | None
    log_predictions: bool
    inflight: int = 0


class DeploymentApp(ServingApp):
    """The inference server of one deployment (see the module docstring)."""

    def __init__(
        self,
        options: DeploymentOptions,
        service: DeploymentService,
        writer: PredictionWriter,
    ) -> None:
        self.name = options.name
        self.poll_interval = options.poll_interval
        self.overrides = dict(options.overrides)
        self.service = service
        self.writer = writer
        self.load_errors: dict[str, str] = {}
        self._failed_revision: int | None = None
        self._downloads = Path(tempfile.mkdtemp(prefix="opsloop-serve-"))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        resolved = service.resolve(self.name)
        if resolved.warning:
            log.warning("deployment %s: %s", self.name, resolved.warning)
        try:
            models = {v: self._load_version(resolved.model, v) for v in resolved.versions}
        except BaseException:
            shutil.rmtree(self._downloads, ignore_errors=True)
            raise
        config = serve_config(resolved.settings, self.overrides)
        super().__init__([models[resolved.stable.version]], config)
        self._load_error_gauge = Gauge(
            "opsloop_serving_load_errors",
            "1 for a deployment's model version that failed to load (the old ones serve on).",
            ["model", "version"],
            registry=self.metrics.registry,
            multiprocess_mode="max",
        )
        self._revision_gauge = Gauge(
            "opsloop_serving_deployment_revision",
            "The deployment revision being served.",
            ["deployment"],
            registry=self.metrics.registry,
            multiprocess_mode="max",
        )
        self._install(self._build_state(resolved, models, None))

    # -- states ------------------------------------------------------------------------

    def _load_version(self, model: str, version: int) -> ServedModel:
        """Fetch and load one registered version under the deployment's name (blocking)."""
        dst = self._downloads / f"v{version}-{uuid.uuid4().hex[:8]}"
        try:
            served = load(fetch(f"models:/{model}/{version}", dst), name=self.name)
        except BaseException:
            shutil.rmtree(dst, ignore_errors=True)
            raise
        warm_up(served)
        return served

    def _build_state(
        self, resolved: Resolved, models: dict[int, ServedModel], old: _State | None
    ) -> _State:
        config = serve_config(resolved.settings, self.overrides)
        entries: dict[str, _Entry] = {}
        for v in resolved.versions:
            key = str(v)
            prev = old.entries.get(key) if old is not None and old.config == config else None
            if prev is not None and prev.model is models[v]:
                entries[key] = prev
            else:
                entries[key] = self._make_entry(models[v], config)
        stable = entries[str(resolved.stable.version)]
        shadow = entries[str(resolved.shadow.version)] if resolved.shadow is not None else None
        state = _State(
            resolved=resolved,
            config=config,
            entries=entries,
            front=stable,
            shadow=shadow,
            log_predictions=bool(resolved.settings.get("log_predictions", True)),
        )
        state.front = self._front(state)
        return state

    def _front(self, state: _State) -> _Entry:
        """The entry ``/v2/models/{deployment}`` answers with: the stable model, and the
        deployment's split, revision and load errors in its metadata."""
        r = state.resolved
        stable = state.entries[str(r.stable.version)]
        meta = stable.model.metadata()
        meta["versions"] = sorted(state.entries, key=_version_order)
        meta["parameters"] = {
            "deployment": self.name,
            "model": r.model,
            "revision": r.revision,
            "traffic": {str(t.version): t.share for t in r.served},
            "shadow": str(r.shadow.version) if r.shadow is not None else None,
            "load_errors": dict(self.load_errors),
        }
        return _Entry(stable.model, stable.batcher, stable.metrics, orjson.dumps(meta))

    def _install(self, state: _State) -> None:
        """Serve ``state`` from the next request on (one reference swap each)."""
        self._state = state
        self.config = state.config
        self._models = {self.name: state.entries}
        self._entries = list({id(e): e for e in state.entries.values()}.values())
        self._default = state.front
        settings = state.resolved.settings
        self.writer.set_sample_rate(self.name, float(settings.get("log_sample_rate", 1.0)))
        if settings.get("log_flush_interval_s"):
            # read by the writer's thread before each wait: applies from its next flush
            self.writer.flush_interval = float(settings["log_flush_interval_s"])
        self._revision_gauge.labels(self.name).set(state.resolved.revision)

    # -- reloading ---------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Resolve the deployment again; load and swap in a new revision. True if swapped."""
        resolved = await asyncio.to_thread(self.service.resolve, self.name)
        old = self._state
        if resolved.revision == old.resolved.revision:
            return False
        loaded = {int(k): e.model for k, e in old.entries.items()}
        models: dict[int, ServedModel] = {}
        errors: dict[str, str] = {}
        for v in resolved.versions:
            m = loaded.get(v)
            if m is None:
                try:
                    m = await asyncio.to_thread(self._load_version, resolved.model, v)
                except Exception as exc:
                    errors[str(v)] = f"{type(exc).__name__}: {exc}"
                    continue
            models[v] = m
        if errors:
            if self._failed_revision != resolved.revision:
                for key, message in errors.items():
                    log.error(
                        "deployment %s revision %d: version %s failed to load; revision %d "
                        "serves on: %s",
                        self.name,
                        resolved.revision,
                        key,
                        old.resolved.revision,
                        message,
                    )
                self._spawn(asyncio.to_thread(self._report_load_failure, resolved, old, errors))
            self._failed_revision = resolved.revision
            self.load_errors = errors
            for key in errors:
                self._load_error_gauge.labels(self.name, key).set(1)
            old.front = self._front(old)
            self._default = old.front
            return False
        for key in self.load_errors:
            self._load_error_gauge.labels(self.name, key).set(0)
        self.load_errors = {}
        self._failed_revision = None
        if resolved.warning:
            log.warning("deployment %s: %s", self.name, resolved.warning)
        new = self._build_state(resolved, models, old)
        kept = {id(e) for e in new.entries.values()}
        for e in new.entries.values():
            e.batcher.start()
        self._install(new)
        log.info(
            "deployment %s revision %d: serving %s%s",
            self.name,
            resolved.revision,
            ", ".join(f"v{t.version} {t.share:g}%" for t in resolved.served),
            f", shadow v{resolved.shadow.version}" if resolved.shadow is not None else "",
        )
        retired = [
            e for e in {id(e): e for e in old.entries.values()}.values() if id(e) not in kept
        ]
        if retired:
            self._spawn(self._retire(old, retired))
        return True

    def _report_load_failure(self, resolved: Resolved, old: _State, errors: dict[str, str]) -> None:
        """A ``deployment.load_failed`` event (``GET /api/v1/events``): once per revision,
        whichever worker process sees it first."""
        from opsloop.core.ids import now_ms
        from opsloop.store.events import list_events, record_event

        kind = "deployment.load_failed"
        try:
            db = self.service.db
            since = now_ms() - 3_600_000
            for e in list_events(db, kind=kind, subject=self.name, since_ms=since):
                if e.payload.get("revision") == resolved.revision:
                    return
            versions = ", ".join(sorted(errors))
            record_event(
                db,
                kind,
                f"deployment {self.name!r} revision {resolved.revision}: version(s) {versions} "
                f"failed to load; revision {old.resolved.revision} serves on",
                source="serving",
                subject=self.name,
                severity="critical",
                payload={
                    "revision": resolved.revision,
                    "serving_revision": old.resolved.revision,
                    "errors": errors,
                },
            )
        except Exception:  # reporting must not take the server down
            log.exception("deployment %s: could not record the load failure event", self.name)

    async def _retire(self, old: _State, retired: list[_Entry]) -> None:
        """Close the batchers of versions no longer served, once the requests that
        started on them are answered."""
        deadline = time.monotonic() + _RETIRE_WAIT_S
        while old.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.gather(*(e.batcher.close() for e in retired))

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:  # once per outage, not once per poll
                    message = exc.message if isinstance(exc, NotFound) else repr(exc)
                    log.warning(
                        "deployment %s: cannot re-resolve it (%s); serving revision %d on",
                        self.name,
                        message,
                        self._state.resolved.revision,
                    )
                failing = True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifespan ----------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for e in self._entries:
                    e.batcher.start()
                self._poller = asyncio.get_running_loop().create_task(self._poll())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        """Stop polling, finish the queued batches (the shadow's too), flush the
        prediction log and remove the downloaded models."""
        self.ready = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.gather(*(e.batcher.close() for e in self._entries))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_SHADOW_WAIT_S)
        await asyncio.to_thread(self.writer.close)
        self.metrics.process_exiting()
        shutil.rmtree(self._downloads, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------

    def _lookup(self, name: str, version: str | None) -> _Entry | None:
        if name != self.name:
            return None
        state = self._state
        return state.front if version is None else state.entries.get(version)

    async def _infer_v2(self, entry: _Entry, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state
        state.inflight += 1
        started = time.perf_counter()
        status = 200
        pinned = "/versions/" in scope["path"]
        rid: str | None = header_request_id(scope)
        try:
            header_length = v2_header_length(scope)
            body = await self._read_body(scope, receive)
            schema = entry.model.inputs
            req = codec.decode_v2(body, schema, header_length)
            rid = req.id or rid or uuid.uuid4().hex
            if not pinned:
                entry = state.entries[str(state.resolved.route(rid).version)]
                if entry.model.inputs != schema:
                    schema = entry.model.inputs
                    req = codec.decode_v2(body, schema, header_length)
            req.id = rid
            outputs = await entry.batcher.submit(req.rows)
            await respond_v2(send, entry.model, req, outputs, request_id_header(rid))
            rows = req.rows

            def decode(s: InputSchema) -> codec.Rows:
                return codec.decode_v2(body, s, header_length).rows

            self._answered(state, entry, rid, rows, outputs, started, decode)
        except Exception as exc:
            status = await self._fail(entry, send, exc, rid)
        finally:
            state.inflight -= 1
        entry.metrics.answered("v2", status, time.perf_counter() - started)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state
        state.inflight += 1
        started = time.perf_counter()
        status = 200
        rid = header_request_id(scope) or uuid.uuid4().hex
        entry = state.entries[str(state.resolved.route(rid).version)]
        try:
            content_type = request_content_type(scope)
            body = await self._read_body(scope, receive)
            rows = codec.decode_invocations(body, content_type, entry.model.inputs)
            outputs = await entry.batcher.submit(rows)
            headers = [*request_id_header(rid), entry.version_header]
            await _respond(send, 200, codec.encode_invocations(outputs), _JSON, headers)

            def decode(s: InputSchema) -> codec.Rows:
                return codec.decode_invocations(body, content_type, s)

            self._answered(state, entry, rid, rows, outputs, started, decode)
        except Exception as exc:
            status = await self._fail(entry, send, exc, rid)
        finally:
            state.inflight -= 1
        entry.metrics.answered("invocations", status, time.perf_counter() - started)

    def _answered(
        self,
        state: _State,
        entry: _Entry,
        rid: str,
        rows: codec.Rows,
        outputs: codec.Outputs,
        started: float,
        decode: Callable[[InputSchema], codec.Rows],
    ) -> None:
        """After the answer is sent: log it, and give the shadow its copy."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        model = entry.model
        if state.log_predictions:
            self._log(model, rid, rows, outputs, latency_ms, shadow=False)
        shadow = state.shadow
        if shadow is None or shadow is entry:
            return
        try:
            shadow_rows = (
                rows if shadow.model.inputs == model.inputs else decode(shadow.model.inputs)
            )
            future = shadow.batcher.submit(shadow_rows)
        except Exception as exc:
            shadow.metrics.error("shadow")
            log.debug("shadow %s of %s refused request %s: %s", shadow.model.version, rid, exc)
            return
        self._spawn(self._shadow(state, shadow, future, rid, shadow_rows))

    async def _shadow(
        self,
        state: _State,
        shadow: _Entry,
        future: asyncio.Future[codec.Outputs],
        rid: str,
        rows: codec.Rows,
    ) -> None:
        started = time.perf_counter()
        try:
            outputs = await future
        except Exception as exc:
            shadow.metrics.error("shadow")
            log.debug("shadow version %s failed on request %s: %s", shadow.model.version, rid, exc)
            return
        seconds = time.perf_counter() - started
        shadow.metrics.answered("shadow", 200, seconds)
        if state.log_predictions:
            self._log(shadow.model, rid, rows, outputs, seconds * 1000.0, shadow=True)

    def _log(
        self,
        model: ServedModel,
        rid: str,
        rows: codec.Rows,
        outputs: codec.Outputs,
        latency_ms: float,
        *,
        shadow: bool,
    ) -> None:
        try:
            self.writer.log(
                self.name,
                int(model.version) if model.version.isdigit() else None,
                rid,
                logged_inputs(rows, model.inputs),
                logged_outputs(outputs),
                latency_ms,
                shadow=shadow,
            )
        except Exception as exc:  # the log must never fail a request
            log.warning("prediction log: request %s not logged: %s", rid, exc)


def logged_inputs(rows: codec.Rows, schema: InputSchema) -> dict[str, Any] | ColumnBlock:
    """A request's decoded input as the prediction log takes it: column -> values, or,
    for a block of the schema's columns, the block itself with their names (a slice per
    column here cost ~5% of the server's throughput; the flush splits the
    concatenated blocks of thousands of requests at once instead)."""
    if rows.columns is not None:
        return {str(k): v for k, v in rows.columns.items()}
    block = rows.block
    assert block is not None
    if schema.layout == "columns" and block.ndim == 2 and block.shape[1] == len(schema.columns):
        return ColumnBlock(schema.names, block)
    return {"input": list(block)}


def logged_outputs(outputs: codec.Outputs) -> Any:
    """A request's outputs for the log: one array (``prediction``) or name -> array."""
    if len(outputs.arrays) == 1 and not outputs.frame:
        return outputs.arrays[0][1]
    return dict(outputs.arrays)


def is_deployment(name: str) -> bool:
    """Whether ``name`` (not a URI or a folder) names a deployment of the default store."""
    if ":" in name or "/" in name or os.path.isdir(name):
        return False
    from opsloop.store import default_store

    return DeploymentService(default_store()).exists(name)


def create_deployment_app(options: DeploymentOptions) -> DeploymentApp:
    """Resolve the deployment on the default store, load its versions, make the app."""
    from opsloop.store import default_store

    store = default_store()
    service = DeploymentService(store)
    settings = service.resolve(options.name).settings
    writer = PredictionWriter(store, flush_interval=float(settings["log_flush_interval_s"]))
    try:
        app = DeploymentApp(options, service, writer)
    except BaseException:
        writer.close()
        raise
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app


def create_deployment_app_from_env() -> DeploymentApp:
    """One uvicorn worker's app, from ``$OPSLOOP_SERVE_DEPLOYMENT`` (set by ``opsloop serve``)."""
    return create_deployment_app(DeploymentOptions.from_env())


__all__ = [
    "DEPLOYMENT_ENV",
    "DeploymentApp",
    "DeploymentOptions",
    "create_deployment_app",
    "create_deployment_app_from_env",
    "is_deployment",
    "logged_inputs",
    "logged_outputs",
    "serve_config",
]
