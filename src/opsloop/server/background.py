"""What ``opsloop server`` runs beside its HTTP API, for as long as it serves.

Each entry of :data:`SERVICES` is a function that, given the store, returns an object
with ``start()`` and ``stop()`` — or None when it is turned off (by the environment,
or because there is nothing for it to do). They start in order when the app starts
and stop in reverse order when it stops; one that fails to start is logged and the
rest go on. With several workers each runs its own, so a service that must act once
per store takes a lease in the database (as the pipeline scheduler does).

A part adds its service with one entry in :data:`SERVICES`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from fastapi import FastAPI

from opsloop.store import Store

log = logging.getLogger("opsloop.server")


class Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def _pipeline_scheduler(store: Store) -> Service | None:
    """Cron schedules and dataset triggers of pipelines (unless ``OPSLOOP_SCHEDULER=0``)."""
    from opsloop.pipelines.scheduling.scheduler import Scheduler, enabled_by_env

    return Scheduler.from_env(store) if enabled_by_env() else None


def _serving_supervisor(store: Store) -> Service | None:
    """Inference servers for deployments with a ``port`` setting (unless
    ``OPSLOOP_SERVING_SUPERVISOR=0``)."""
    from opsloop.serving.supervisor import from_env

    return from_env(store)


def _monitor_scheduler(store: Store) -> Service | None:
    """Monitors over the prediction log, on time (unless ``OPSLOOP_MONITORS=0``)."""
    from opsloop.monitoring.monitor_scheduler import MonitorScheduler, enabled_by_env

    return MonitorScheduler.from_env(store) if enabled_by_env() else None


def _signals_service(store: Store) -> Service | None:
    """Scrapes, host signals and limit forecasts (unless ``OPSLOOP_SIGNALS=0``)."""
    from opsloop.aiops.signals.service import service_from_env

    return service_from_env(store)


def _log_windows(store: Store) -> Service | None:
    """Log windows closed as time passes (unless ``OPSLOOP_LOG_WINDOWS=0``)."""
    from opsloop.aiops.logs.service import LogWindowCloser

    return LogWindowCloser.from_env(store)


# name -> factory; started in this order. A part adds its own line.
SERVICES: dict[str, Callable[[Store], Service | None]] = {
    "scheduler": _pipeline_scheduler,
    "monitors": _monitor_scheduler,
    "serving_supervisor": _serving_supervisor,
    "signals": _signals_service,
    "log_windows": _log_windows,
}


def lifespan_for(store: Store) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: start every service, serve, stop them (``app.state.<name>``
    holds each running one, or None)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running: list[tuple[str, Service]] = []
        for name, factory in SERVICES.items():
            service: Service | None = None
            try:
                service = factory(store)
                if service is not None:
                    service.start()
                    running.append((name, service))
            except Exception:
                log.exception("the server's %s did not start; serving without it", name)
                service = None
            setattr(app.state, name, service)
        try:
            yield
        finally:
            for name, service in reversed(running):
                try:
                    service.stop()
                except Exception:
                    log.exception("the server's %s did not stop cleanly", name)

    return lifespan
