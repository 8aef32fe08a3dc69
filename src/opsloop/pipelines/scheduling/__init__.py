"""Schedules and triggers: run a pipeline on a cron schedule or on new data.

::

    import opsloop

    opsloop.pipelines.schedule("flows:churn", name="churn-nightly",
                               cron="0 3 * * *", timezone="Europe/Berlin",
                               params={"lr": 0.1})
    opsloop.pipelines.schedule(churn, name="churn-on-data", on_dataset="sensors")

    from opsloop.pipelines import scheduling
    scheduling.list_schedules()
    scheduling.trigger_now("churn-nightly")     # a manual fire, started by the server
    scheduling.pause("churn-nightly"); scheduling.resume("churn-nightly")
    [(f.reason, f.status, f.run_id) for f in scheduling.history("churn-on-data")]
    scheduling.delete("churn-on-data")

Schedules live in the metadata store; ``opsloop server`` runs them (its scheduler:
``scheduler``, one per database, each pipeline in a process of its own: ``fire``). A
cron schedule fires at each slot of its expression in its time zone; missed slots
(no server running) fire once on catch-up. A dataset trigger fires once for each new
version of the dataset, registered by any process. At most ``max_active`` runs of
a pipeline at a time (1 by default): a fire that comes while the pipeline is at its
limit waits (``overlap="queue"``, at most one waiting per schedule; further ones are
recorded as skipped) or is skipped (``overlap="skip"``). Every fire is in the
schedule's history: reason, status, pipeline run.

The modules: ``timing`` (cron and time zones), ``entities``, ``service``
(``ScheduleService``, the records), ``scheduler`` (the loop), ``fire`` (one fire's
process).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsloop.errors import InvalidInput
from opsloop.pipelines.scheduling.entities import (
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SKIPPED,
    Fire,
    Schedule,
)
from opsloop.pipelines.scheduling.scheduler import Scheduler
from opsloop.pipelines.scheduling.service import ScheduleService
from opsloop.store import default_service


def _service() -> ScheduleService:
    return default_service(ScheduleService)


def target_of(pipeline: Any) -> tuple[str, str | None]:
    """The import reference (``module:name``) of a ``@pipeline`` object, and the folder
    to import it from (the root of its module's package)."""
    from opsloop.pipelines.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise InvalidInput(
            f"schedule a @pipeline or its reference 'module:name', got {type(pipeline).__name__}"
        )
    fn = pipeline.fn
    module_name = getattr(fn, "__module__", None) or ""
    attr = getattr(fn, "__name__", "")
    module = sys.modules.get(module_name)
    if module_name == "__main__" or module is None or getattr(module, attr, None) is not pipeline:
        raise InvalidInput(
            f"pipeline {pipeline.name!r} cannot be imported by name "
            f"({module_name or '?'}:{attr}): define it at the top level of a module "
            "(e.g. flows.py) and schedule it from there, or pass 'module:name'"
        )
    workdir = None
    file = getattr(module, "__file__", None)
    if file:
        root = Path(file).resolve().parent
        for _ in range(module_name.count(".")):
            root = root.parent
        workdir = str(root)
    return f"{module_name}:{attr}", workdir


def schedule(
    pipeline: Any,
    name: str,
    *,
    cron: str | None = None,
    on_dataset: str | None = None,
    params: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    max_active: int = 1,
    overlap: str = "queue",
    executor: str | None = None,
    max_workers: int | None = None,
    cache: bool | None = None,
    experiment: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    enabled: bool = True,
    description: str = "",
) -> Schedule:
    """Schedule a pipeline (a ``@pipeline`` or ``"module:name"``) on a cron expression
    and/or on new versions of a dataset; ``opsloop server`` runs it.

    ``workdir`` is the folder the server imports the module from (default: the module's
    root for a ``@pipeline``, else the current folder). ``executor``, ``max_workers``,
    ``cache`` and ``experiment`` are as for ``opsloop.pipelines.run``. Bad input stores
    nothing; a name that exists is a ``Conflict``.

    Example::

        opsloop.pipelines.schedule("flows:retrain", name="retrain", on_dataset="sensors",
                                   params={"epochs": 5}, executor="local", max_workers=2)
    """
    if isinstance(pipeline, str):
        target, root = pipeline, None
    else:
        target, root = target_of(pipeline)
    folder = os.path.abspath(os.fspath(workdir)) if workdir is not None else root or os.getcwd()
    options = {
        "executor": executor,
        "max_workers": max_workers,
        "cache": cache,
        "experiment": experiment,
    }
    return _service().create(
        target,
        name,
        cron=cron,
        on_dataset=on_dataset,
        params=params,
        options={k: v for k, v in options.items() if v is not None},
        timezone=timezone,
        max_active=max_active,
        overlap=overlap,
        workdir=folder,
        enabled=enabled,
        description=description,
    )


def get(name: str) -> Schedule:
    """A schedule by name, with its latest fire."""
    return _service().get(name)


def list_schedules() -> list[Schedule]:
    """Every schedule, by name, each with its latest fire."""
    return _service().list_schedules()


def pause(name: str) -> Schedule:
    """Stop a schedule firing (manual triggers still run)."""
    return _service().pause(name)


def resume(name: str) -> Schedule:
    """Fire again from now on (slots and versions missed while paused do not fire)."""
    return _service().resume(name)


def delete(name: str) -> None:
    """Delete a schedule and its history (a running fire runs to its end)."""
    _service().delete(name)


def trigger_now(name: str, params: Mapping[str, Any] | None = None) -> Fire:
    """Queue a manual fire (``params`` override the schedule's); the server starts it
    when the pipeline has room under max_active."""
    return _service().trigger(name, params)


def history(name: str, limit: int = 50, status: str | None = None) -> list[Fire]:
    """A schedule's fires, newest first."""
    return _service().history(name, limit, status)


__all__ = [
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "SKIPPED",
    "Fire",
    "Schedule",
    "ScheduleService",
    "Scheduler",
    "delete",
    "get",
    "history",
    "list_schedules",
    "pause",
    "resume",
    "schedule",
    "target_of",
    "trigger_now",
]
