"""``/api/v1/signals``: push and query operational signals; scrape targets; limits.

``POST /signals`` takes a batch of points ``{"points": [{name, labels, timestamp,
value}, ...]}`` and stores all of them or, when one is bad, none: the 400 names the
point's index and field (``points[3].value: ...``). ``GET /signals?selector=...``
gives the points of each series a selector picks in a time range.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import Field

from opsloop.aiops.signals.limits import Limits
from opsloop.aiops.signals.model import Series as SeriesRecord
from opsloop.aiops.signals.scrape import ScrapeTargets
from opsloop.aiops.signals.storage import Signals
from opsloop.errors import InvalidInput
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import Body, Out, Page
from opsloop.store import Store

router = APIRouter(prefix="/signals", tags=["signals"])

MAX_BODY = 64 * 1024 * 1024

# One Signals per store: it caches series ids and carries the ingest hooks.
_signals: dict[int, Signals] = {}


def signals_of(store: Store) -> Signals:
    sig = _signals.get(id(store))
    if sig is None or sig.store is not store:
        sig = _signals[id(store)] = Signals(store)
    return sig


class Point(Body):
    name: str = Field(examples=["disk_used_percent"])
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"host": "db-1"}])
    timestamp: int | None = Field(None, description="ms since the epoch; default: when received.")
    value: float | str = Field(description="A number, or 'NaN', 'Infinity', '-Infinity'.")


class PushBody(Body):
    points: list[Point]


class Pushed(Out):
    points: int = Field(description="Points stored.")
    series: int = Field(description="Series they belong to.")
    new_series: int = Field(description="Series seen for the first time.")


class Series(Out):
    series_id: int
    name: str
    labels: dict[str, str]
    last_time: int | None
    last_value: float | None

    @classmethod
    def of(cls, s: SeriesRecord) -> Series:
        return cls(**s.to_dict())


class SeriesPoints(Out):
    series_id: int
    name: str
    labels: dict[str, str]
    timestamps: list[int]
    values: list[float]


class QueryResult(Out):
    series: list[SeriesPoints]


@router.post(
    "",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": PushBody.model_json_schema()}},
            "required": True,
        }
    },
)
async def push(svc: Svc, request: Request) -> Pushed:
    """Store a batch of points: all of them, or none when one is bad (the 400 names
    its index and field)."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"a push is at most {MAX_BODY} bytes; send several batches")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    if isinstance(body, dict):
        extra = set(body) - {"points"}
        if extra:
            raise InvalidInput(
                f'unknown field {sorted(extra)[0]!r}: the body is {{"points": [...]}}'
            )
        points = body.get("points")
    else:
        points = body  # a bare list of points is accepted too
    if points is None:
        raise InvalidInput('the body is {"points": [{name, labels, timestamp, value}, ...]}')
    from starlette.concurrency import run_in_threadpool

    report = await run_in_threadpool(signals_of(svc.store).push, points)
    return Pushed(points=report.points, series=report.series, new_series=report.new_series)


@router.get("")
def query(
    svc: Svc,
    selector: str = Query(
        description='A name and label matchers: name{label="v", other=~"re.*"}.',
        examples=['disk_used_percent{host="db-1"}'],
    ),
    start: int | None = Query(None, description="From this time (ms since the epoch)."),
    end: int | None = Query(None, description="Up to this time, inclusive (ms)."),
    limit_series: int = Query(1000, ge=1, le=10_000),
) -> QueryResult:
    """The points of each series the selector picks in ``[start, end]``, sorted by time."""
    found = signals_of(svc.store).query(selector, start, end, limit_series=limit_series)
    return QueryResult(
        series=[
            SeriesPoints(
                series_id=d.series.series_id,
                name=d.series.name,
                labels=d.series.labels,
                timestamps=d.timestamps.tolist(),
                values=d.values.tolist(),
            )
            for d in found
        ]
    )


@router.get("/series")
def list_series(
    svc: Svc,
    selector: str | None = Query(None, description="Only the series this picks."),
    limit: int = Query(1000, ge=1, le=10_000),
) -> Page[Series]:
    """Stored series (name, labels, last point), by name then labels."""
    found = signals_of(svc.store).series(selector, limit=limit)
    return Page[Series](items=[Series.of(s) for s in found])


