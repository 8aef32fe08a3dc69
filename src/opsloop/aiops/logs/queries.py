"""Reading what log ingestion stored: sources, templates, counts per window, sessions.

Example::

    [s.source for s in list_sources(store.db)]
    for t in list_templates(store.db, "hdfs", order="count"):
        print(t.template_id, t.count, t.template)
    template_counts(store.db, "hdfs", 3, since_ms=..., until_ms=...)   # [(window, n), ...]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from opsloop.aiops.logs.ingest import check_source
from opsloop.errors import InvalidInput, NotFound
from opsloop.store.tables_logs import log_counts, log_sessions, log_sources, log_templates

if TYPE_CHECKING:
    from opsloop.store.db import Database

MAX_LIST = 100_000
ORDERS = ("id", "count", "first_seen", "last_seen")


@dataclass(frozen=True)
class SourceInfo:
    source: str
    lines: int
    bad_lines: int
    templates: int
    first_time: int | None
    last_time: int | None
    closed_until: int | None
    session_pattern: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TemplateInfo:
    source: str
    template_id: int
    template: str
    count: int
    first_time: int
    last_time: int
    example: str
    last_example: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SessionInfo:
    source: str
    session_id: str
    first_time: int
    last_time: int
    lines: int
    templates: dict[int, int]
    sequence: list[int]
    score: float | None
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["templates"] = {str(k): v for k, v in self.templates.items()}
        return d


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}, got {limit!r}")
    return limit


def list_sources(db: Database) -> list[SourceInfo]:
    """Every log source, by name, with its totals."""
    S, T = log_sources.c, log_templates.c
    n_templates = (
        sa.select(sa.func.count())
        .where((T.source == S.source) & T.merged_into.is_(None))
        .scalar_subquery()
    )
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                S.source,
                S.lines,
                S.bad_lines,
                n_templates.label("templates"),
                S.first_time,
                S.last_time,
                S.closed_until,
                S.session_pattern,
            ).order_by(S.source)
        ).all()
    return [
        SourceInfo(
            r.source,
            int(r.lines),
            int(r.bad_lines),
            int(r.templates),
            r.first_time,
            r.last_time,
            r.closed_until,
            r.session_pattern,
        )
        for r in rows
    ]


def _check_exists(conn: Any, source: str) -> None:
    found = conn.execute(
        sa.select(log_sources.c.source).where(log_sources.c.source == source)
    ).first()
    if found is None:
        raise NotFound(f"no log source named {source!r} (opsloop logs sources lists them)")


def list_templates(
    db: Database,
    source: str,
    *,
    order: str = "id",
    since_ms: int | None = None,
    limit: int = 1000,
) -> list[TemplateInfo]:
    """A source's templates (merged ones left out): by id, by count (most first), by
    first or last time seen (newest first); ``since_ms``: first seen at or after it."""
    check_source(source)
    _limit(limit)
    if order not in ORDERS:
        raise InvalidInput(f"order is one of {', '.join(ORDERS)}, got {order!r}")
    T = log_templates.c
    q = sa.select(log_templates).where((T.source == source) & T.merged_into.is_(None))
    if since_ms is not None:
        q = q.where(T.first_time >= int(since_ms))
    by = {
        "id": (T.template_id,),
        "count": (T["count"].desc(), T.template_id),
        "first_seen": (T.first_time.desc(), T.template_id),
        "last_seen": (T.last_time.desc(), T.template_id),
    }[order]
    with db.read() as conn:
        _check_exists(conn, source)
        rows = conn.execute(q.order_by(*by).limit(limit)).all()
    return [
        TemplateInfo(
            r.source,
            int(r.template_id),
            r.template,
            int(r._mapping["count"]),
            int(r.first_time),
            int(r.last_time),
            r.example,
            r.last_example,
        )
        for r in rows
    ]


def get_template(db: Database, source: str, template_id: int) -> TemplateInfo:
    """One template; a template merged into another gives the one it went into."""
    check_source(source)
    T = log_templates.c
    with db.read() as conn:
        _check_exists(conn, source)
        tid = int(template_id)
        for _ in range(1000):
            r = conn.execute(
                sa.select(log_templates).where((T.source == source) & (T.template_id == tid))
            ).first()
            if r is None:
                raise NotFound(
                    f"log source {source!r} has no template {template_id} "
                    "(opsloop logs templates lists them)"
                )
            if r.merged_into is None:
                return TemplateInfo(
                    r.source,
                    int(r.template_id),
                    r.template,
                    int(r._mapping["count"]),
                    int(r.first_time),
                    int(r.last_time),
                    r.example,
                    r.last_example,
                )
            tid = int(r.merged_into)
    raise NotFound(f"template {template_id} of {source!r} is merged in a loop")  # pragma: no cover


def template_counts(
    db: Database,
    source: str,
    template_id: int | None = None,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 10_000,
) -> list[tuple[int, int, int]]:
    """``(window_start, template_id, count)`` rows, oldest first, of one template (its
    current id, as ``get_template``) or all; windows without lines are not listed."""
    check_source(source)
    _limit(limit)
    C = log_counts.c
    q = sa.select(C.window_start, C.template_id, C["count"]).where(C.source == source)
    if template_id is not None:
        tid = get_template(db, source, template_id).template_id
        q = q.where(C.template_id == tid)
    if since_ms is not None:
        q = q.where(C.window_start >= int(since_ms))
    if until_ms is not None:
        q = q.where(C.window_start < int(until_ms))
    with db.read() as conn:
        _check_exists(conn, source)
        rows = conn.execute(q.order_by(C.window_start, C.template_id).limit(limit)).all()
    return [(int(w), int(t), int(n)) for w, t, n in rows]


def get_session(db: Database, source: str, session_id: str) -> SessionInfo:
    """One session of a source (templates by their ids when it was last seen)."""
    check_source(source)
    S = log_sessions.c
    with db.read() as conn:
        _check_exists(conn, source)
        r = conn.execute(
            sa.select(log_sessions).where((S.source == source) & (S.session_id == session_id))
        ).first()
    if r is None:
        raise NotFound(f"log source {source!r} has no session {session_id!r}")
    return _session(r)


def list_sessions(
    db: Database, source: str, *, flagged: bool | None = None, limit: int = 1000
) -> list[SessionInfo]:
    """A source's sessions, most recently active first (``flagged``: only those that
    were, or were not, reported as unusual)."""
    check_source(source)
    _limit(limit)
    S = log_sessions.c
    q = sa.select(log_sessions).where(S.source == source)
    if flagged is not None:
        q = q.where(S.flagged == flagged)
    with db.read() as conn:
        _check_exists(conn, source)
        rows = conn.execute(q.order_by(S.last_time.desc(), S.session_id).limit(limit)).all()
    return [_session(r) for r in rows]


def _session(r: Any) -> SessionInfo:
    return SessionInfo(
        r.source,
        r.session_id,
        int(r.first_time),
        int(r.last_time),
        int(r.lines),
        {int(k): int(v) for k, v in orjson.loads(r.templates).items()},
        [int(x) for x in orjson.loads(r.sequence)],
        r.score,
        bool(r.flagged),
    )
