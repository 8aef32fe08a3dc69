"""``/api/v1/logs``: log lines in (batched, per source), templates, counts and anomalies out.

``POST /logs`` takes a batch of one source's lines as JSON (``{"source", "lines":
[text | {"line", "time"}], "time", "session_pattern"}``) or as plain text (one line per
``\\n``, any encoding, with ``?source=`` and ``&time=``). A bad *line* (empty, binary, not
a string, a bad time) does not fail the batch: the answer (200) lists it under
``rejected`` with its index and reason, and every other line is stored. A bad *batch*
(not JSON, no source, a bad source name or pattern, over 100,000 lines) is a 400 and
stores nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from opsloop.aiops.logs.ingest import MAX_BATCH, IngestResult, LogLine, ingestor_for
from opsloop.aiops.logs.queries import (
    ORDERS,
    SessionInfo,
    TemplateInfo,
    get_session,
    get_template,
    list_sessions,
    list_sources,
    list_templates,
    template_counts,
)
from opsloop.errors import InvalidInput
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.events import Event
from opsloop.server.api_v1.models import Body, Out, Page
from opsloop.store.events import list_events

router = APIRouter(prefix="/logs", tags=["logs"])

MAX_BODY = 256 << 20


class LogLineIn(Body):
    line: str
    time: int | None = Field(None, description="ms since the epoch; default: the batch's time.")


class LogBatch(Body):
    source: str = Field(examples=["hdfs-datanode"])
    lines: list[str | LogLineIn] = Field(
        description=f"At most {MAX_BATCH} lines: text, or {{line, time}}."
    )
    time: int | None = Field(
        None, description="Time of lines without one (ms since the epoch); default: now."
    )
    session_pattern: str | None = Field(
        None,
        description="A regex whose first group is a line's session id; replaces the "
        "source's (default: block, request, trace and UUID ids).",
    )


class Rejected(Out):
    index: int
    reason: str


class Warned(Out):
    index: int
    warning: str


class Ingested(Out):
    source: str
    accepted: int
    rejected: list[Rejected]
    warnings: list[Warned]
    new_templates: list[int]
    events: list[int] = Field(description="Ids of the log.anomaly events this batch raised.")
    windows_closed: int

    @classmethod
    def of(cls, r: IngestResult) -> Ingested:
        return cls(**r.to_dict())


class Source(Out):
    source: str
    lines: int
    bad_lines: int
    templates: int
    first_time: int | None
    last_time: int | None
    closed_until: int | None
    session_pattern: str | None


class Template(Out):
    source: str
    template_id: int
    template: str
    count: int
    first_time: int
    last_time: int
    example: str = Field(description="The first line it matched (cut to 2000 characters).")
    last_example: str = Field(description="The latest line it matched.")

    @classmethod
    def of(cls, t: TemplateInfo) -> Template:
        return cls(**t.to_dict())


class Count(Out):
    window_start: int
    template_id: int
    count: int


class Session(Out):
    source: str
    session_id: str
    first_time: int
    last_time: int
    lines: int
    templates: dict[str, int]
    sequence: list[int]
    score: float | None = Field(description="The lowest transition probability it showed.")
    flagged: bool

    @classmethod
    def of(cls, s: SessionInfo) -> Session:
        return cls(**s.to_dict())


def _time(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        t = int(value)
    except ValueError:
        raise InvalidInput(
            f"{what} must be ms since the epoch (an integer), got {value!r}"
        ) from None
    if t < 0:
        raise InvalidInput(f"{what} must be ms since the epoch (>= 0), got {t}")
    return t


def _json_batch(raw: bytes) -> tuple[str, list[LogLine], str | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    shape = '{"source": "NAME", "lines": ["text", {"line": "text", "time": MS}, ...]}'
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object: {shape}")
    extra = set(body) - {"source", "lines", "time", "session_pattern"}
    if extra:
        raise InvalidInput(f"unknown field {sorted(extra)[0]!r}: the body is {shape}")
    source = body.get("source")
    if not isinstance(source, str):
        raise InvalidInput(f"the batch needs a source (a name): {shape}")
    lines = body.get("lines")
    if not isinstance(lines, list):
        raise InvalidInput(f"the batch's lines must be a list: {shape}")
    if len(lines) > MAX_BATCH:
        raise InvalidInput(
            f"a batch holds at most {MAX_BATCH} lines, got {len(lines)}; send several batches"
        )
    default = body.get("time")
    if default is not None and (isinstance(default, bool) or not isinstance(default, int)):
        raise InvalidInput(f"time must be ms since the epoch (an integer), got {default!r}")
    pattern = body.get("session_pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise InvalidInput(f"session_pattern must be a regex (a string), got {pattern!r}")
    items: list[LogLine] = []
    for el in lines:
        if isinstance(el, str):
            items.append((default, el))
        elif (
            isinstance(el, dict)
            and isinstance(el.get("line"), str)
            and set(el)
            <= {
                "line",
                "time",
            }
        ):
            items.append((el.get("time", default), el["line"]))
        else:
            # Rejected by the ingestor, by index, with the rest of the batch stored.
            items.append((default, _BadElement(el)))  # type: ignore[arg-type]
    return source, items, pattern


class _BadElement:
    """A batch element that is not a line: the ingestor rejects it by its index."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _ingest(svc: Svc, source: str, items: list[LogLine], pattern: str | None) -> IngestResult:
    result = ingestor_for(svc.store).ingest(source, items, session_pattern=pattern)
    for k, (i, _) in enumerate(result.rejected):
        el = items[i][1]
        if isinstance(el, _BadElement):
            result.rejected[k] = (
                i,
                'not a line: give a string or {"line": "text", "time": MS}, got '
                + repr(el.value)[:100],
            )
    return result


