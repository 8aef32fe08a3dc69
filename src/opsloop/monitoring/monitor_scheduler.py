"""The server's monitor scheduler: runs each enabled monitor at its slots.

One acts per store: the holder of the ``monitors`` lease, a row of the pipeline
scheduler's lease table taken by the same rule (renewed every tick, taken over only
once it expired, by a conditional update that one writer wins). A slot is stored once
even if two schedulers ever ran it: the run moves the monitor's next slot with a
conditional update in the transaction that stores it
(``opsloop.monitoring.monitors.MonitorService.run_due``).

``opsloop server`` starts one (``OPSLOOP_MONITORS=0`` turns it off; it ticks every
``OPSLOOP_MONITOR_INTERVAL`` seconds, 5 by default).

Example::

    with MonitorScheduler(store, interval=1.0).running():
        ...     # monitors run on time while this block runs
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from opsloop.core.ids import now_ms
from opsloop.monitoring.monitors import MonitorRun, MonitorService
from opsloop.store.leases import Lease

if TYPE_CHECKING:
    from opsloop.store import Store

log = logging.getLogger("opsloop.monitoring.scheduler")

LEASE = "monitors"
ENV_ENABLED = "OPSLOOP_MONITORS"
ENV_INTERVAL = "OPSLOOP_MONITOR_INTERVAL"


def enabled_by_env() -> bool:
    """Whether the server runs monitors: ``OPSLOOP_MONITORS=0`` turns it off."""
    return os.environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "no", "off")


class MonitorScheduler:
    """Runs due monitors every ``interval`` seconds in a background thread; one acts
    per store, the holder of the ``monitors`` lease (the pipeline scheduler's lease
    table and rule: renewed each tick, taken over only once expired, by a conditional
    update that one writer wins). A slot is stored once even if two ever ran it: the
    run moves the monitor's next slot with a conditional update in the transaction
    that stores it.

    Example::

        with MonitorScheduler(store, interval=1.0).running():
            ...     # monitors run on time while this block runs
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 5.0,
        lease_ttl: float = 60.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if interval <= 0 or lease_ttl <= interval:
            raise ValueError("need interval > 0 and lease_ttl > interval")
        self.store = store
        self.interval = interval
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.clock = clock or now_ms
        self.service = MonitorService(store, self.clock)
        self.lease = Lease(store.db, LEASE, self.lease_ttl_ms)
        self.holder = self.lease.holder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, store: Store) -> MonitorScheduler:
        """A scheduler ticking every ``OPSLOOP_MONITOR_INTERVAL`` seconds (5)."""
        raw = os.environ.get(ENV_INTERVAL, "").strip()
        try:
            interval = float(raw) if raw else 5.0
        except ValueError:
            log.warning("%s=%r is not a number of seconds; using 5", ENV_INTERVAL, raw)
            interval = 5.0
        interval = max(0.05, interval)
        return cls(store, interval=interval, lease_ttl=max(60.0, interval * 5))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="opsloop-monitors", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.lease.release()
        except Exception:
            log.exception("could not release the monitors lease")

    @contextlib.contextmanager
    def running(self) -> Iterator[MonitorScheduler]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("monitor tick failed; trying again in %.1f s", self.interval)
            self._stop.wait(self.interval)

    def tick(self, now: int | None = None) -> list[MonitorRun] | None:
        """Run the due monitors if this scheduler holds the lease (None if it does not)."""
        at = self.clock() if now is None else int(now)
        if not self.lease.take(at):
            return None
        return self.service.run_due(at)
