"""Signals in the metadata database: ingest, query, follow, compaction.

Points are stored as packed chunks: a batch becomes one ``signal_chunks`` row per
series holding its timestamps (int64 ms) and values (float64) as little-endian
arrays, as tracking stores metric series (``opsloop.tracking.series``). Chunks are
append-only; once settled (``settle_ms`` after ingest) the background service merges
a series' small chunks into chunks of up to :data:`CHUNK_POINTS` points with
delta-encoded, zlib-compressed timestamps and values (``encoding="zd"``): a scrape
every 15 s costs ~2 bytes a point for the timestamps once merged, instead of a row.

Defined behaviour for imperfect data:

- out-of-order points are stored as they come and read back sorted by time;
- a timestamp given twice for one series keeps the value written last (later in the
  same batch, or in a later batch);
- NaN is stored and read back as NaN (a gap the producer marked); ±inf as they are;
- a point without a timestamp (pushed) takes the time it was received.

Each ingest calls the hooks of its ``Signals`` object (:meth:`Signals.on_ingest`) and
those of the process (:func:`on_any_ingest`) with the new points of each series,
after the commit — where a streaming detector plugs in. A reader in another
process follows new points with :meth:`Signals.follow` and a cursor (the chunk id).

Example::

    sig = Signals(store)
    sig.push([{"name": "latency_p99_ms", "labels": {"svc": "api"}, "timestamp": t, "value": 180.0}])
    [data] = sig.query('latency_p99_ms{svc="api"}', start=t - 3_600_000)
    data.timestamps, data.values
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from opsloop.aiops.signals.model import (
    Selector,
    Series,
    SeriesData,
    check_labels,
    check_name,
    check_time,
    check_value,
    labels_key,
    parse_selector,
)
from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput
from opsloop.store.sql import upsert
from opsloop.store.tables_signals import signal_chunks, signal_series

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    from sqlalchemy.engine import Connection

    from opsloop.store import Store

log = logging.getLogger("opsloop.signals")

C = signal_chunks
SR = signal_series
CHUNK_POINTS = 4096
MAX_BATCH = 100_000
MAX_SERIES_PER_QUERY = 10_000
SETTLE_MS = 300_000
_IN = 500  # ids per IN (...) list
_ONE_T = struct.Struct("<q")
_ONE_V = struct.Struct("<d")

# A point ready for the store: name, checked labels, time (ms), value.
Row = tuple[str, dict[str, str], int, float]


@dataclass(frozen=True)
class IngestReport:
    """What one ingest stored."""

    points: int
    series: int
    new_series: int


@dataclass(frozen=True)
class NewPoints:
    """The points of one series that one ingest (or one followed chunk) brought."""

    series: Series
    timestamps: np.ndarray
    values: np.ndarray
    chunk_id: int | None = None


IngestHook = Callable[[Sequence[NewPoints]], None]

# Hooks for every ingest in this process, whichever Signals object stores (the REST
# endpoint's, the scraper's): where a streaming detector sees each new point.
_EVERY: list[IngestHook] = []
_EVERY_LOCK = threading.Lock()


def on_any_ingest(hook: IngestHook) -> Callable[[], None]:
    """Call ``hook(new_points)`` after every ingest in this process commits (pushed,
    scraped or from the host); returns a function that removes it.

    Example::

        remove = on_any_ingest(lambda batch: [detector.feed(p) for p in batch])
    """
    with _EVERY_LOCK:
        _EVERY.append(hook)

    def remove() -> None:
        with _EVERY_LOCK:
            if hook in _EVERY:
                _EVERY.remove(hook)

    return remove


_FIELDS = {"name", "labels", "timestamp", "value"}


def check_points(points: object, *, now: int | None = None) -> list[Row]:
    """Checked rows for pushed points (mappings of name, labels, timestamp, value).

    All or nothing: the first bad point raises :class:`InvalidInput` naming its index
    and field (``points[3].value: ...``). A point without a timestamp gets ``now``.
    """
    if not isinstance(points, list | tuple):
        raise InvalidInput(
            "points must be a list of {name, labels, timestamp, value} objects, "
            f"got {type(points).__name__}"
        )
    if len(points) > MAX_BATCH:
        raise InvalidInput(
            f"a batch holds at most {MAX_BATCH} points, got {len(points)}: send several"
        )
    at = now_ms() if now is None else now
    rows: list[Row] = []
    label_cache: dict[Any, dict[str, str]] = {}
    for i, p in enumerate(points):
        field = "point"
        try:
            if not isinstance(p, Mapping):
                raise InvalidInput(f"must be an object with name and value, got {p!r}")
            extra = set(p) - _FIELDS
            if extra:
                field = sorted(map(str, extra))[0]
                raise InvalidInput("unknown field; a point has name, labels, timestamp, value")
            field = "name"
            if "name" not in p:
                raise InvalidInput("missing")
            name = check_name(p["name"], "the name")
            field = "labels"
            raw = p.get("labels")
            # Many points of a batch share one label set: check it once.
            try:
                key: Any = tuple(raw.items()) if isinstance(raw, Mapping) else raw
                hash(key)
            except TypeError:
                key = None  # unhashable: check_labels says what is wrong
            labels = label_cache.get(key) if key is not None else None
            if labels is None:
                labels = check_labels(raw)
                if key is not None:
                    label_cache[key] = labels
            field = "timestamp"
            ts = at if p.get("timestamp") is None else check_time(p["timestamp"], "the timestamp")
            field = "value"
            if "value" not in p:
                raise InvalidInput("missing")
            value = check_value(p["value"], "the value")
        except InvalidInput as exc:
            raise InvalidInput(f"points[{i}].{field}: {exc.message}") from None
        rows.append((name, labels, ts, value))
    return rows


def _pack_raw(ts: np.ndarray, vals: np.ndarray) -> tuple[bytes, bytes]:
    return ts.astype("<i8").tobytes(), vals.astype("<f8").tobytes()


def _pack_zd(ts: np.ndarray, vals: np.ndarray) -> tuple[bytes, bytes]:
    """Sorted timestamps as deltas (regular intervals compress to almost nothing),
    values as XOR with the previous value's bits (slow-moving values share their high
    bits), each zlib-compressed."""
    ts = ts.astype("<i8")
    deltas = np.empty_like(ts)
    if len(ts):
        deltas[0] = ts[0]
        deltas[1:] = np.diff(ts)
    bits = vals.astype("<f8").view("<u8")
    xored = bits.copy()
    xored[1:] ^= bits[:-1]
    return zlib.compress(deltas.tobytes(), 6), zlib.compress(xored.tobytes(), 6)


def _unpack(encoding: str, stamps: bytes, vals: bytes) -> tuple[np.ndarray, np.ndarray]:
    if encoding == "raw":
        return (
            np.frombuffer(bytes(stamps), dtype="<i8").astype(np.int64),
            np.frombuffer(bytes(vals), dtype="<f8").astype(np.float64),
        )
    if encoding == "zd":
        ts = np.cumsum(np.frombuffer(zlib.decompress(bytes(stamps)), dtype="<i8"))
        xored = np.frombuffer(zlib.decompress(bytes(vals)), dtype="<u8")
        bits = np.bitwise_xor.accumulate(xored) if len(xored) else xored
        return ts.astype(np.int64), bits.view("<f8").astype(np.float64)
    raise ValueError(f"unknown chunk encoding {encoding!r}")


def _sorted_last_wins(ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by time, one point per timestamp: the one that came last."""
    if len(ts) <= 1:
        return ts, vals
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    keep = np.ones(len(ts), dtype=bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], vals[keep]