@router.post(
    "",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": LogBatch.model_json_schema()},
                "text/plain": {"schema": {"type": "string"}},
            },
            "required": True,
        },
        "parameters": [
            {"name": "source", "in": "query", "schema": {"type": "string"}},
            {"name": "time", "in": "query", "schema": {"type": "integer"}},
            {"name": "session_pattern", "in": "query", "schema": {"type": "string"}},
        ],
    },
)
async def ingest(svc: Svc, request: Request) -> Ingested:
    """Ingest a batch of one source's lines: JSON (``LogBatch``), or plain text with the
    source in ``?source=``. Bad lines are listed under ``rejected``; the rest are stored."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"a batch is at most {MAX_BODY} bytes; send several batches")
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype == "text/plain":
        source = request.query_params.get("source")
        if not source:
            raise InvalidInput("a plain-text batch needs ?source=NAME")
        t = _time(request.query_params.get("time"), "time")
        parts = raw.split(b"\n")
        if parts and parts[-1] == b"":
            parts.pop()
        if len(parts) > MAX_BATCH:
            raise InvalidInput(
                f"a batch holds at most {MAX_BATCH} lines, got {len(parts)}; send several batches"
            )
        items: list[LogLine] = [(t, p) for p in parts]
        pattern = request.query_params.get("session_pattern")
    elif ctype in ("application/json", ""):
        source, items, pattern = _json_batch(raw)
    else:
        raise InvalidInput(
            f"content type {ctype!r} is not taken: send application/json or text/plain"
        )
    result = await run_in_threadpool(_ingest, svc, source, items, pattern)
    return Ingested.of(result)


@router.get("/sources")
def sources(svc: Svc) -> Page[Source]:
    """Every log source with its totals."""
    return Page[Source](items=[Source(**s.to_dict()) for s in list_sources(svc.store.db)])


@router.get("/anomalies")
def anomalies(
    svc: Svc,
    source: str | None = Query(None, description="Only this source's."),
    detector: str | None = Query(None, description="new_template, rate or sequence."),
    since: int | None = Query(None, description="From this time (ms since the epoch)."),
    after_id: int | None = Query(None, description="Only events with a larger id."),
    limit: int = Query(1000, ge=1, le=100_000),
) -> Page[Event]:
    """The ``log.anomaly`` events, oldest first (as ``/events?kind=log.anomaly``)."""
    found = list_events(
        svc.store.db,
        kind="log.anomaly",
        subject=source,
        source=f"logs:{detector}" if detector else None,
        since_ms=since,
        after_id=after_id,
        limit=limit,
    )
    return Page[Event](items=[Event.of(e) for e in found])


@router.get("/{source}/templates")
def templates(
    svc: Svc,
    source: str,
    order: str = Query("id", description=f"One of {', '.join(ORDERS)}."),
    since: int | None = Query(None, description="First seen at or after (ms)."),
    limit: int = Query(1000, ge=1, le=100_000),
) -> Page[Template]:
    """A source's templates with their totals and examples."""
    found = list_templates(svc.store.db, source, order=order, since_ms=since, limit=limit)
    return Page[Template](items=[Template.of(t) for t in found])


@router.get("/{source}/templates/{template_id}")
def template(svc: Svc, source: str, template_id: int) -> Template:
    """One template (a merged id gives the template it went into)."""
    return Template.of(get_template(svc.store.db, source, template_id))


@router.get("/{source}/counts")
def counts(
    svc: Svc,
    source: str,
    template_id: int | None = Query(None, description="One template's; default: all."),
    since: int | None = Query(None, description="Windows starting at or after (ms)."),
    until: int | None = Query(None, description="Windows starting before (ms)."),
    limit: int = Query(10_000, ge=1, le=100_000),
) -> Page[Count]:
    """Lines per template per window, oldest first (windows without lines are left out)."""
    rows = template_counts(
        svc.store.db, source, template_id, since_ms=since, until_ms=until, limit=limit
    )
    return Page[Count](items=[Count(window_start=w, template_id=t, count=n) for w, t, n in rows])


@router.get("/{source}/sessions")
def sessions(
    svc: Svc,
    source: str,
    flagged: bool | None = Query(None, description="Only flagged (true) or unflagged ones."),
    limit: int = Query(1000, ge=1, le=100_000),
) -> Page[Session]:
    """A source's sessions, most recently active first."""
    found = list_sessions(svc.store.db, source, flagged=flagged, limit=limit)
    return Page[Session](items=[Session.of(s) for s in found])


@router.get("/{source}/sessions/{session_id}")
def session(svc: Svc, source: str, session_id: str) -> Session:
    """One session: its template counts, first templates in order, lowest probability."""
    return Session.of(get_session(svc.store.db, source, session_id))
