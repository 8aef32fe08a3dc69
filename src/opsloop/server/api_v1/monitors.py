"""``/api/v1/monitors``: monitors over deployments' prediction logs, their runs and
their results as time series.

Each endpoint is one ``MonitorService`` call; the server's monitor scheduler runs the
monitors on time, ``POST /monitors/{name}/run`` runs one now. Alerts are events
(``GET /api/v1/events?kind=monitor.alert``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from opsloop.monitoring.monitors import Monitor as MonitorRecord
from opsloop.monitoring.monitors import MonitorRun as RunRecord
from opsloop.monitoring.monitors import MonitorService
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import Body, Out, Page

router = APIRouter(prefix="/monitors", tags=["monitors"])


class MonitorCreate(Body):
    name: str = Field(examples=["churn"])
    reference: str = Field(
        description="A registered dataset version, NAME@VERSION.", examples=["sensors@3"]
    )
    deployment: str | None = Field(None, description="The deployment watched (default: name).")
    every: str = Field("10m", description="How often it runs: 30s, 10m, 1h, 1d...")
    window: str = Field("1h", description="The span of the prediction log each run checks.")
    checks: list[str] | None = Field(
        None,
        description="input_drift, output_drift, quality, performance, cbpe "
        "(default: every one the reference allows).",
    )
    features: list[str] | None = Field(None, description="The input columns to test for drift.")
    prediction_column: str = "prediction"
    score_column: str | None = Field(
        None, description="The probability of the positive class (ROC AUC, log loss, CBPE)."
    )
    label_column: str | None = Field(
        None, description="The reference's label column (default: label or target)."
    )
    task: str | None = Field(None, description="classification or regression (default: guessed).")
    positive: Any = Field(1, description="The positive class.")
    drift_threshold: float | str | None = Field(
        None, description="A number, 'learned', or null for each test's default."
    )
    drift_tests: str | dict[str, str] | None = None
    multivariate: bool = True
    performance_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="A minimum for scores (accuracy...), a maximum for errors (rmse...).",
        examples=[{"accuracy": 0.85}],
    )
    quality_checks: list[dict[str, Any]] | None = Field(
        None, description="Validation checks as dicts (default: those the reference carries)."
    )
    min_rows: int = 1
    enabled: bool = True
    description: str = ""


class MonitorRun(Out):
    run_id: int
    monitor: str
    trigger: str = Field(description="scheduled or manual.")
    run_time: int
    window_start: int
    window_end: int
    status: str = Field(description="ok, alert, no_data or failed.")
    rows: int
    message: str
    event_id: int | None = Field(description="The monitor.alert event it raised.")
    summary: dict[str, Any]

    @classmethod
    def of(cls, r: RunRecord) -> MonitorRun:
        return cls(**r.to_dict())


class Monitor(Out):
    name: str
    deployment: str
    reference: str
    checks: list[str]
    config: dict[str, Any]
    every: str
    window: str
    every_ms: int
    window_ms: int
    enabled: bool
    next_run_time: int | None
    description: str
    creation_time: int
    last_updated_time: int
    notes: list[str]
    last_run: MonitorRun | None

    @classmethod
    def of(cls, m: MonitorRecord) -> Monitor:
        d = m.to_dict()
        d["last_run"] = MonitorRun.of(m.last_run) if m.last_run else None
        return cls(**d)


class Result(Out):
    run_id: int
    window_start: int
    window_end: int
    status: str
    rows: int
    check: str
    signal: str = Field(description="A column, a metric, or a quality check.")
    metric: str = Field(description="The test or the metric.")
    value: float | None
    p_value: float | None
    threshold: float | None
    alert: bool
    detail: dict[str, Any] | None


def _svc(svc: Svc) -> MonitorService:
    return MonitorService(svc.store)


@router.get("")
def list_monitors(svc: Svc, deployment: str | None = None) -> Page[Monitor]:
    """Every monitor (of one deployment), by name, each with its last run."""
    return Page[Monitor](items=[Monitor.of(m) for m in _svc(svc).list_monitors(deployment)])


@router.post("", status_code=201)
def create_monitor(svc: Svc, body: MonitorCreate) -> Monitor:
    """Watch a deployment against a registered dataset version."""
    args = body.model_dump()
    name = args.pop("name")
    reference = args.pop("reference")
    return Monitor.of(_svc(svc).create(name, reference=reference, **args))


@router.get("/{name}")
def get_monitor(svc: Svc, name: str) -> Monitor:
    return Monitor.of(_svc(svc).get(name))


@router.delete("/{name}", status_code=204)
def delete_monitor(svc: Svc, name: str) -> None:
    """Delete a monitor with its runs and results (its events stay)."""
    _svc(svc).delete(name)


@router.post("/{name}/pause")
def pause_monitor(svc: Svc, name: str) -> Monitor:
    return Monitor.of(_svc(svc).pause(name))


@router.post("/{name}/resume")
def resume_monitor(svc: Svc, name: str) -> Monitor:
    return Monitor.of(_svc(svc).resume(name))


@router.post("/{name}/run")
def run_monitor(
    svc: Svc,
    name: str,
    at: int | None = Query(None, description="The window's end, ms since the epoch (now)."),
) -> MonitorRun:
    """Run the monitor now over the window ending ``at``; stores and returns the run."""
    return MonitorRun.of(_svc(svc).run(name, at=at))


@router.get("/{name}/runs")
def list_runs(
    svc: Svc,
    name: str,
    limit: int = Query(50, ge=1, le=100_000),
    status: str | None = None,
) -> Page[MonitorRun]:
    """A monitor's runs, newest first."""
    return Page[MonitorRun](items=[MonitorRun.of(r) for r in _svc(svc).runs(name, limit, status)])


@router.get("/{name}/results")
def list_results(
    svc: Svc,
    name: str,
    since: int | None = Query(None, description="Windows ending at or after (ms)."),
    until: int | None = Query(None, description="Windows ending before (ms)."),
    check: str | None = None,
    signal: str | None = None,
    alerts_only: bool = False,
    limit: int = Query(100_000, ge=1, le=1_000_000),
) -> Page[Result]:
    """The time series: one item per run, check and signal, oldest window first."""
    rows = _svc(svc).result_rows(
        name,
        since_ms=since,
        until_ms=until,
        check=check,
        signal=signal,
        alerts_only=alerts_only,
        limit=limit,
    )
    return Page[Result](items=[Result(**r) for r in rows])
