"""Limits: an SLO on a signal (``disk < 90%``, ``p99 latency < 200 ms``) that a
forecast watches, warning before it is crossed.

A limit names a selector (all the series it picks are watched, each on its own), a
side (``above``/``below`` the threshold is bad), a horizon (how far ahead to warn) and
a window (how much recent history the trend is fitted on). :meth:`Limits.check`
evaluates the series that got new points since the last check (the background
service calls it every tick) and records an event on each change of state:

- ``signal.breach_forecast`` (warning): the breach is forecast within the horizon;
  the payload has ``predicted_time``, ``earliest_time``, ``latest_time``,
  ``current_value``, ``limit``, ``probability`` (``confidence``), ``slope_per_hour``;
- ``signal.breach`` (critical): the latest value is past the limit;
- ``signal.breach_resolved`` (info): back within the limit after a breach;
- ``signal.breach_forecast_cleared`` (info): a forecast breach is no longer forecast.

The state of each (limit, series) and its event are written in one transaction, so a
change is reported once, whichever server does it.

Example::

    limits = Limits(store)
    limits.add('host_disk_used_percent{mountpoint="/"}', above=90, horizon="6h")
    limits.check()
"""

from __future__ import annotations

import builtins
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from opsloop.aiops.forecast import BreachForecast, forecast_breach
from opsloop.aiops.signals.model import (
    Selector,
    Series,
    format_duration_ms,
    parse_duration_ms,
    parse_selector,
)
from opsloop.aiops.signals.storage import Signals
from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.store.events import event_row, record_event_in
from opsloop.store.sql import upsert
from opsloop.store.tables import MAX_NAME_LENGTH
from opsloop.store.tables_signals import signal_chunks, signal_limit_states, signal_limits

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from opsloop.store import Store

L = signal_limits
ST = signal_limit_states
C = signal_chunks
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")

DAY_MS = 86_400_000
LATE_MS = 10_000

KIND_FORECAST = "signal.breach_forecast"
KIND_BREACH = "signal.breach"
KIND_RESOLVED = "signal.breach_resolved"
KIND_CLEARED = "signal.breach_forecast_cleared"


@dataclass(frozen=True)
class Limit:
    name: str
    selector: str
    op: str
    threshold: float
    horizon_ms: int
    window_ms: int
    confidence: float
    min_points: int
    description: str
    enabled: bool
    creation_time: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "selector": self.selector,
            "op": self.op,
            "threshold": self.threshold,
            "horizon_ms": self.horizon_ms,
            "horizon": format_duration_ms(self.horizon_ms),
            "window_ms": self.window_ms,
            "window": format_duration_ms(self.window_ms),
            "confidence": self.confidence,
            "min_points": self.min_points,
            "description": self.description,
            "enabled": self.enabled,
            "creation_time": self.creation_time,
        }


@dataclass(frozen=True)
class Evaluation:
    """One series checked against one limit."""

    limit: str
    series: Series
    forecast: BreachForecast
    previous: str | None  # the state before (None: first check)
    state: str
    event_id: int | None  # the event recorded for the change, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "series": self.series.to_dict(),
            "state": self.state,
            "previous": self.previous,
            "event_id": self.event_id,
            "forecast": self.forecast.to_dict(),
        }


def _limit_of(r: Any) -> Limit:
    return Limit(
        name=r.name,
        selector=r.selector,
        op=r.op,
        threshold=float(r.threshold),
        horizon_ms=int(r.horizon_ms),
        window_ms=int(r.window_ms),
        confidence=float(r.confidence),
        min_points=int(r.min_points),
        description=r.description,
        enabled=bool(r.enabled),
        creation_time=int(r.creation_time),
    )


def _subject(s: Series) -> str:
    text = s.selector()
    return text if len(text) <= MAX_NAME_LENGTH else f"{s.name}#{s.series_id}"[:MAX_NAME_LENGTH]