def _series_of(r: Any) -> Series:
    last_value = r.last_value
    return Series(
        series_id=int(r.series_id),
        name=r.name,
        labels=json.loads(r.labels),
        last_time=r.last_time,
        last_value=math.nan if (last_value is None and r.last_time is not None) else last_value,
    )


class Signals:
    """Signals of one store (see the module docstring).

    ``clock`` gives now in ms (tests set it); ``settle_ms`` is how long after ingest
    a chunk may be merged.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int] | None = None,
        settle_ms: int = SETTLE_MS,
    ) -> None:
        self.store = store
        self.db = store.db
        self.clock = clock or now_ms
        self.settle_ms = settle_ms
        self._ids: dict[str, Series] = {}  # labels hash -> series (rows are never re-keyed)
        self._keys: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, str]] = {}
        self._hooks: list[IngestHook] = []
        self._lock = threading.Lock()

    # -- hooks ------------------------------------------------------------------------

    def on_ingest(self, hook: IngestHook) -> Callable[[], None]:
        """Call ``hook(new_points)`` after each ingest through this object commits;
        returns a function that removes it. A hook that raises is logged, not raised.

        Example::

            remove = sig.on_ingest(lambda batch: [detector.feed(p) for p in batch])
        """
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    # -- ingest -----------------------------------------------------------------------

    def push(self, points: object, *, now: int | None = None) -> IngestReport:
        """Store pushed points (mappings of ``name``, ``labels``, ``timestamp`` (ms,
        default now), ``value``): all of them, or — on a bad point — none, with an
        :class:`InvalidInput` naming the point's index and field.

        Example::

            sig.push([{"name": "queue_depth", "labels": {"q": "a"}, "value": 3}])
        """
        return self.ingest(check_points(points, now=self.clock() if now is None else now))

    def ingest(self, rows: Sequence[Row]) -> IngestReport:
        """Store checked rows ``(name, labels, time_ms, value)`` in one transaction."""
        if not rows:
            return IngestReport(0, 0, 0)
        groups: dict[str, tuple[str, dict[str, str], str, list[int], list[float]]] = {}
        keys = self._keys
        if len(keys) > 200_000:
            keys.clear()
        for name, labels, t, value in rows:
            # The canonical JSON and its hash, once per label set this object has seen.
            k = (name, tuple(labels.items()))
            known = keys.get(k)
            if known is None:
                known = keys[k] = labels_key(name, labels)
            text, digest = known
            g = groups.get(digest)
            if g is None:
                g = groups[digest] = (name, labels, text, [], [])
            g[3].append(t)
            g[4].append(value)
        at = self.clock()
        new_points: list[NewPoints] = []
        with self.db.write() as conn:
            series, created = self._series_ids(conn, groups, at)
            chunk_rows = []
            last_rows = []
            for digest, (_n, _l, _t, stamps, vals) in groups.items():
                if len(stamps) == 1:
                    # One point (a scrape, the host): no array work for it.
                    t0, v0 = stamps[0], vals[0]
                    if v0 != v0:
                        v0 = math.nan  # one NaN, whatever its payload bits
                    ts = np.array([t0], dtype=np.int64)
                    vs = np.array([v0], dtype=np.float64)
                    s, v = _ONE_T.pack(t0), _ONE_V.pack(v0)
                    lo = hi = last_t = t0
                    last = v0
                else:
                    ts = np.asarray(stamps, dtype=np.int64)
                    vs = np.asarray(vals, dtype=np.float64)
                    vs[np.isnan(vs)] = np.nan  # one NaN, whatever its payload bits
                    s, v = _pack_raw(ts, vs)
                    lo, hi = int(ts.min()), int(ts.max())
                    # The newest point of the batch; the last of those at the same time.
                    j = len(ts) - 1 - int(np.argmax(ts[::-1]))
                    last_t, last = int(ts[j]), float(vs[j])
                sid = series[digest].series_id
                chunk_rows.append(
                    {
                        "series_id": sid,
                        "min_time": lo,
                        "max_time": hi,
                        "n": len(stamps),
                        "encoding": "raw",
                        "stamps": s,
                        "vals": v,
                        "merged": False,
                        "ingest_time": at,
                    }
                )
                last_rows.append({"sid": sid, "t": last_t, "v": None if math.isnan(last) else last})
                new_points.append(NewPoints(series[digest], ts, vs))
            conn.execute(sa.insert(C), chunk_rows)
            newer = (SR.c.last_time.is_(None)) | (SR.c.last_time <= sa.bindparam("t"))
            conn.execute(
                sa.update(SR)
                .where(SR.c.series_id == sa.bindparam("sid"))
                .values(
                    last_time=sa.case((newer, sa.bindparam("t")), else_=SR.c.last_time),
                    last_value=sa.case((newer, sa.bindparam("v")), else_=SR.c.last_value),
                ),
                last_rows,
            )
        with self._lock:
            hooks = list(self._hooks)
        with _EVERY_LOCK:
            hooks.extend(_EVERY)
        for hook in hooks:
            try:
                hook(new_points)
            except Exception:
                log.exception("a signals ingest hook failed; the points are stored")
        return IngestReport(len(rows), len(groups), created)

    def _series_ids(
        self,
        conn: Connection,
        groups: Mapping[str, tuple[str, dict[str, str], str, list[int], list[float]]],
        at: int,
    ) -> tuple[dict[str, Series], int]:
        found = {d: self._ids[d] for d in groups if d in self._ids}
        missing = [d for d in groups if d not in found]
        created = 0
        for attempt in range(2):
            if not missing:
                break
            for i in range(0, len(missing), _IN):
                part = missing[i : i + _IN]
                for r in conn.execute(
                    sa.select(SR.c.series_id, SR.c.name, SR.c.labels, SR.c.labels_hash).where(
                        SR.c.labels_hash.in_(part)
                    )
                ):
                    s = Series(int(r.series_id), r.name, json.loads(r.labels))
                    found[r.labels_hash] = s
            missing = [d for d in missing if d not in found]
            if attempt == 0:
                # A concurrent writer may create the same series: insert or keep theirs.
                for d in missing:
                    name, _labels, text, _s, _v = groups[d]
                    upsert(
                        conn,
                        SR,
                        {"name": name, "labels": text, "labels_hash": d, "creation_time": at},
                        ["labels_hash"],
                        [],
                    )
                created = len(missing)
        if missing:  # pragma: no cover - the upsert above guarantees the rows
            raise RuntimeError("signal series rows missing after insert")
        with self._lock:
            self._ids.update(found)
        return found, created

    # -- reading ----------------------------------------------------------------------

    def series(
        self, selector: str | Selector | None = None, *, limit: int = MAX_SERIES_PER_QUERY
    ) -> list[Series]:
        """Stored series that ``selector`` picks (all when None), by name then labels.

        Example::

            sig.series('host_disk_used_percent{mountpoint="/"}')
        """
        sel = _selector(selector) if selector is not None else None
        q = sa.select(SR).order_by(SR.c.name, SR.c.labels)
        if sel is not None:
            q = q.where(SR.c.name == sel.name)
        out: list[Series] = []
        with self.db.read() as conn:
            for r in conn.execute(q):
                s = _series_of(r)
                if sel is None or sel.matches(s.labels):
                    out.append(s)
                    if len(out) >= limit:
                        break
        return out

    def names(self) -> list[tuple[str, int]]:
        """Signal names and how many series each has."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(SR.c.name, sa.func.count()).group_by(SR.c.name).order_by(SR.c.name)
            ).all()
        return [(r[0], int(r[1])) for r in rows]

    def query(
        self,
        selector: str | Selector,
        start: int | None = None,
        end: int | None = None,
        *,
        limit_series: int = MAX_SERIES_PER_QUERY,
    ) -> list[SeriesData]:
        """The points of each series ``selector`` picks with ``start <= t <= end``
        (ms; None: unbounded), sorted by time, one per timestamp.

        Example::

            for d in sig.query('up{job="api"}', start=now_ms() - 3_600_000):
                print(d.series.labels, d.values[-1])
        """
        picked = self.series(selector, limit=limit_series)
        return self.read(picked, start, end)

    def read(
        self, series: Sequence[Series], start: int | None = None, end: int | None = None
    ) -> list[SeriesData]:
        """The points of the given series in ``[start, end]``."""
        if start is not None and end is not None and end < start:
            raise InvalidInput(f"the time range ends ({end}) before it starts ({start})")
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {s.series_id: [] for s in series}
        ids = list(parts)
        with self.db.read() as conn:
            for i in range(0, len(ids), _IN):
                q = sa.select(C.c.series_id, C.c.encoding, C.c.stamps, C.c.vals).where(
                    C.c.series_id.in_(ids[i : i + _IN])
                )
                if start is not None:
                    q = q.where(C.c.max_time >= start)
                if end is not None:
                    q = q.where(C.c.min_time <= end)
                # Merged chunks hold what settled before any unmerged one came: read
                # them first so that for a repeated timestamp the later write wins.
                q = q.order_by(C.c.series_id, C.c.merged.desc(), C.c.chunk_id)
                for r in conn.execute(q):
                    parts[r.series_id].append(_unpack(r.encoding, r.stamps, r.vals))
        out = []
        for s in series:
            got = parts[s.series_id]
            if got:
                ts = np.concatenate([g[0] for g in got])
                vs = np.concatenate([g[1] for g in got])
                mask = np.ones(len(ts), dtype=bool)
                if start is not None:
                    mask &= ts >= start
                if end is not None:
                    mask &= ts <= end
                ts, vs = _sorted_last_wins(ts[mask], vs[mask])
            else:
                ts, vs = np.empty(0, np.int64), np.empty(0, np.float64)
            out.append(SeriesData(s, ts, vs))
        return out

    def query_frame(
        self, selector: str | Selector, start: int | None = None, end: int | None = None
    ) -> pd.DataFrame:
        """:meth:`query` as one long table: ``name``, one column per label,
        ``timestamp`` (ms), ``value``.

        Example::

            df = sig.query_frame("host_cpu_percent", start=now_ms() - 600_000)
        """
        import pandas as pd

        frames = []
        for d in self.query(selector, start, end):
            f = d.to_frame()
            f.insert(0, "name", d.series.name)
            for i, (k, v) in enumerate(sorted(d.series.labels.items())):
                f.insert(1 + i, k, v)
            frames.append(f)
        if not frames:
            return pd.DataFrame({"name": [], "timestamp": [], "value": []}).astype(
                {"name": object, "timestamp": np.int64, "value": np.float64}
            )
        df = pd.concat(frames, ignore_index=True)
        label_cols = sorted(c for c in df.columns if c not in ("name", "timestamp", "value"))
        return df[["name", *label_cols, "timestamp", "value"]]

    # -- following --------------------------------------------------------------------

    def cursor(self) -> int:
        """The newest chunk id now: follow from here to get only what comes next."""
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(C.c.chunk_id))).scalar() or 0)

    def follow(self, after: int, *, limit: int = 1000) -> tuple[list[NewPoints], int]:
        """Points ingested after cursor ``after`` (oldest first, at most ``limit``
        chunks) and the cursor to pass next time — for a detector in another process.

        Chunks are merged only once settled (``settle_ms``); a follower that falls
        further behind than that misses what was merged meanwhile.

        Example::

            points, cur = sig.follow(cur)
        """
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(C.c.chunk_id, C.c.series_id, C.c.encoding, C.c.stamps, C.c.vals)
                .where((C.c.chunk_id > after) & C.c.merged.is_(False))
                .order_by(C.c.chunk_id)
                .limit(limit)
            ).all()
            sids = sorted({r.series_id for r in rows})
            by_id: dict[int, Series] = {}
            for i in range(0, len(sids), _IN):
                for r in conn.execute(sa.select(SR).where(SR.c.series_id.in_(sids[i : i + _IN]))):
                    by_id[r.series_id] = _series_of(r)
        out = []
        for r in rows:
            ts, vs = _unpack(r.encoding, r.stamps, r.vals)
            out.append(NewPoints(by_id[r.series_id], ts, vs, int(r.chunk_id)))
        return out, (int(rows[-1].chunk_id) if rows else after)

    # -- compaction -------------------------------------------------------------------

    def compact(self, *, now: int | None = None, max_series: int = 500) -> int:
        """Merge the settled chunks of up to ``max_series`` series into large
        compressed ones; returns how many chunks were replaced.

        Example::

            sig.compact()
        """
        cutoff = (self.clock() if now is None else now) - self.settle_ms
        with self.db.read() as conn:
            sids = [
                int(r[0])
                for r in conn.execute(
                    sa.select(C.c.series_id)
                    .where(C.c.merged.is_(False) & (C.c.ingest_time <= cutoff))
                    .group_by(C.c.series_id)
                    .limit(max_series)
                )
            ]
        replaced = 0
        for i in range(0, len(sids), 200):
            with self.db.write() as conn:
                replaced += self._compact_group(conn, sids[i : i + 200], cutoff)
        return replaced

    def _compact_group(self, conn: Connection, sids: list[int], cutoff: int) -> int:
        """Merge the settled chunks of ``sids``: four statements for the whole group."""
        sources: dict[int, list[Any]] = {}
        for r in conn.execute(
            sa.select(C)
            .where(C.c.series_id.in_(sids) & C.c.merged.is_(True) & (C.c.n < CHUNK_POINTS))
            .order_by(C.c.series_id, C.c.chunk_id)
        ):
            sources[r.series_id] = [r]  # the newest small merged chunk of each series
        fresh: dict[int, list[Any]] = {}
        for r in conn.execute(
            sa.select(C)
            .where(C.c.series_id.in_(sids) & C.c.merged.is_(False) & (C.c.ingest_time <= cutoff))
            .order_by(C.c.series_id, C.c.chunk_id)
        ):
            fresh.setdefault(r.series_id, []).append(r)
        rows = []
        gone: list[int] = []
        for sid, new in fresh.items():
            # Older content first, so that the last write of a timestamp wins.
            group = sources.get(sid, []) + new
            parts = [_unpack(r.encoding, r.stamps, r.vals) for r in group]
            ts, vs = _sorted_last_wins(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            )
            ingest = max(int(r.ingest_time) for r in group)
            for j in range(0, len(ts), CHUNK_POINTS):
                t, v = ts[j : j + CHUNK_POINTS], vs[j : j + CHUNK_POINTS]
                packed_t, packed_v = _pack_zd(t, v)
                rows.append(
                    {
                        "series_id": sid,
                        "min_time": int(t[0]),
                        "max_time": int(t[-1]),
                        "n": len(t),
                        "encoding": "zd",
                        "stamps": packed_t,
                        "vals": packed_v,
                        "merged": True,
                        "ingest_time": ingest,
                    }
                )
            gone.extend(int(r.chunk_id) for r in group)
        for i in range(0, len(gone), _IN):
            conn.execute(C.delete().where(C.c.chunk_id.in_(gone[i : i + _IN])))
        if rows:
            conn.execute(sa.insert(C), rows)
        return len(gone)

    def delete_before(self, time_ms: int) -> int:
        """Drop the chunks whose points are all older than ``time_ms`` (retention);
        returns how many. A chunk that straddles the cut stays whole.

        Example::

            sig.delete_before(now_ms() - 30 * 86_400_000)
        """
        with self.db.write() as conn:
            return int(conn.execute(C.delete().where(C.c.max_time < int(time_ms))).rowcount or 0)

    def storage(self) -> dict[str, int]:
        """Series, chunks, points and packed bytes stored (for ``ls`` and benchmarks)."""
        with self.db.read() as conn:
            series = conn.execute(sa.select(sa.func.count()).select_from(SR)).scalar() or 0
            row = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(C.c.n), 0),
                    sa.func.coalesce(
                        sa.func.sum(sa.func.length(C.c.stamps) + sa.func.length(C.c.vals)), 0
                    ),
                )
            ).one()
        return {
            "series": int(series),
            "chunks": int(row[0]),
            "points": int(row[1]),
            "bytes": int(row[2]),
        }


def _selector(selector: str | Selector) -> Selector:
    return selector if isinstance(selector, Selector) else parse_selector(selector)


def rows_of(name: str, labels: Mapping[str, str], points: Iterable[tuple[int, float]]) -> list[Row]:
    """Rows for one series from (time_ms, value) pairs (checked)."""
    n = check_name(name)
    lab = check_labels(labels)
    return [(n, lab, check_time(t), check_value(v)) for t, v in points]
