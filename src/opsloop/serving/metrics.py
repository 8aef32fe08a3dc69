"""Prometheus metrics of the inference server, per model and version.

Exposed on ``GET /metrics`` in Prometheus' text format::

    opsloop_serving_requests_total{model,version,protocol,code}    answered requests
    opsloop_serving_errors_total{model,version,kind}               input|predict|queue_full|...
    opsloop_serving_request_seconds{model,version,protocol}        latency histogram
    opsloop_serving_batch_size{model,version}                      rows per predict call
    opsloop_serving_queue_depth{model,version}                     requests waiting for a batch

Each app has a registry of its own (several apps in one process - tests - do not share
counts). The label children are looked up once per model and reused: a ``.labels()`` call
per request would cost more than the rest of the bookkeeping.

With several worker processes (``opsloop serve --workers N``) a scrape reaches one of
them, so the workers share their counts through prometheus-client's multiprocess mode:
``opsloop serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before the workers
start, each worker writes its values there, and ``/metrics`` in any worker sums them
(the queue depth over the live workers).
"""

from __future__ import annotations

import os
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class ServingMetrics:
    """The metric families of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "opsloop_serving_requests",
            "Inference requests answered, by protocol and HTTP status.",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self.errors = Counter(
            "opsloop_serving_errors",
            "Inference requests that failed, by kind (input, predict, queue_full, too_large).",
            ["model", "version", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "opsloop_serving_request_seconds",
            "Time from a request's first byte read to its answer written.",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "opsloop_serving_batch_size",
            "Rows in each predict call (concurrent requests are batched together).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "opsloop_serving_queue_depth",
            "Requests waiting to be batched.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))

    def for_model(self, model: str, version: str) -> ModelMetrics:
        return ModelMetrics(self, model, version)

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's metrics."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def process_exiting(self) -> None:
        """Drop this worker's live gauges (its queue is empty now) from the shared sums."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class ModelMetrics:
    """The metric children of one model version, cached."""

    def __init__(self, parent: ServingMetrics, model: str, version: str) -> None:
        self._parent = parent
        self.model = model
        self.version = version
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._errors: dict[str, Any] = {}
        self.batch_size = parent.batch_size.labels(model, version)
        self.queue_depth = parent.queue_depth.labels(model, version)

    def answered(self, protocol: str, code: int, seconds: float) -> None:
        key = (protocol, code)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self._parent.requests.labels(
                self.model, self.version, protocol, str(code)
            )
        child.inc()
        hist = self._latency.get(protocol)
        if hist is None:
            hist = self._latency[protocol] = self._parent.latency.labels(
                self.model, self.version, protocol
            )
        hist.observe(seconds)

    def error(self, kind: str, count: int = 1) -> None:
        child = self._errors.get(kind)
        if child is None:
            child = self._errors[kind] = self._parent.errors.labels(self.model, self.version, kind)
        child.inc(count)


__all__ = ["CONTENT_TYPE", "ModelMetrics", "ServingMetrics"]