# -- scrape targets ---------------------------------------------------------------------


class TargetCreate(Body):
    url: str = Field(examples=["http://127.0.0.1:8080/metrics"])
    job: str | None = Field(None, description="The job label (default 'scrape').")
    every: str | None = Field(None, description="Interval, e.g. 15s (the default), 1m.")
    timeout: str | None = Field(None, description="Per scrape (default: min(10s, every)).")
    labels: dict[str, str] = Field(default_factory=dict)
    name: str | None = Field(None, description="Default: the URL.")
    replace: bool = False


class Target(Out):
    name: str
    url: str
    job: str
    instance: str
    labels: dict[str, str]
    interval_ms: int
    every: str
    timeout_ms: int
    enabled: bool
    creation_time: int
    last_scrape_time: int | None
    last_duration_ms: int | None
    last_samples: int | None
    last_error: str | None
    up: bool | None


@router.get("/scrape-targets")
def list_targets(svc: Svc) -> Page[Target]:
    """The stored scrape targets and how their last scrape went."""
    return Page[Target](items=[Target(**t.to_dict()) for t in ScrapeTargets(svc.store).list()])


@router.post("/scrape-targets", status_code=201)
def add_target(svc: Svc, body: TargetCreate) -> Target:
    """Scrape a Prometheus ``/metrics`` URL from now on (``opsloop server`` does)."""
    t = ScrapeTargets(svc.store).add(
        body.url,
        job=body.job,
        every=body.every,
        timeout=body.timeout,
        labels=body.labels,
        name=body.name,
        replace=body.replace,
    )
    return Target(**t.to_dict())


@router.delete("/scrape-targets", status_code=204)
def remove_target(
    svc: Svc, name: str = Query(description="The target's name (its URL by default).")
) -> None:
    """Stop scraping a target (its series stay)."""
    ScrapeTargets(svc.store).remove(name)


# -- limits -----------------------------------------------------------------------------


class LimitCreate(Body):
    selector: str = Field(examples=['host_disk_used_percent{mountpoint="/"}'])
    above: float | None = Field(None, description="Breached at or above this value.")
    below: float | None = Field(None, description="Breached at or below this value.")
    horizon: str = Field("6h", description="How far ahead to warn.")
    window: str | None = Field(
        None, description="History the trend is fitted on (default: half the horizon)."
    )
    confidence: float = Field(0.9, description="Required probability of the breach, 0.5-1.")
    min_points: int = 10
    name: str | None = Field(None, description="Default: the selector.")
    description: str = ""
    replace: bool = False


class Limit(Out):
    name: str
    selector: str
    op: str
    threshold: float
    horizon_ms: int
    horizon: str
    window_ms: int
    window: str
    confidence: float
    min_points: int
    description: str
    enabled: bool
    creation_time: int


class LimitForecast(Out):
    series: Series
    forecast: dict[str, Any]


@router.get("/limits")
def list_limits(svc: Svc) -> Page[Limit]:
    return Page[Limit](items=[Limit(**x.to_dict()) for x in Limits(svc.store).list()])


@router.post("/limits", status_code=201)
def add_limit(svc: Svc, body: LimitCreate) -> Limit:
    """Watch the series a selector picks against a limit, warning (event
    ``signal.breach_forecast``) before it is crossed."""
    x = Limits(svc.store).add(
        body.selector,
        above=body.above,
        below=body.below,
        horizon=body.horizon,
        window=body.window,
        confidence=body.confidence,
        min_points=body.min_points,
        name=body.name,
        description=body.description,
        replace=body.replace,
    )
    return Limit(**x.to_dict())


@router.delete("/limits", status_code=204)
def remove_limit(svc: Svc, name: str = Query(description="The limit's name.")) -> None:
    Limits(svc.store).remove(name)


@router.get("/limits/forecast")
def forecast_limit(
    svc: Svc, name: str = Query(description="The limit's name.")
) -> Page[LimitForecast]:
    """Evaluate a limit now on each series it watches (records nothing)."""
    found = Limits(svc.store).forecast(name)
    return Page[LimitForecast](
        items=[LimitForecast(series=Series.of(s), forecast=f.to_dict()) for s, f in found]
    )
