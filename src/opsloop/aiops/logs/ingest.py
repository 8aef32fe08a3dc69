"""Log ingestion into the store: lines in, templates, counts and anomaly events out.

``LogIngestor(store).ingest(source, lines)`` takes a batch of ``(time_ms, line)`` of one
source and, in one transaction:

1. decodes each line (``decode_line``: empty, binary and undecodable lines are rejected
   with a reason, one at a time — a bad line never stops the batch);
2. files it under a template with the **source's own miner**: one miner per source, so
   that one source's templates neither weigh in another's similarity (the miner's token
   weights and header fields are learned over its templates) nor make another's lines
   look known, and so that sources are ingested in parallel. The miner's state lives in
   the source's row (``TemplateMiner.to_dict``, rewritten only when its templates
   changed) and survives restarts; a process keeps it in memory while the row's
   revision says nobody else changed it;
3. adds the lines to their template's total (with its first and latest line as
   examples), to its count in the line's time window (a minute by default), and to the
   line's **session** (an id found in the line: ``SessionPattern``) — the session's
   template counts, its first templates in order, and the transitions it made;
4. runs the detectors (``anomaly``): a new template once the source is warmed up, an
   unusual transition in a session, and — for every window that closed (its end is
   ``lateness_ms`` behind the newest line) — a rate change of a known template. Each
   raises a ``log.anomaly`` event (``opsloop.store.events``), deduplicated: one event
   per window for all rate changes, a template in a rate anomaly is reported again only
   after a normal window, new templates at most once per ``cooldown_ms`` (later ones
   counted in the next event), an unusual transition at most once per ``cooldown_ms``
   with every session that showed it, and a session at most once.

Raw lines are not kept: two examples per template and the counts are. Windows also
close with time when no lines come (``close_windows``, which ``opsloop server`` calls
periodically: a template that stops is a rate change too).

Example::

    ingestor = LogIngestor(store)
    result = ingestor.ingest("hdfs", [(now_ms(), "Receiving block blk_-42 src: /10.0.0.1")])
    result.accepted, result.rejected, result.new_templates
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from opsloop.aiops.logs.anomaly import TransitionModel, rate_change, warmed_up
from opsloop.aiops.logs.decoding import BadLine, decode_line
from opsloop.aiops.logs.miner import TemplateMiner
from opsloop.aiops.logs.sessions import SessionPattern
from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput
from opsloop.store.events import event_row, record_event_in
from opsloop.store.tables import MAX_NAME_LENGTH
from opsloop.store.tables_logs import (
    log_counts,
    log_sessions,
    log_sources,
    log_templates,
    log_transitions,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from opsloop.store import Store

EVENT_KIND = "log.anomaly"
MAX_LINE_CHARS = 16384
MAX_EXAMPLE = 2000
MAX_BATCH = 100_000
MAX_LISTED = 20
MAX_AHEAD_MS = 86_400_000
_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")

# A line: its time (ms since the epoch; None: when it is ingested) and its text or bytes.
LogLine = tuple[int | None, str | bytes]


def check_source(source: object) -> str:
    """A source name: letters, digits, ``.``, ``_``, ``-``, ``:``, ``@`` (no ``/``, so it
    fits in a URL path), starting with a letter or digit."""
    if not isinstance(source, str) or not source:
        raise InvalidInput(f"a log source must be a non-empty name, got {source!r}")
    if len(source) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"a log source name is limited to {MAX_NAME_LENGTH} characters, got {len(source)}"
        )
    if not _SOURCE_RE.match(source):
        raise InvalidInput(
            f"log source {source!r} is not a valid name: use letters, digits, '.', '_', '-', "
            "':' and '@', starting with a letter or digit (e.g. 'hdfs-datanode')"
        )
    return source


@dataclass(frozen=True, slots=True)
class LogConfig:
    """How ingestion windows, warms up and judges (one configuration for every source).

    ``window_ms``: the counting window. ``lateness_ms``: how far behind a source's newest
    line a window closes (later lines still count, but the window is judged).
    ``history_windows``/``min_history``: the windows a rate is judged against, and how
    many a source needs before it is. ``min_count``, ``min_ratio``, ``alpha``: see
    ``anomaly.rate_change``. ``warmup_ms``/``warmup_lines``: history a source needs
    before new templates and unusual sequences alert. ``cooldown_ms``: dedup period.
    ``seq_min_support``/``seq_rare``: see ``TransitionModel.unusual``.
    ``max_sequence``: templates kept in order per session. ``session_retention_ms``:
    sessions idle for longer are dropped (their transitions stay in the model).
    """

    window_ms: int = 60_000
    lateness_ms: int = 60_000
    history_windows: int = 60
    min_history: int = 10
    min_count: int = 10
    min_ratio: float = 2.0
    alpha: float = 1e-4
    warmup_ms: int = 10 * 60_000
    warmup_lines: int = 1000
    cooldown_ms: int = 5 * 60_000
    seq_min_support: int = 50
    seq_rare: float = 0.01
    max_sequence: int = 200
    session_retention_ms: int = 24 * 3_600_000


@dataclass
class IngestResult:
    """What one batch did: lines accepted, lines rejected (``(index, reason)``), lines
    taken with a warning (``(index, warning)``: cut, bad bytes replaced), templates seen
    for the first time, events raised and windows closed."""

    source: str
    accepted: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)
    new_templates: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    windows_closed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "rejected": [{"index": i, "reason": r} for i, r in self.rejected],
            "warnings": [{"index": i, "warning": w} for i, w in self.warnings],
            "new_templates": self.new_templates,
            "events": self.events,
            "windows_closed": self.windows_closed,
        }


class _SourceState:
    """A source's miner and sequence model in memory, valid while the row's revision
    is ``revision``."""

    __slots__ = ("miner", "model", "pattern", "revision", "saved_miner")

    def __init__(
        self, revision: int, miner: TemplateMiner, model: TransitionModel, pattern: SessionPattern
    ) -> None:
        self.revision = revision
        self.miner = miner
        self.model = model
        self.pattern = pattern
        self.saved_miner = miner.revision


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


_PG_TYPES = {
    "BigInteger": "bigint",
    "Integer": "integer",
    "String": "text",
    "Text": "text",
    "Float": "float8",
    "Boolean": "boolean",
}


def _upsert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    keys: list[str],
    update: Mapping[str, str],
) -> None:
    """Insert rows (distinct keys, same columns), or on a clash set ``update``'s columns
    to its SQL (``{x}.col`` is the row's new value; ``{t}.col`` the stored one).

    On PostgreSQL one ``INSERT ... SELECT FROM unnest(arrays)`` per call: a batch's
    thousands of session rows one at a time (even pipelined) cost ~20 s per 100,000
    lines, and SQLAlchemy's multi-row VALUES costs more to compile than that. SQLite's
    ``executemany`` is a C loop in the same process: fast as it is."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        set_: dict[str, Any] = {
            col: sa.literal_column(sql.format(t=f'"{table.name}"', x="excluded"))
            for col, sql in update.items()
        }
        stmt = _insert(conn, table).on_conflict_do_update(index_elements=keys, set_=set_)
        conn.execute(stmt, rows)
        return
    cols = list(rows[0])
    types = [_PG_TYPES[type(table.c[c].type).__name__] for c in cols]
    arrays = tuple([r[c] for r in rows] for c in cols)
    q = ", ".join(f'"{c}"' for c in cols)
    on = ", ".join(f'"{k}"' for k in keys)
    sets = ", ".join(
        f'"{col}" = ' + sql.format(t=f'"{table.name}"', x="EXCLUDED") for col, sql in update.items()
    )
    conn.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({q}) '
        f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) "
        f"ON CONFLICT ({on}) DO UPDATE SET {sets}",
        arrays,
    )


