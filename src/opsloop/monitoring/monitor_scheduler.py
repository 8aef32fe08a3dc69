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

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from opsloop.core.ids import now_ms
from opsloop.core.ticker import Ticker, interval_from_env
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


class MonitorScheduler(Ticker):
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

    name = "monitors"

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
        super().__init__(interval)
        self.store = store
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.clock = clock or now_ms
        self.service = MonitorService(store, self.clock)
        self.lease = Lease(store.db, LEASE, self.lease_ttl_ms)
        self.holder = self.lease.holder

    @classmethod
    def from_env(cls, store: Store) -> MonitorScheduler:
        """A scheduler ticking every ``OPSLOOP_MONITOR_INTERVAL`` seconds (5)."""
        interval = interval_from_env(ENV_INTERVAL, 5.0)
        return cls(store, interval=interval, lease_ttl=max(60.0, interval * 5))

    def stopped(self) -> None:
        self.lease.release()  # another server's scheduler takes over at once

    def tick(self, now: int | None = None) -> list[MonitorRun] | None:
        """Run the due monitors if this scheduler holds the lease (None if it does not)."""
        at = self.clock() if now is None else int(now)
        if not self.lease.take(at):
            return None
        return self.service.run_due(at)
