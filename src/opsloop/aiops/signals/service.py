"""The signals service ``opsloop server`` runs: scrape, collect the host, check limits.

Every ``interval`` seconds a tick, when this process holds the ``signals`` lease
(the pipeline scheduler's lease table, one row per singleton job; taken over only
once expired, so with several servers or workers on one database one acts):

1. scrapes the targets that are due (stored ones, ``OPSLOOP_SIGNALS_SCRAPE``'s, and
   the ``/metrics`` of the deployments this server serves, job ``opsloop-serving``),
   several at once, each with its own timeout, so a slow or dead one holds up none;
2. collects the host's signals when due (every ``OPSLOOP_SIGNALS_HOST``, 15 s);
3. checks the limits on the series that got new points (pushed ones too), and feeds
   every new point to its series' anomaly detector (``anomalies.SignalDetectors``:
   ``signal.anomaly`` events; ``OPSLOOP_SIGNALS_DETECT=0`` turns it off);
4. now and then merges settled chunks (:meth:`Signals.compact`) and, with a
   retention (``OPSLOOP_SIGNALS_RETENTION=30d``; none by default), drops older points.

Environment: ``OPSLOOP_SIGNALS=0`` turns the service off; ``OPSLOOP_SIGNALS_HOST``
is the host interval (``0``/``off``: no host signals); ``OPSLOOP_SIGNALS_SCRAPE`` lists
extra targets (``[job=]URL,...``) scraped every ``OPSLOOP_SIGNALS_SCRAPE_INTERVAL``
(15 s); ``OPSLOOP_SIGNALS_SCRAPE_DEPLOYMENTS=0`` leaves the served deployments
out; ``OPSLOOP_SIGNALS_INTERVAL`` is the tick (1 s).

Example::

    with SignalsService(store, interval=0.2).running():
        ...   # targets are scraped, limits checked, while this block runs
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from opsloop.aiops.signals.anomalies import Anomaly, SignalDetectors
from opsloop.aiops.signals.anomalies import enabled_by_env as detection_enabled
from opsloop.aiops.signals.host import HostCollector
from opsloop.aiops.signals.limits import Evaluation, Limits
from opsloop.aiops.signals.model import parse_duration_ms
from opsloop.aiops.signals.scrape import (
    ScrapeResult,
    ScrapeTarget,
    ScrapeTargets,
    deployment_targets,
    scrape_once,
    targets_from_env,
)
from opsloop.aiops.signals.storage import Signals
from opsloop.core.ids import now_ms
from opsloop.core.ticker import Ticker
from opsloop.errors import InvalidInput
from opsloop.store import Store
from opsloop.store.leases import Lease

log = logging.getLogger("opsloop.signals")

LEASE = "signals"
ENV_ENABLED = "OPSLOOP_SIGNALS"
ENV_HOST = "OPSLOOP_SIGNALS_HOST"
ENV_SCRAPE = "OPSLOOP_SIGNALS_SCRAPE"
ENV_SCRAPE_INTERVAL = "OPSLOOP_SIGNALS_SCRAPE_INTERVAL"
ENV_INTERVAL = "OPSLOOP_SIGNALS_INTERVAL"
ENV_DEPLOYMENTS = "OPSLOOP_SIGNALS_SCRAPE_DEPLOYMENTS"
ENV_RETENTION = "OPSLOOP_SIGNALS_RETENTION"
DEPLOYMENTS_EVERY_MS = 15_000
COMPACT_EVERY_MS = 60_000


def enabled_by_env() -> bool:
    """``OPSLOOP_SIGNALS=0`` (or false/no/off) turns the service off."""
    return os.environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "no", "off")


def _off(value: str) -> bool:
    return value.strip().lower() in ("0", "false", "no", "off", "")


@dataclass
class TickReport:
    """What one tick did (for tests and logs)."""

    leader: bool
    scrapes: list[ScrapeResult] = field(default_factory=list)
    host_points: int = 0
    evaluations: list[Evaluation] = field(default_factory=list)
    compacted: int = 0
    dropped: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)


class SignalsService(Ticker):
    """Scrapes, host collection and limit checks in a background thread (see the module
    docstring). ``clock`` gives now in ms."""

    name = "signals"

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 1.0,
        host_every_ms: int | None = 15_000,
        extra_targets: list[ScrapeTarget] | None = None,
        lease_ttl: float = 30.0,
        clock: Callable[[], int] | None = None,
        max_parallel: int = 8,
        scrape_deployments: bool = False,
        deployments_every: str | None = None,
        retention_ms: int | None = None,
        detect: bool = True,
    ) -> None:
        if interval <= 0 or lease_ttl <= interval:
            raise ValueError("need interval > 0 and lease_ttl > interval")
        super().__init__(interval)
        self.store = store
        self.db = store.db
        self.clock = clock or now_ms
        self.signals = Signals(store, clock=self.clock)
        self.limits = Limits(store, signals=self.signals, clock=self.clock)
        self.targets = ScrapeTargets(store, clock=self.clock)
        self.detectors = SignalDetectors(store, clock=self.clock) if detect else None
        self.extra_targets = list(extra_targets or [])
        self.scrape_deployments = scrape_deployments
        self.retention_ms = retention_ms
        self.deployments_every = deployments_every
        self._deployment_targets: list[ScrapeTarget] = []
        self._deployments_seen: int | None = None
        self.host_every_ms = host_every_ms
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.lease = Lease(store.db, LEASE, self.lease_ttl_ms)
        self.holder = self.lease.holder
        self._host: HostCollector | None = None
        self._last_host: int | None = None
        self._last_extra: dict[str, int] = {}
        self._last_compact = 0
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="opsloop-scrape")
        self._http = httpx.Client(follow_redirects=True)

    @classmethod
    def from_env(cls, store: Store) -> SignalsService:
        """A service configured by the ``OPSLOOP_SIGNALS_*`` variables."""

        def duration(var: str, default: str) -> int | None:
            raw = os.environ.get(var, default)
            if _off(raw):
                return None
            try:
                return parse_duration_ms(raw, var)
            except InvalidInput:
                log.warning("%s=%r is not a duration (15s, 1m); using %s", var, raw, default)
                return None if _off(default) else parse_duration_ms(default, var)

        tick = duration(ENV_INTERVAL, "1s") or 1000
        extra = targets_from_env(
            os.environ.get(ENV_SCRAPE), os.environ.get(ENV_SCRAPE_INTERVAL) or None
        )
        interval = max(0.05, tick / 1000)
        return cls(
            store,
            interval=interval,
            host_every_ms=duration(ENV_HOST, "15s"),
            extra_targets=extra,
            lease_ttl=max(30.0, interval * 5),
            scrape_deployments=not _off(os.environ.get(ENV_DEPLOYMENTS, "1")),
            deployments_every=os.environ.get(ENV_SCRAPE_INTERVAL) or None,
            retention_ms=duration(ENV_RETENTION, "off"),
            detect=detection_enabled(),
        )

    def stopped(self) -> None:
        """Close the scrape pool and client, give up the lease."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        self.release()

    # -- one tick --------------------------------------------------------------------

    def tick(self, now: int | None = None) -> TickReport:
        at = self.clock() if now is None else now
        if not self.lease.take(at):
            return TickReport(leader=False)
        report = TickReport(leader=True)
        report.scrapes = self._scrape_due(at)
        if self.host_every_ms is not None and (
            self._last_host is None or at - self._last_host >= self.host_every_ms
        ):
            if self._host is None:
                self._host = HostCollector()
            rows = self._host.collect(at)
            self.signals.ingest(rows)
            report.host_points = len(rows)
            self._last_host = at
        report.evaluations = self.limits.check(now=at)
        if self.detectors is not None:
            report.anomalies = self.detectors.process()
        if at - self._last_compact >= COMPACT_EVERY_MS:
            report.compacted = self.signals.compact(now=at)
            if self.retention_ms is not None:
                report.dropped = self.signals.delete_before(at - self.retention_ms)
            self._last_compact = at
        return report

    def _scrape_due(self, at: int) -> list[ScrapeResult]:
        due: list[tuple[ScrapeTarget, bool]] = []
        for t in self.targets.list():
            if t.enabled and (
                t.last_scrape_time is None or at - t.last_scrape_time >= t.interval_ms
            ):
                due.append((t, True))
        if self.scrape_deployments and (
            self._deployments_seen is None or at - self._deployments_seen >= DEPLOYMENTS_EVERY_MS
        ):
            try:
                self._deployment_targets = deployment_targets(self.store, self.deployments_every)
            except Exception:
                log.exception("could not read the deployments to scrape")
            self._deployments_seen = at
        for t in [*self.extra_targets, *self._deployment_targets]:
            last = self._last_extra.get(t.name)
            if last is None or at - last >= t.interval_ms:
                due.append((t, False))
        if not due:
            return []
        futures = [
            (stored, self._pool.submit(scrape_once, t, client=self._http, at=at))
            for t, stored in due
        ]
        results = []
        for stored, fut in futures:
            result = fut.result()
            try:
                self.signals.ingest(result.rows)
                if stored:
                    self.targets.record(result)
                else:
                    self._last_extra[result.target.name] = at
            except Exception:
                log.exception("could not store the scrape of %s", result.target.url)
            if result.error:
                log.info("scrape of %s failed: %s", result.target.url, result.error)
            results.append(result)
        return results

    def release(self) -> None:
        self.lease.release()


def service_from_env(store: Store) -> SignalsService | None:
    """The server's signals service, or None when ``OPSLOOP_SIGNALS=0``."""
    return SignalsService.from_env(store) if enabled_by_env() else None
