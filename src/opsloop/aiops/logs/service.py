"""The log windows' closer: what ``opsloop server`` runs for log ingestion.

Windows close as lines arrive (``LogIngestor.ingest``); this closes them as time passes
when no lines come, so a source that falls silent is judged (a rate drop) without
another batch. Every worker of every server may run one: closing a window happens
under its source's row lock and moves ``closed_until``, so each window is judged once
whoever gets there first; no lease is needed.

Example::

    closer = LogWindowCloser(store, interval=10.0)
    closer.start(); ...; closer.stop()
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from opsloop.aiops.logs.ingest import ingestor_for

if TYPE_CHECKING:
    from opsloop.store import Store

log = logging.getLogger("opsloop.logs")

ENV_ENABLED = "OPSLOOP_LOG_WINDOWS"
ENV_INTERVAL = "OPSLOOP_LOG_WINDOWS_INTERVAL"


class LogWindowCloser:
    """Close every source's due windows every ``interval`` seconds, in a thread."""

    def __init__(self, store: Store, interval: float = 10.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, store: Store) -> LogWindowCloser | None:
        """One closing every ``OPSLOOP_LOG_WINDOWS_INTERVAL`` seconds (10); None when
        ``OPSLOOP_LOG_WINDOWS=0``."""
        if os.environ.get(ENV_ENABLED, "1").strip().lower() in ("0", "false", "no", "off"):
            return None
        raw = os.environ.get(ENV_INTERVAL, "").strip()
        try:
            interval = float(raw) if raw else 10.0
        except ValueError:
            log.warning("%s=%r is not a number of seconds; using 10", ENV_INTERVAL, raw)
            interval = 10.0
        return cls(store, max(0.05, interval))

    def tick(self) -> int:
        """Close what is due now; the number of windows closed."""
        return ingestor_for(self.store).close_windows()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="opsloop-log-windows", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("closing log windows failed; trying again in %.1f s", self.interval)
