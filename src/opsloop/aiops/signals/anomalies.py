"""Streaming anomaly detection on every stored signal.

:class:`SignalDetectors` follows the signal store (``Signals.follow``: whatever process
pushed, scraped or collected the points), feeds each new point of each series to that
series' own detector (``opsloop.aiops.detect``, the default ensemble: no settings per
series), keeps every detector's state in the database (so a restart, or another server
taking the lease, goes on where it stopped), and raises a ``signal.anomaly`` event for
a point whose score reaches the threshold. The detector itself stays quiet for a while
after an alert, so an incident raises one event, not one per point.

The signals service of ``opsloop server`` calls :meth:`SignalDetectors.process` on
every tick; ``OPSLOOP_SIGNALS_DETECT=0`` turns it off.

Example::

    det = SignalDetectors(store)
    found = det.process()              # -> [Anomaly(series=..., time_ms=..., score=0.93), ...]
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput
from opsloop.store.events import event_row, record_event_in
from opsloop.store.tables_signals import signal_detector_states as S
from opsloop.store.tables_signals import signal_followers as F

if TYPE_CHECKING:
    from opsloop.aiops.detect import Detector
    from opsloop.aiops.signals.model import Series
    from opsloop.aiops.signals.storage import NewPoints, Signals
    from opsloop.store import Store

log = logging.getLogger("opsloop.aiops")

FOLLOWER = "anomaly-detectors"
# The default ensemble's scores: 0.5 starts its quiet period (its "alert", tuned for
# NAB's scoring, which forgives a few false positives); an event needs more so that a
# borderline point does not page anyone (on Gaussian noise: ~5 points per 10,000
# score >= 0.5, none >= 0.7).
DEFAULT_THRESHOLD = 0.7
MAX_CHUNKS_PER_PASS = 2000


@dataclass(frozen=True)
class Anomaly:
    """One point that scored at or above the threshold."""

    series: Series
    time_ms: int
    value: float
    score: float
    event_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series.selector(),
            "name": self.series.name,
            "labels": self.series.labels,
            "time": self.time_ms,
            "value": self.value,
            "score": self.score,
            "event_id": self.event_id,
        }


def enabled_by_env() -> bool:
    return os.environ.get("OPSLOOP_SIGNALS_DETECT", "1").strip().lower() not in (
        "0",
        "off",
        "false",
        "no",
    )


def _dump(det: Detector) -> bytes:
    state = det.__getstate__()
    buf = io.BytesIO()
    np.save(buf, np.asarray(state["params"], dtype=np.float64), allow_pickle=False)
    np.save(buf, np.asarray(state["state"], dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def _load(blob: bytes) -> Detector:
    from opsloop.aiops.detect import Detector

    buf = io.BytesIO(blob)
    params = np.load(buf, allow_pickle=False)
    state = np.load(buf, allow_pickle=False)
    det = Detector.__new__(Detector)
    det.__setstate__({"params": params, "state": state})
    return det


class SignalDetectors:
    """One detector per series, fed from the signal store's new chunks (see the module
    docstring). Not thread-safe: one caller (the lease holder's tick) at a time."""

    def __init__(
        self,
        store: Store,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        factory: Callable[[], Detector] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidInput(f"an anomaly threshold is a number in (0, 1], got {threshold!r}")
        if not math.isfinite(threshold) or not 0.0 < threshold <= 1.0:
            raise InvalidInput(f"an anomaly threshold is a number in (0, 1], got {threshold!r}")
        from opsloop.aiops.signals.storage import Signals

        self.store = store
        self.db = store.db
        self.signals: Signals = Signals(store)
        self.threshold = float(threshold)
        self.clock = clock or now_ms
        if factory is None:
            from opsloop.aiops.detect import Detector

            # the quiet period after an alert starts at this threshold too: a point that
            # scored between the ensemble's own alert level and this one raised no event,
            # so it must not silence the next ~200 points either
            level = self.threshold

            def factory() -> Detector:
                return Detector(alert=level)

        self.factory = factory

    def cursor(self) -> int:
        with self.db.read() as conn:
            got = conn.execute(sa.select(F.c.cursor).where(F.c.name == FOLLOWER)).scalar()
        return int(got) if got is not None else 0

    def process(self, *, max_chunks: int = MAX_CHUNKS_PER_PASS) -> list[Anomaly]:
        """Feed every point ingested since the last call to its series' detector; store
        the states and the events of the anomalies found (in one transaction with the
        new cursor, so a crash repeats a pass rather than losing one)."""
        after = self.cursor()
        found: list[Anomaly] = []
        remaining = max_chunks
        while remaining > 0:
            batch, cur = self.signals.follow(after, limit=min(500, remaining))
            if not batch:
                break
            found.extend(self._feed(batch, cur))
            remaining -= len(batch)
            after = cur
        return found

    def _feed(self, batch: Sequence[NewPoints], cursor: int) -> list[Anomaly]:
        sids = sorted({p.series.series_id for p in batch})
        with self.db.read() as conn:
            rows = conn.execute(sa.select(S).where(S.c.series_id.in_(sids))).all()
        states: dict[int, Any] = {r.series_id: r for r in rows}
        detectors: dict[int, Detector] = {}
        last_alert: dict[int, int | None] = {}
        for sid in sids:
            r = states.get(sid)
            detectors[sid] = _load(r.state) if r is not None else self.factory()
            last_alert[sid] = r.last_alert_time if r is not None else None
        last: dict[int, tuple[int, float]] = {}
        hits: list[tuple[Series, int, float, float]] = []
        for p in batch:
            if len(p.timestamps) == 0:
                continue
            sid = p.series.series_id
            order = np.argsort(p.timestamps, kind="stable")
            ts = np.asarray(p.timestamps, dtype=np.int64)[order]
            vs = np.asarray(p.values, dtype=np.float64)[order]
            scores = detectors[sid].score_series(ts / 1000.0, vs)
            last[sid] = (int(ts[-1]), float(scores[-1]))
            for i in np.flatnonzero(scores >= self.threshold):
                hits.append((p.series, int(ts[i]), float(vs[i]), float(scores[i])))
        now = self.clock()
        found: list[Anomaly] = []
        with self.db.write() as conn:
            for series, t, v, score in hits:
                row = event_row(
                    "signal.anomaly",
                    f"{series.selector()}: anomalous value {v:.6g} "
                    f"(score {score:.2f}) at {_iso(t)}",
                    source="detector:default",
                    subject=series.selector()[:250],
                    severity="critical" if score >= 0.9 else "warning",
                    payload={
                        "series": series.selector(),
                        "name": series.name,
                        "labels": series.labels,
                        "time_ms": t,
                        "value": v,
                        "score": score,
                        "threshold": self.threshold,
                    },
                    time_ms=now,
                )
                event_id = record_event_in(conn, row)
                last_alert[series.series_id] = t
                found.append(Anomaly(series, t, v, score, event_id))
            for sid, det in detectors.items():
                t_last, s_last = last.get(sid, (None, None))
                values = {
                    "state": _dump(det),
                    "points": det.points,
                    "last_time": t_last,
                    "last_score": s_last,
                    "last_alert_time": last_alert[sid],
                    "updated_time": now,
                }
                if sid in states:
                    conn.execute(sa.update(S).where(S.c.series_id == sid).values(**values))
                else:
                    conn.execute(sa.insert(S).values(series_id=sid, **values))
            moved = conn.execute(
                sa.update(F).where(F.c.name == FOLLOWER).values(cursor=cursor, updated_time=now)
            ).rowcount
            if moved == 0:
                conn.execute(sa.insert(F).values(name=FOLLOWER, cursor=cursor, updated_time=now))
        return found

    def scores(self) -> list[dict[str, Any]]:
        """Each followed series' last score and last alert, for a status page."""
        from opsloop.store.tables_signals import signal_series as SR

        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(
                    SR.c.name,
                    SR.c.labels,
                    S.c.points,
                    S.c.last_time,
                    S.c.last_score,
                    S.c.last_alert_time,
                ).join(SR, SR.c.series_id == S.c.series_id)
            ).all()
        import json

        return [
            {
                "name": r.name,
                "labels": json.loads(r.labels),
                "points": r.points,
                "last_time": r.last_time,
                "last_score": r.last_score,
                "last_alert_time": r.last_alert_time,
            }
            for r in rows
        ]


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