class Limits:
    """Limits of one store and their checks (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        signals: Signals | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.db = store.db
        self.clock = clock or now_ms
        self.signals = signals or Signals(store, clock=self.clock)

    # -- definitions ------------------------------------------------------------------

    def add(
        self,
        selector: str,
        *,
        above: float | None = None,
        below: float | None = None,
        horizon: str | int | float = "6h",
        window: str | int | float | None = None,
        confidence: float = 0.9,
        min_points: int = 10,
        name: str | None = None,
        description: str = "",
        replace: bool = False,
    ) -> Limit:
        """Define a limit: the series ``selector`` picks must stay below ``above`` (or
        above ``below``); warn up to ``horizon`` ahead (``6h``, ``30m``, or seconds),
        fitting the trend on the last ``window`` of points (default: half the horizon,
        at least 15 minutes, at most a day: a forecast hours ahead needs hours of
        history to get the slope right).

        Example::

            limits.add('latency_p99_ms{svc="api"}', above=200, horizon="30m", window="15m")
        """
        sel = parse_selector(selector)
        if (above is None) == (below is None):
            raise InvalidInput("give exactly one of above= or below= (the side that breaches)")
        op, threshold = ("above", above) if above is not None else ("below", below)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidInput(f"the limit's threshold must be a number, got {threshold!r}")
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise InvalidInput(f"the limit's threshold must be finite, got {threshold!r}")
        horizon_ms = parse_duration_ms(horizon, "the horizon")
        window_ms = (
            min(DAY_MS, max(15 * 60_000, horizon_ms // 2))
            if window is None
            else parse_duration_ms(window, "the window")
        )
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise InvalidInput(f"confidence must be a number in (0.5, 1), got {confidence!r}")
        if not 0.5 <= confidence < 1:
            raise InvalidInput(f"confidence must be between 0.5 and 1 (e.g. 0.9), got {confidence}")
        if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 3:
            raise InvalidInput(f"min_points must be an integer of at least 3, got {min_points!r}")
        name = name or str(sel)
        if len(name) > MAX_NAME_LENGTH or not name.strip():
            raise InvalidInput(
                f"a limit's name is 1 to {MAX_NAME_LENGTH} characters, got {len(name)}"
            )
        if not isinstance(description, str):
            raise InvalidInput("a limit's description must be text")
        row = {
            "name": name,
            "selector": str(sel),
            "op": op,
            "threshold": threshold,
            "horizon_ms": horizon_ms,
            "window_ms": window_ms,
            "confidence": float(confidence),
            "min_points": min_points,
            "description": description,
            "enabled": True,
            "creation_time": self.clock(),
            "checked_chunk": 0,
        }
        with self.db.write() as conn:
            exists = conn.execute(sa.select(L.c.name).where(L.c.name == name)).first()
            if exists is not None:
                if not replace:
                    raise Conflict(
                        f"a limit named {name!r} exists; remove it first or pass replace=True "
                        "(--replace)"
                    )
                conn.execute(ST.delete().where(ST.c.limit_name == name))
                conn.execute(L.delete().where(L.c.name == name))
            conn.execute(sa.insert(L).values(**row))
        return self.get(name)

    def get(self, name: str) -> Limit:
        with self.db.read() as conn:
            r = conn.execute(sa.select(L).where(L.c.name == name)).first()
        if r is None:
            raise NotFound(f"no limit named {name!r}; `opsloop signals limit ls` lists them")
        return _limit_of(r)

    def list(self) -> list[Limit]:
        with self.db.read() as conn:
            return [_limit_of(r) for r in conn.execute(sa.select(L).order_by(L.c.name))]

    def remove(self, name: str) -> None:
        with self.db.write() as conn:
            conn.execute(ST.delete().where(ST.c.limit_name == name))
            if conn.execute(L.delete().where(L.c.name == name)).rowcount == 0:
                raise NotFound(f"no limit named {name!r}")

    def states(self, name: str) -> builtins.list[dict[str, Any]]:
        """The last state of each series the limit watches."""
        self.get(name)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(ST).where(ST.c.limit_name == name).order_by(ST.c.series_id)
            ).all()
        return [
            {
                "series_id": r.series_id,
                "state": r.state,
                "since_time": r.since_time,
                "updated_time": r.updated_time,
                "detail": json.loads(r.detail),
            }
            for r in rows
        ]

    # -- evaluation -------------------------------------------------------------------

    def forecast(self, name: str) -> builtins.list[tuple[Series, BreachForecast]]:
        """Evaluate a limit now on every series it picks, recording nothing."""
        limit = self.get(name)
        return [(s, self._evaluate(limit, s)) for s in self.signals.series(limit.selector)]

    def _evaluate(self, limit: Limit, s: Series) -> BreachForecast:
        if s.last_time is None:
            return forecast_breach(
                np.empty(0, np.int64),
                np.empty(0),
                op=limit.op,
                threshold=limit.threshold,
                horizon_ms=limit.horizon_ms,
            )
        [data] = self.signals.read([s], s.last_time - limit.window_ms, s.last_time)
        return forecast_breach(
            data.timestamps,
            data.values,
            op=limit.op,
            threshold=limit.threshold,
            horizon_ms=limit.horizon_ms,
            confidence=limit.confidence,
            min_points=limit.min_points,
        )

    def check(
        self, *, now: int | None = None, everything: bool = False
    ) -> builtins.list[Evaluation]:
        """Evaluate each enabled limit on the series that got new points since its last
        check (``everything``: on all its series), record the changes of state and
        their events; returns what was evaluated.

        Example::

            for e in limits.check():
                print(e.limit, e.series.selector(), e.state)
        """
        at = self.clock() if now is None else now
        out: builtins.list[Evaluation] = []
        for limit in self.list():
            if limit.enabled:
                out.extend(self._check_limit(limit, at, everything))
        return out

    def _check_limit(self, limit: Limit, at: int, everything: bool) -> builtins.list[Evaluation]:
        sel: Selector = parse_selector(limit.selector)
        with self.db.read() as conn:
            checked = conn.execute(
                sa.select(L.c.checked_chunk).where(L.c.name == limit.name)
            ).scalar()
            if checked is None:
                return []  # removed meanwhile
            newest = int(conn.execute(sa.select(sa.func.max(C.c.chunk_id))).scalar() or 0)
            fresh: set[int] | None = None
            if not everything:
                # On PostgreSQL a chunk id can commit after a larger one: the chunks of
                # the last LATE_MS are looked at again (a check with no change of
                # state records nothing), so none slips behind the cursor.
                fresh = {
                    int(r[0])
                    for r in conn.execute(
                        sa.select(C.c.series_id)
                        .where(
                            ((C.c.chunk_id > checked) | (C.c.ingest_time >= at - LATE_MS))
                            & (C.c.chunk_id <= newest)
                            & C.c.merged.is_(False)
                        )
                        .distinct()
                    )
                }
                if not fresh:
                    return []
        series = [s for s in self.signals.series(sel) if fresh is None or s.series_id in fresh]
        results = [(s, self._evaluate(limit, s)) for s in series]
        out = []
        with self.db.write() as conn:
            # Another server may have checked meanwhile: only move the cursor forward.
            conn.execute(
                L.update()
                .where((L.c.name == limit.name) & (L.c.checked_chunk < newest))
                .values(checked_chunk=newest)
            )
            for s, f in results:
                out.append(self._transition(conn, limit, s, f, at))
        return out

    def _transition(
        self, conn: Connection, limit: Limit, s: Series, f: BreachForecast, at: int
    ) -> Evaluation:
        state = f.status if f.status in ("forecast", "breached") else "ok"
        prev_row = conn.execute(
            sa.select(ST.c.state, ST.c.since_time).where(
                (ST.c.limit_name == limit.name) & (ST.c.series_id == s.series_id)
            )
        ).first()
        previous = prev_row.state if prev_row is not None else None
        since = prev_row.since_time if prev_row is not None and previous == state else at
        detail = json.dumps(_json_safe(f.to_dict()))
        upsert(
            conn,
            ST,
            {
                "limit_name": limit.name,
                "series_id": s.series_id,
                "state": state,
                "since_time": since,
                "updated_time": at,
                "detail": detail,
            },
            ["limit_name", "series_id"],
            ["state", "since_time", "updated_time", "detail"],
        )
        event_id = None
        before = previous or "ok"
        if state != before:
            event_id = self._record(conn, limit, s, f, before, state, at)
        return Evaluation(limit.name, s, f, previous, state, event_id)

    def _record(
        self,
        conn: Connection,
        limit: Limit,
        s: Series,
        f: BreachForecast,
        before: str,
        state: str,
        at: int,
    ) -> int | None:
        subject = _subject(s)
        payload: dict[str, Any] = {
            "limit_name": limit.name,
            "series": {"name": s.name, "labels": s.labels, "series_id": s.series_id},
            "op": limit.op,
            "limit": limit.threshold,
            "current_value": f.current,
            "at": f.at,
            "horizon_ms": limit.horizon_ms,
            "previous_state": before,
        }
        if state == "forecast":
            kind, severity = KIND_FORECAST, "warning"
            payload.update(
                predicted_time=f.predicted_time,
                earliest_time=f.earliest_time,
                latest_time=f.latest_time,
                probability=f.probability,
                confidence=f.probability,
                confidence_level=limit.confidence,
                slope_per_hour=f.slope_per_hour,
                method=f.method,
                points=f.points,
            )
        elif state == "breached":
            kind, severity = KIND_BREACH, "critical"
        elif before == "breached":
            kind, severity = KIND_RESOLVED, "info"
        else:
            kind, severity = KIND_CLEARED, "info"
        if state != "ok":
            message = f.describe(subject)
        elif before == "breached" and f.current is not None:
            message = f"{subject} is back within its limit: {f.current:.6g}"
        else:
            message = f"{subject} is no longer forecast to go {limit.op} {limit.threshold:.6g}"
        row = event_row(
            kind,
            message,
            source=f"limit:{limit.name}"[:MAX_NAME_LENGTH],
            subject=subject,
            severity=severity,
            payload=payload,
            time_ms=at,
        )
        return record_event_in(conn, row)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
