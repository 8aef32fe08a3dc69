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
from typing import TYPE_CHECKING

from opsloop.aiops.logs.ingest import ingestor_for
from opsloop.core.ticker import Ticker, interval_from_env

if TYPE_CHECKING:
    from opsloop.store import Store

log = logging.getLogger("opsloop.logs")

ENV_ENABLED = "OPSLOOP_LOG_WINDOWS"
ENV_INTERVAL = "OPSLOOP_LOG_WINDOWS_INTERVAL"


class LogWindowCloser(Ticker):
    """Close every source's due windows every ``interval`` seconds, in a thread."""

    name = "log-windows"

    def __init__(self, store: Store, interval: float = 10.0) -> None:
        super().__init__(interval)
        self.store = store

    @classmethod
    def from_env(cls, store: Store) -> LogWindowCloser | None:
        """One closing every ``OPSLOOP_LOG_WINDOWS_INTERVAL`` seconds (10); None when
        ``OPSLOOP_LOG_WINDOWS=0``."""
        if os.environ.get(ENV_ENABLED, "1").strip().lower() in ("0", "false", "no", "off"):
            return None
        return cls(store, interval_from_env(ENV_INTERVAL, 10.0))

    def tick(self) -> int:
        """Close what is due now; the number of windows closed."""
        return ingestor_for(self.store).close_windows()
