"""``/api/v1/schedules``: pipeline schedules, their fires, manual triggers.

Each endpoint is one ``ScheduleService`` call; the server's scheduler runs what they
record. A manual trigger answers 202 with the queued fire and wakes the scheduler.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from opsloop.pipelines.scheduling.entities import Fire as FireRecord
from opsloop.pipelines.scheduling.entities import Schedule as ScheduleRecord
from opsloop.pipelines.scheduling.service import ScheduleService
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import Body, Out, Page

router = APIRouter(prefix="/schedules", tags=["schedules"])


class ScheduleCreate(Body):
    name: str = Field(examples=["churn-nightly"])
    target: str = Field(
        description="The pipeline: MODULE:PIPELINE or path/to/file.py:PIPELINE.",
        examples=["flows:churn"],
    )
    cron: str | None = Field(
        None, description="5-field cron expression or @daily etc.", examples=["0 3 * * *"]
    )
    on_dataset: str | None = Field(
        None, description="Fire on each new version of this dataset (it may come later)."
    )
    params: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="executor, max_workers, cache, experiment (as opsloop.pipelines.run).",
    )
    timezone: str = "UTC"
    max_active: int = 1
    overlap: str = Field("queue", description="At max_active: 'queue' (one waits) or 'skip'.")
    workdir: str | None = Field(
        None, description="Absolute folder on the server's host to import the module from."
    )
    enabled: bool = True
    description: str = ""


class FireParams(Body):
    params: dict[str, Any] = Field(
        default_factory=dict, description="Override the schedule's params for this fire."
    )


class Fire(Out):
    fire_id: int
    schedule: str
    reason: str = Field(description="cron, dataset:NAME@VERSION or manual.")
    status: str = Field(description="queued, running, finished, failed or skipped.")
    fire_time: int
    scheduled_time: int | None
    start_time: int | None
    end_time: int | None
    params: dict[str, Any]
    run_id: str | None = Field(description="The pipeline run.")
    message: str | None

    @classmethod
    def of(cls, f: FireRecord) -> Fire:
        return cls(
            fire_id=f.fire_id,
            schedule=f.schedule,
            reason=f.reason,
            status=f.status,
            fire_time=f.fire_time,
            scheduled_time=f.scheduled_time,
            start_time=f.start_time,
            end_time=f.end_time,
            params=f.params,
            run_id=f.run_id,
            message=f.message,
        )


class Schedule(Out):
    name: str
    target: str
    workdir: str | None
    params: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    timezone: str
    on_dataset: str | None
    dataset_version: int = Field(description="The newest version of on_dataset handled.")
    enabled: bool
    max_active: int
    overlap: str
    next_fire_time: int | None
    description: str
    creation_time: int
    last_updated_time: int
    last_fire: Fire | None

    @classmethod
    def of(cls, s: ScheduleRecord) -> Schedule:
        return cls(
            name=s.name,
            target=s.target,
            workdir=s.workdir,
            params=s.params,
            options=s.options,
            cron=s.cron,
            timezone=s.timezone,
            on_dataset=s.on_dataset,
            dataset_version=s.dataset_version,
            enabled=s.enabled,
            max_active=s.max_active,
            overlap=s.overlap,
            next_fire_time=s.next_fire_time,
            description=s.description,
            creation_time=s.creation_time,
            last_updated_time=s.last_updated_time,
            last_fire=Fire.of(s.last_fire) if s.last_fire else None,
        )


def _schedules(svc: Svc) -> ScheduleService:
    return ScheduleService(svc.store)


@router.get("")
def list_schedules(svc: Svc) -> Page[Schedule]:
    """Every schedule, by name, each with its latest fire."""
    return Page[Schedule](items=[Schedule.of(s) for s in _schedules(svc).list_schedules()])


@router.post("", status_code=201)
def create_schedule(svc: Svc, body: ScheduleCreate) -> Schedule:
    """Schedule a pipeline on a cron expression and/or new versions of a dataset."""
    return Schedule.of(
        _schedules(svc).create(
            body.target,
            body.name,
            cron=body.cron,
            on_dataset=body.on_dataset,
            params=body.params,
            options=body.options,
            timezone=body.timezone,
            max_active=body.max_active,
            overlap=body.overlap,
            workdir=body.workdir,
            enabled=body.enabled,
            description=body.description,
        )
    )


@router.get("/{name}")
def get_schedule(svc: Svc, name: str) -> Schedule:
    return Schedule.of(_schedules(svc).get(name))


@router.delete("/{name}", status_code=204)
def delete_schedule(svc: Svc, name: str) -> None:
    """Delete a schedule and its fire history."""
    _schedules(svc).delete(name)


@router.post("/{name}/pause")
def pause_schedule(svc: Svc, name: str) -> Schedule:
    """Stop firing on cron and dataset triggers (manual triggers still run)."""
    return Schedule.of(_schedules(svc).pause(name))


@router.post("/{name}/resume")
def resume_schedule(svc: Svc, name: str) -> Schedule:
    """Fire again from now on."""
    return Schedule.of(_schedules(svc).resume(name))


@router.post("/{name}/trigger", status_code=202)
def trigger_schedule(svc: Svc, name: str, request: Request, body: FireParams | None = None) -> Fire:
    """Queue a manual fire; the scheduler starts it when the pipeline has room."""
    fire = _schedules(svc).trigger(name, body.params if body else None)
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is not None:
        scheduler.wake()
    return Fire.of(fire)


@router.get("/{name}/fires")
def list_fires(svc: Svc, name: str, limit: int = 50, status: str | None = None) -> Page[Fire]:
    """A schedule's fires, newest first."""
    return Page[Fire](items=[Fire.of(f) for f in _schedules(svc).history(name, limit, status)])
