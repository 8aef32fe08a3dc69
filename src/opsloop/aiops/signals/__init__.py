"""Signals: operational time series (name + labels), pushed, scraped or from the host.

- :class:`Signals` stores and queries them (``opsloop.aiops.signals.storage``);
- :class:`ScrapeTargets` and :func:`scrape_once` read Prometheus ``/metrics``;
- :class:`HostCollector` reads CPU, memory, disk and network through psutil;
- :class:`SignalDetectors` feeds every new point to its series' streaming anomaly
  detector and raises ``signal.anomaly`` events;
- :class:`Limits` watches a limit (an SLO) with a forecast of the breach;
- :class:`SignalsService` runs scrapes, host collection and limit checks in
  ``opsloop server``.

Example::

    from opsloop.aiops.signals import Signals, Limits
    sig = Signals(store)
    sig.push([{"name": "disk_used_percent", "labels": {"host": "a"}, "value": 71.5}])
    Limits(store).add('disk_used_percent{host="a"}', above=90, horizon="6h")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsloop.aiops.signals.anomalies import Anomaly, SignalDetectors
    from opsloop.aiops.signals.host import HostCollector
    from opsloop.aiops.signals.limits import Evaluation, Limit, Limits
    from opsloop.aiops.signals.model import Selector, Series, SeriesData, parse_selector
    from opsloop.aiops.signals.scrape import ScrapeResult, ScrapeTarget, ScrapeTargets, scrape_once
    from opsloop.aiops.signals.service import SignalsService
    from opsloop.aiops.signals.storage import IngestReport, NewPoints, Signals, on_any_ingest

_WHERE = {
    "Anomaly": "anomalies",
    "SignalDetectors": "anomalies",
    "HostCollector": "host",
    "Evaluation": "limits",
    "Limit": "limits",
    "Limits": "limits",
    "Selector": "model",
    "Series": "model",
    "SeriesData": "model",
    "parse_selector": "model",
    "ScrapeResult": "scrape",
    "ScrapeTarget": "scrape",
    "ScrapeTargets": "scrape",
    "scrape_once": "scrape",
    "SignalsService": "service",
    "IngestReport": "storage",
    "NewPoints": "storage",
    "Signals": "storage",
    "on_any_ingest": "storage",
}

__all__ = [
    "Anomaly",
    "Evaluation",
    "HostCollector",
    "IngestReport",
    "Limit",
    "Limits",
    "NewPoints",
    "ScrapeResult",
    "ScrapeTarget",
    "ScrapeTargets",
    "Selector",
    "Series",
    "SeriesData",
    "SignalDetectors",
    "Signals",
    "SignalsService",
    "on_any_ingest",
    "parse_selector",
    "scrape_once",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the CLI and the server import this package cheaply.
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'opsloop.aiops.signals' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"opsloop.aiops.signals.{where}"), name)