def _add_rows(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """Insert rows, or add their ``count`` to the rows already there."""
    _upsert(conn, table, rows, keys, {"count": '{t}."count" + {x}."count"'})


_SESSION_UPDATES = (
    "first_time",
    "last_time",
    "lines",
    "last_template",
    "templates",
    "sequence",
    "score",
    "flagged",
)


# A source whose newest line is this far from when it came is a replay (an old file
# ingested), not a live stream: the clock does not close its windows.
LIVE_SKEW_MS = 3_600_000


def _watermark(last_time: int, last_ingest: int, wall: int, lateness: int) -> int:
    """Where a source's log time stands: its newest line's time, run on with the clock
    since its last batch when it is live, less ``lateness``."""
    live = abs(last_ingest - last_time) <= LIVE_SKEW_MS
    return last_time + (max(0, wall - last_ingest) if live else 0) - lateness


def _window(t: int, win: int) -> int:
    return t - t % win


class LogIngestor:
    """Ingest log lines of any number of sources into one store (see the module's
    docstring). Thread-safe; one per store and process is enough (``ingestor_for``).

    Example::

        ing = LogIngestor(store)
        ing.ingest("app", [(1_700_000_000_000, "user alice logged in")])
        ing.close_windows()          # judge windows that time has closed
    """

    def __init__(self, store: Store, config: LogConfig | None = None) -> None:
        self.store = store
        self.db = store.db
        self.config = config or LogConfig()
        self._states: dict[str, _SourceState] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- ingest -------------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        lines: Iterable[LogLine],
        *,
        session_pattern: str | None = None,
        now: int | None = None,
    ) -> IngestResult:
        """Ingest one batch of a source's lines (see the module's docstring).

        ``session_pattern`` (a regex; its first group is the id) replaces the source's
        session pattern from now on; ``None`` keeps it (the default set at first).
        ``now``: the wall-clock time (ms), for lines without a time.
        """
        check_source(source)
        pattern = SessionPattern(session_pattern) if session_pattern is not None else None
        wall = now_ms() if now is None else int(now)
        result = IngestResult(source)
        ahead = wall + MAX_AHEAD_MS
        good: list[tuple[int, str]] = []
        append = good.append
        for i, (t, raw) in enumerate(lines):
            if i >= MAX_BATCH:
                raise InvalidInput(
                    f"a batch holds at most {MAX_BATCH} lines; send the rest in another batch"
                )
            if isinstance(raw, str):
                data = raw.encode("utf-8", "surrogatepass")
            elif isinstance(raw, bytes | bytearray | memoryview):
                data = bytes(raw)
            else:
                result.rejected.append((i, f"not text: a {type(raw).__name__}"))
                continue
            dec = decode_line(data, MAX_LINE_CHARS)
            if isinstance(dec, BadLine):
                result.rejected.append((i, dec.reason))
                continue
            if dec.warning:
                result.warnings.append((i, dec.warning))
            if t is None:
                t = wall
            elif isinstance(t, bool) or not isinstance(t, int) or t < 0:
                result.rejected.append(
                    (i, f"time must be milliseconds since the epoch (an integer >= 0), got {t!r}")
                )
                continue
            elif t > ahead:
                # One line dated years ahead would close every window up to then.
                result.rejected.append(
                    (i, f"time {t} is more than a day ahead of the clock ({wall}); fix its time")
                )
                continue
            append((t, dec.text))
        result.accepted = len(good)
        with self._source_lock(source):
            try:
                with self.db.write() as conn:
                    row = self._lock_row(conn, source, wall)
                    st = self._state(conn, source, row)
                    if pattern is not None and session_pattern != row.session_pattern:
                        st.pattern = pattern
                    self._ingest(conn, source, row, st, good, wall, session_pattern, result)
            except BaseException:
                # The transaction rolled back: the miner in memory may hold what it did not.
                self._states.pop(source, None)
                raise
        return result

    @contextlib.contextmanager
    def _source_lock(self, source: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(source, threading.Lock())
        with lock:
            yield

    def _lock_row(self, conn: Connection, source: str, wall: int) -> Any:
        stmt = _insert(conn, log_sources).values(
            source=source,
            session_pattern=None,
            miner=orjson.dumps(TemplateMiner().to_dict()),
            miner_revision=0,
            revision=0,
            first_time=None,
            last_time=None,
            last_ingest_time=wall,
            closed_until=None,
            lines=0,
            bad_lines=0,
            state="{}",
            creation_time=wall,
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["source"]))
        q = sa.select(log_sources).where(log_sources.c.source == source)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        return conn.execute(q).one()

    def _state(self, conn: Connection, source: str, row: Any) -> _SourceState:
        st = self._states.get(source)
        if st is not None and st.revision == row.revision:
            return st
        miner = TemplateMiner.from_dict(orjson.loads(row.miner))
        model = TransitionModel(
            {
                (int(a), int(b)): int(n)
                for a, b, n in conn.execute(
                    sa.select(
                        log_transitions.c.prev, log_transitions.c.next, log_transitions.c["count"]
                    ).where(log_transitions.c.source == source)
                )
            }
        )
        st = _SourceState(row.revision, miner, model, SessionPattern(row.session_pattern))
        self._states[source] = st
        return st

    def _ingest(
        self,
        conn: Connection,
        source: str,
        row: Any,
        st: _SourceState,
        good: list[tuple[int, str]],
        wall: int,
        session_pattern: str | None,
        result: IngestResult,
    ) -> None:
        cfg = self.config
        win = cfg.window_ms
        miner = st.miner
        before_next = miner.next_id
        before_aliases = miner.aliases
        warm = warmed_up(
            row.first_time,
            row.last_time,
            int(row.lines),
            warmup_ms=cfg.warmup_ms,
            warmup_lines=cfg.warmup_lines,
        )
        state: dict[str, Any] = orjson.loads(row.state or "{}")

        # Mine: one miner call and one regex search per line; everything else is counting.
        add = miner.add
        find = st.pattern.find
        ids: list[int] = []
        sessions: list[str | None] = []
        for _, text in good:
            ids.append(add(text).id)
            sessions.append(find(text))
        resolved: dict[int, int] = {}
        resolve = miner.resolve
        for tid in set(ids):
            resolved[tid] = resolve(tid)

        per_template: dict[int, list[Any]] = {}  # tid -> [count, first t, last t, first, last]
        counts: dict[tuple[int, int], int] = {}
        by_session: dict[str, list[tuple[int, int]]] = {}
        for (t, text), raw_id, sid in zip(good, ids, sessions, strict=True):
            tid = resolved[raw_id]
            agg = per_template.get(tid)
            if agg is None:
                per_template[tid] = [1, t, t, text, text]
            else:
                agg[0] += 1
                if t < agg[1]:
                    agg[1] = t
                if t >= agg[2]:
                    agg[2] = t
                    agg[4] = text
            key = (t - t % win, tid)
            counts[key] = counts.get(key, 0) + 1
            if sid is not None:
                seq = by_session.get(sid)
                if seq is None:
                    by_session[sid] = [(t, tid)]
                else:
                    seq.append((t, tid))

        # Templates the miner merged this batch: move what the store holds of them.
        merged = {
            old: resolve(old)
            for old in miner.aliases.keys() - before_aliases.keys()
            if old < before_next
        }
        if merged:
            self._merge_templates(conn, source, merged)
            st.model.remap(merged)
            rate_state = state.get("rate") or {}
            for old in merged:
                rate_state.pop(str(old), None)

        # Templates: totals and examples; rows of new ones.
        new_ids = sorted(tid for tid in per_template if tid >= before_next)
        result.new_templates = new_ids
        if per_template:
            stmt = _insert(conn, log_templates)
            tbl = log_templates.c
            exc = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=["source", "template_id"],
                set_={
                    "template": exc.template,
                    "count": tbl["count"] + exc["count"],
                    "first_time": sa.case(
                        (exc.first_time < tbl.first_time, exc.first_time), else_=tbl.first_time
                    ),
                    "last_time": sa.case(
                        (exc.last_time > tbl.last_time, exc.last_time), else_=tbl.last_time
                    ),
                    "last_example": sa.case(
                        (exc.last_time >= tbl.last_time, exc.last_example),
                        else_=tbl.last_example,
                    ),
                },
            )
            rows = []
            for tid, (n, t0, t1, first, last) in per_template.items():
                tpl = miner.get(tid)
                rows.append(
                    {
                        "source": source,
                        "template_id": tid,
                        "template": tpl.template if tpl is not None else "",
                        "first_time": t0,
                        "last_time": t1,
                        "count": n,
                        "example": first[:MAX_EXAMPLE],
                        "last_example": last[:MAX_EXAMPLE],
                        "merged_into": None,
                    }
                )
            conn.execute(stmt, rows)
        # Templates made more general by this batch but without lines in it keep an
        # older text: refresh the ones the miner changed.
        if miner.revision != st.saved_miner:
            stale = [
                {"s": source, "i": t.id, "text": t.template}
                for t in miner.templates
                if t.id < before_next and t.id not in per_template
            ]
            if stale and len(stale) <= 5000:
                conn.execute(
                    log_templates.update()
                    .where(
                        (log_templates.c.source == sa.bindparam("s"))
                        & (log_templates.c.template_id == sa.bindparam("i"))
                        & (log_templates.c.template != sa.bindparam("text"))
                    )
                    .values(template=sa.bindparam("text")),
                    stale,
                )

        _add_rows(
            conn,
            log_counts,
            [
                {"source": source, "window_start": w, "template_id": tid, "count": n}
                for (w, tid), n in counts.items()
            ],
            ["source", "window_start", "template_id"],
        )

        unusual = self._sessions(conn, source, st, by_session, resolve, warm, set(new_ids))

        # Events: new templates, unusual transitions.
        batch_time = max((t for t, _ in good), default=None)
        if new_ids and warm:
            self._new_template_event(conn, source, miner, per_template, new_ids, state, result)
        if unusual:
            self._sequence_events(conn, source, miner, unusual, state, batch_time or wall, result)

        # The source's row: times, totals, miner, and windows that closed.
        first_time = row.first_time
        last_time = row.last_time
        if good:
            t_min = min(t for t, _ in good)
            first_time = t_min if first_time is None else min(first_time, t_min)
            last_time = batch_time if last_time is None else max(last_time, batch_time or 0)
        values: dict[str, Any] = {
            "revision": row.revision + 1,
            "first_time": first_time,
            "last_time": last_time,
            "last_ingest_time": wall,
            "lines": int(row.lines) + len(good),
            "bad_lines": int(row.bad_lines) + len(result.rejected),
        }
        if session_pattern is not None:
            values["session_pattern"] = session_pattern
        if miner.revision != st.saved_miner:
            values["miner"] = orjson.dumps(miner.to_dict())
            values["miner_revision"] = row.miner_revision + 1
        closed_until = row.closed_until
        if last_time is not None:
            closed_until = self._close(
                conn, source, first_time, closed_until, last_time - cfg.lateness_ms, state, result
            )
        values["closed_until"] = closed_until
        values["state"] = _dumps(state)
        conn.execute(log_sources.update().where(log_sources.c.source == source).values(**values))
        st.revision = row.revision + 1
        st.saved_miner = miner.revision

    # -- sessions -----------------------------------------------------------------------

    def _sessions(
        self,
        conn: Connection,
        source: str,
        st: _SourceState,
        by_session: dict[str, list[tuple[int, int]]],
        resolve: Any,
        warm: bool,
        new: set[int],
    ) -> dict[tuple[int, int], list[tuple[str, float, int]]]:
        """Update the batch's sessions and the transition model; the unusual transitions
        (``(prev, next) -> [(session, probability, time)]``) of sessions not yet flagged.
        A transition to a template ``new`` in this batch lowers the session's score but
        is not reported here: the new-template detector reports the template."""
        if not by_session:
            return {}
        cfg = self.config
        S = log_sessions.c
        existing: dict[str, Any] = {}  # session id -> its row
        ids = list(by_session)
        if conn.dialect.name == "postgresql":
            # One array parameter: 500-value IN lists cost PostgreSQL ~60 ms each here.
            q = sa.select(log_sessions).where(
                (S.source == source)
                & (S.session_id == sa.func.any(sa.bindparam("ids", type_=ARRAY(sa.Text))))
            )
            for found in conn.execute(q, {"ids": ids}):
                existing[found.session_id] = found
        else:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for found in conn.execute(
                    sa.select(log_sessions).where((S.source == source) & S.session_id.in_(chunk))
                ):
                    existing[found.session_id] = found
        model = st.model
        learned: dict[tuple[int, int], int] = {}
        unusual: dict[tuple[int, int], list[tuple[str, float, int]]] = {}
        rows: list[dict[str, Any]] = []
        min_support, rare, cap = cfg.seq_min_support, cfg.seq_rare, cfg.max_sequence
        for sid, seq in by_session.items():
            r: Any = existing.get(sid)
            if r is None:
                prev, lines, first, flagged, score = 0, 0, seq[0][0], False, None
                tcounts: dict[str, int] = {}
                order: list[int] = []
            else:
                prev = resolve(int(r.last_template))
                lines, first, flagged, score = int(r.lines), int(r.first_time), r.flagged, r.score
                tcounts = orjson.loads(r.templates)
                order = orjson.loads(r.sequence)
            last = first
            for t, tid in seq:
                p = model.unusual(prev, tid, min_support=min_support, rare=rare)
                if p is not None:
                    score = p if score is None else min(score, p)
                    if warm and not flagged and tid not in new:
                        flagged = True
                        unusual.setdefault((prev, tid), []).append((sid, p, t))
                model.learn(prev, tid)
                key = (prev, tid)
                learned[key] = learned.get(key, 0) + 1
                prev = tid
                k = str(tid)
                tcounts[k] = tcounts.get(k, 0) + 1
                if len(order) < cap:
                    order.append(tid)
                first = min(first, t)
                last = max(last, t)
            if r is not None:
                last = max(last, int(r.last_time))
            rows.append(
                {
                    "source": source,
                    "session_id": sid,
                    "first_time": first,
                    "last_time": last,
                    "lines": lines + len(seq),
                    "last_template": prev,
                    "templates": _dumps(tcounts),
                    "sequence": _dumps(order),
                    "score": score,
                    "flagged": flagged,
                }
            )
        _upsert(
            conn,
            log_sessions,
            rows,
            ["source", "session_id"],
            {c: f'{{x}}."{c}"' for c in _SESSION_UPDATES},
        )
        _add_rows(
            conn,
            log_transitions,
            [{"source": source, "prev": a, "next": b, "count": n} for (a, b), n in learned.items()],
            ["source", "prev", "next"],
        )
        return unusual

    # -- merges -------------------------------------------------------------------------

    def _merge_templates(self, conn: Connection, source: str, merged: Mapping[int, int]) -> None:
        """Move the store's rows of templates the miner fused into others."""
        T, C, X = log_templates.c, log_counts.c, log_transitions.c
        for old, new in merged.items():
            r = conn.execute(
                sa.select(log_templates).where((T.source == source) & (T.template_id == old))
            ).first()
            if r is None:
                continue
            conn.execute(
                log_templates.update()
                .where((T.source == source) & (T.template_id == old))
                .values(merged_into=new)
            )
            conn.execute(
                log_templates.update()
                .where((T.source == source) & (T.template_id == new))
                .values(
                    count=T["count"] + int(r._mapping["count"]),
                    first_time=sa.case(
                        (T.first_time > r.first_time, r.first_time), else_=T.first_time
                    ),
                    example=sa.case((T.first_time > r.first_time, r.example), else_=T.example),
                )
            )
            moved = conn.execute(
                sa.select(C.window_start, C["count"]).where(
                    (C.source == source) & (C.template_id == old)
                )
            ).all()
            conn.execute(log_counts.delete().where((C.source == source) & (C.template_id == old)))
            _add_rows(
                conn,
                log_counts,
                [
                    {"source": source, "window_start": w, "template_id": new, "count": n}
                    for w, n in moved
                ],
                ["source", "window_start", "template_id"],
            )
            pairs = conn.execute(
                sa.select(X.prev, X.next, X["count"]).where(
                    (X.source == source) & ((X.prev == old) | (X.next == old))
                )
            ).all()
            if pairs:
                conn.execute(
                    log_transitions.delete().where(
                        (X.source == source) & ((X.prev == old) | (X.next == old))
                    )
                )
                moved_pairs: dict[tuple[int, int], int] = {}
                for a, b, n in pairs:
                    key = (merged.get(a, a), merged.get(b, b))
                    moved_pairs[key] = moved_pairs.get(key, 0) + int(n)
                _add_rows(
                    conn,
                    log_transitions,
                    [
                        {"source": source, "prev": a, "next": b, "count": n}
                        for (a, b), n in moved_pairs.items()
                    ],
                    ["source", "prev", "next"],
                )

    # -- events -------------------------------------------------------------------------

    def _emit(
        self,
        conn: Connection,
        source: str,
        detector: str,
        message: str,
        payload: dict[str, Any],
        result: IngestResult,
        severity: str = "warning",
    ) -> None:
        row = event_row(
            EVENT_KIND,
            message,
            source=f"logs:{detector}",
            subject=source,
            severity=severity,
            payload={"detector": detector, "source": source, **payload},
        )
        result.events.append(record_event_in(conn, row))

    def _new_template_event(
        self,
        conn: Connection,
        source: str,
        miner: TemplateMiner,
        per_template: dict[int, list[Any]],
        new_ids: list[int],
        state: dict[str, Any],
        result: IngestResult,
    ) -> None:
        cfg = self.config
        first_seen = min(per_template[t][1] for t in new_ids)
        last_event = state.get("new_last")
        if last_event is not None and first_seen - int(last_event) < cfg.cooldown_ms:
            state["new_suppressed"] = int(state.get("new_suppressed", 0)) + len(new_ids)
            return
        suppressed = int(state.get("new_suppressed", 0))
        listed = [
            {
                "template_id": tid,
                "template": (miner.get(tid) or _Missing).template,
                "count": per_template[tid][0],
                "first_time": per_template[tid][1],
                "example": per_template[tid][3][:MAX_EXAMPLE],
            }
            for tid in new_ids[:MAX_LISTED]
        ]
        head = listed[0]["template"]
        more = f" (and {len(new_ids) - 1} more)" if len(new_ids) > 1 else ""
        self._emit(
            conn,
            source,
            "new_template",
            f"new log template in {source}: {head[:200]}{more}",
            {
                "template_id": new_ids[0],
                "template": head,
                "templates": listed,
                "new_templates": len(new_ids),
                "suppressed_before": suppressed,
                "time": first_seen,
                "window_start": _window(first_seen, cfg.window_ms),
                "window_end": _window(first_seen, cfg.window_ms) + cfg.window_ms,
            },
            result,
        )
        state["new_last"] = first_seen
        state["new_suppressed"] = 0

    def _sequence_events(
        self,
        conn: Connection,
        source: str,
        miner: TemplateMiner,
        unusual: dict[tuple[int, int], list[tuple[str, float, int]]],
        state: dict[str, Any],
        at: int,
        result: IngestResult,
    ) -> None:
        cfg = self.config
        seen: dict[str, int] = state.get("seq") or {}
        # Forget transitions whose cooldown is over: the state stays small.
        seen = {k: v for k, v in seen.items() if at - v < cfg.cooldown_ms}
        for (prev, nxt), hits in sorted(unusual.items(), key=lambda kv: -len(kv[1])):
            key = f"{prev}>{nxt}"
            if key in seen:
                continue
            seen[key] = at
            p = min(h[1] for h in hits)
            t0 = min(h[2] for h in hits)
            prev_text = "(session start)" if prev == 0 else (miner.get(prev) or _Missing).template
            next_text = (miner.get(nxt) or _Missing).template
            self._emit(
                conn,
                source,
                "sequence",
                f"unusual log sequence in {source}: {len(hits)} session(s) went from "
                f"'{prev_text[:100]}' to '{next_text[:100]}' (p={p:.3g})",
                {
                    "template_id": nxt,
                    "template": next_text,
                    "prev_template_id": prev,
                    "prev_template": prev_text,
                    "probability": p,
                    "session_id": hits[0][0],
                    "sessions": [h[0] for h in hits[:MAX_LISTED]],
                    "n_sessions": len(hits),
                    "time": t0,
                    "window_start": _window(t0, cfg.window_ms),
                    "window_end": _window(t0, cfg.window_ms) + cfg.window_ms,
                },
                result,
            )
        state["seq"] = seen

    # -- windows ------------------------------------------------------------------------

    def close_windows(self, now: int | None = None) -> int:
        """Judge the windows of every source that time has closed: a window closes
        ``lateness_ms`` after its end in log time, where a live source's log time runs
        on with the clock since its last batch (so a source that goes quiet is judged
        too). Returns the number of windows closed."""
        wall = now_ms() if now is None else int(now)
        with self.db.read() as conn:
            sources = conn.execute(
                sa.select(
                    log_sources.c.source,
                    log_sources.c.last_time,
                    log_sources.c.last_ingest_time,
                    log_sources.c.closed_until,
                ).where(log_sources.c.last_time.is_not(None))
            ).all()
        closed = 0
        win, lateness = self.config.window_ms, self.config.lateness_ms
        for s in sources:
            mark = _watermark(int(s.last_time), int(s.last_ingest_time), wall, lateness)
            if s.closed_until is not None and mark < int(s.closed_until) + win:
                continue
            closed += self.close_source(s.source, wall)
        return closed

    def close_source(self, source: str, now: int | None = None) -> int:
        """Judge the closed windows of one source (see ``close_windows``)."""
        wall = now_ms() if now is None else int(now)
        result = IngestResult(source)
        with self._source_lock(source), self.db.write() as conn:
            q = sa.select(log_sources).where(log_sources.c.source == source)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).first()
            if row is None or row.last_time is None:
                return 0
            state: dict[str, Any] = orjson.loads(row.state or "{}")
            mark = _watermark(
                int(row.last_time), int(row.last_ingest_time), wall, self.config.lateness_ms
            )
            closed_until = self._close(
                conn, source, row.first_time, row.closed_until, mark, state, result
            )
            if closed_until != row.closed_until:
                # Not a change of the miner or the model: the revision stays, so a
                # process holding them keeps them.
                conn.execute(
                    log_sources.update()
                    .where(log_sources.c.source == source)
                    .values(closed_until=closed_until, state=_dumps(state))
                )
        return result.windows_closed

    def _close(
        self,
        conn: Connection,
        source: str,
        first_time: int | None,
        closed_until: int | None,
        mark: int,
        state: dict[str, Any],
        result: IngestResult,
    ) -> int | None:
        """Judge the windows ``[closed_until, mark)`` holds whole; the new closed_until."""
        cfg = self.config
        win, hist_n = cfg.window_ms, cfg.history_windows
        if first_time is None:
            return closed_until
        first_w = _window(int(first_time), win)
        start = first_w if closed_until is None else int(closed_until)
        end = _window(mark, win)  # windows starting before ``end`` are whole before ``mark``
        if end <= start:
            return closed_until
        # After a long silence, judge only the last windows (the silence itself is seen
        # in the first of them).
        if (end - start) // win > 2 * hist_n:
            start = end - 2 * hist_n * win
        C = log_counts.c
        rows = conn.execute(
            sa.select(C.window_start, C.template_id, C["count"]).where(
                (C.source == source)
                & (C.window_start >= max(first_w, start - hist_n * win))
                & (C.window_start < end)
            )
        ).all()
        by_window: dict[int, dict[int, int]] = {}
        for w, tid, n in rows:
            by_window.setdefault(int(w), {})[int(tid)] = int(n)
        rate_state: dict[str, str] = state.get("rate") or {}
        first_seen: dict[int, int] | None = None
        for w in range(start, end, win):
            result.windows_closed += 1
            n_hist = min(hist_n, (w - first_w) // win)
            if n_hist < cfg.min_history:
                continue
            hist_ws = range(w - n_hist * win, w, win)
            current = by_window.get(w, {})
            tids = set(current)
            for hw in hist_ws:
                tids.update(by_window.get(hw, ()))
            changes = []
            for tid in tids:
                history = [by_window.get(hw, {}).get(tid, 0) for hw in hist_ws]
                if not any(history):
                    if first_seen is None:
                        T = log_templates.c
                        first_seen = dict(
                            conn.execute(
                                sa.select(T.template_id, T.first_time).where(T.source == source)
                            ).all()
                        )
                    if first_seen.get(tid, w) >= hist_ws.start:
                        # New within the history: the new-template detector's to report.
                        continue
                rc = rate_change(
                    current.get(tid, 0),
                    history,
                    min_count=cfg.min_count,
                    min_ratio=cfg.min_ratio,
                    alpha=cfg.alpha,
                )
                key = str(tid)
                if rc.direction is None:
                    rate_state.pop(key, None)
                elif rate_state.get(key) != rc.direction:
                    rate_state[key] = rc.direction
                    changes.append((tid, rc))
            if changes:
                self._rate_event(conn, source, w, changes, result)
        state["rate"] = rate_state
        if cfg.session_retention_ms > 0:
            conn.execute(
                log_sessions.delete().where(
                    (log_sessions.c.source == source)
                    & (log_sessions.c.last_time < end - cfg.session_retention_ms)
                )
            )
        return end

    def _rate_event(
        self,
        conn: Connection,
        source: str,
        w: int,
        changes: Sequence[tuple[int, Any]],
        result: IngestResult,
    ) -> None:
        changes = sorted(changes, key=lambda c: c[1].p_value)
        T = log_templates.c
        texts = dict(
            conn.execute(
                sa.select(T.template_id, T.template).where(
                    (T.source == source)
                    & T.template_id.in_([tid for tid, _ in changes[:MAX_LISTED]])
                )
            ).all()
        )
        listed = [
            {
                "template_id": tid,
                "template": texts.get(tid, ""),
                "direction": rc.direction,
                "count": rc.count,
                "expected": round(rc.expected, 3),
                "p_value": rc.p_value,
            }
            for tid, rc in changes[:MAX_LISTED]
        ]
        head = listed[0]
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        self._emit(
            conn,
            source,
            "rate",
            f"log rate {'rise' if head['direction'] == 'up' else 'drop'} in {source}: "
            f"{head['count']} lines of '{str(head['template'])[:150]}' in a window, "
            f"{head['expected']:.3g} expected{more}",
            {
                "template_id": head["template_id"],
                "template": head["template"],
                "count": head["count"],
                "expected": head["expected"],
                "p_value": head["p_value"],
                "direction": head["direction"],
                "templates": listed,
                "n_templates": len(changes),
                "window_start": w,
                "window_end": w + self.config.window_ms,
            },
            result,
        )


class _Missing:
    template = ""


_ingestors: weakref.WeakKeyDictionary[Store, LogIngestor] = weakref.WeakKeyDictionary()
_ingestors_lock = threading.Lock()


def ingestor_for(store: Store) -> LogIngestor:
    """The process's one ingestor for a store (its sources' miners stay in memory)."""
    with _ingestors_lock:
        ing = _ingestors.get(store)
        if ing is None:
            ing = _ingestors[store] = LogIngestor(store)
        return ing
