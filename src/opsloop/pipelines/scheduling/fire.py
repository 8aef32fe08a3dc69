"""The process that runs one fire: ``python -m opsloop.pipelines.scheduling.fire FIRE_ID``.

The scheduler starts it in the schedule's workdir with the store's location in its
environment. It imports the target (``module:pipeline``, the workdir on the path, as
``opsloop run`` does), runs it with the fire's params and the schedule's executor
options, and records in the fire's row, itself: a heartbeat every few seconds, the
pipeline run's id as soon as the run exists, and the end (finished or failed, with
the first error). The pipeline run is tagged ``opsloop.schedule``,
``opsloop.schedule.fire`` and ``opsloop.schedule.reason``; its ``source`` is
``schedule:NAME#FIRE_ID``.

The pipeline sees why it runs in its environment (worker processes too):
``OPSLOOP_SCHEDULE``, ``OPSLOOP_FIRE_ID``, ``OPSLOOP_FIRE_REASON`` (``cron``,
``dataset:NAME@V`` or ``manual``), ``OPSLOOP_SCHEDULED_TIME`` (the cron slot, ISO 8601)
and ``OPSLOOP_TRIGGER_DATASET`` (``NAME@V``, for a dataset trigger).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback

import sqlalchemy as sa

from opsloop.errors import OpsloopError
from opsloop.pipelines.scheduling import timing
from opsloop.pipelines.scheduling.entities import DATASET_PREFIX, FAILED, FINISHED, Fire, Schedule
from opsloop.pipelines.scheduling.service import ScheduleService
from opsloop.pipelines.targets import load_pipeline, typed_params
from opsloop.store import Store
from opsloop.store.tables import runs

TAG_SCHEDULE = "opsloop.schedule"
TAG_FIRE = "opsloop.schedule.fire"
TAG_REASON = "opsloop.schedule.reason"
MAX_MESSAGE = 4000


def fire_environment(fire: Fire, schedule: Schedule) -> dict[str, str]:
    env = {
        "OPSLOOP_SCHEDULE": schedule.name,
        "OPSLOOP_FIRE_ID": str(fire.fire_id),
        "OPSLOOP_FIRE_REASON": fire.reason,
    }
    if fire.scheduled_time is not None:
        env["OPSLOOP_SCHEDULED_TIME"] = timing.iso(fire.scheduled_time, schedule.timezone) or ""
    if fire.reason.startswith(DATASET_PREFIX):
        env["OPSLOOP_TRIGGER_DATASET"] = fire.reason[len(DATASET_PREFIX) :]
    return env


class _Heartbeat(threading.Thread):
    def __init__(self, svc: ScheduleService, fire_id: int, every: float) -> None:
        super().__init__(name="opsloop-fire-heartbeat", daemon=True)
        self.svc = svc
        self.fire_id = fire_id
        self.every = every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            # A beat that fails is no harm: the scheduler waits lost_after for the next.
            with contextlib.suppress(Exception):
                self.svc.heartbeat(self.fire_id)


class _RunFinder:
    """Find the pipeline run once it exists (the runner makes it before the first
    step's progress call), record it in the fire and tag it."""

    def __init__(self, store: Store, svc: ScheduleService, fire: Fire, source: str) -> None:
        self.store = store
        self.svc = svc
        self.fire = fire
        self.source = source
        self.run_id: str | None = None

    def find(self) -> str | None:
        if self.run_id is not None:
            return self.run_id
        with self.store.db.read() as conn:
            row = conn.execute(
                sa.select(runs.c.run_uuid)
                .where((runs.c.source == self.source) & runs.c.parent_run_id.is_(None))
                .order_by(runs.c.start_time.desc())
                .limit(1)
            ).first()
        if row is not None:
            self.record(str(row.run_uuid))
        return self.run_id

    def record(self, run_id: str) -> None:
        from opsloop.tracking.service import TrackingService

        self.run_id = run_id
        tracking = TrackingService(self.store)
        tracking.set_tag(run_id, TAG_SCHEDULE, self.fire.schedule)
        tracking.set_tag(run_id, TAG_FIRE, str(self.fire.fire_id))
        tracking.set_tag(run_id, TAG_REASON, self.fire.reason)
        self.svc.report(self.fire.fire_id, run_id=run_id)

    def progress(self, _step: str, _status: str) -> None:
        if self.run_id is None:
            with contextlib.suppress(Exception):  # if not now, it is recorded at the end
                self.find()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else "..." + text[-MAX_MESSAGE:]


def run_fire(fire_id: int, store: Store) -> int:
    """Run fire ``fire_id`` here and record how it went; the exit code (0 finished)."""
    from opsloop.pipelines.runner import run

    svc = ScheduleService(store)
    fire, schedule = svc.fire_context(fire_id)
    beat = _Heartbeat(svc, fire_id, float(os.environ.get("OPSLOOP_FIRE_HEARTBEAT") or 10))
    beat.start()
    source = f"schedule:{schedule.name}#{fire_id}"
    finder = _RunFinder(store, svc, fire, source)
    os.environ.update(fire_environment(fire, schedule))
    try:
        pipe = load_pipeline(schedule.target, schedule.workdir)
        params = typed_params(pipe.fn, fire.params)
        # The runner names the run's source after argv[0]: the schedule and fire.
        sys.argv[0] = source
        opts = schedule.options
        result = run(
            pipe,
            params,
            executor=opts.get("executor", "local"),
            max_workers=opts.get("max_workers"),
            cache=opts.get("cache", True),
            experiment=opts.get("experiment"),
            store=store,
            raise_on_failure=False,
            progress=finder.progress,
        )
    except OpsloopError as exc:
        _end(finder, svc, fire_id, FAILED, exc.message)
        return 1
    except BaseException as exc:
        _end(finder, svc, fire_id, FAILED, "".join(traceback.format_exception(exc)))
        return 1
    finally:
        beat.stopped.set()
    if finder.run_id is None:
        finder.record(result.run_id)
    if result.ok:
        hits = sum(1 for s in result.steps.values() if s.cache_hit)
        message = f"{len(result.steps)} steps, {hits} from the cache, in {result.duration:.2f} s"
        svc.report(fire_id, run_id=result.run_id, status=FINISHED, message=message)
        return 0
    errors = [f"step {n!r}: {s.error.strip()}" for n, s in result.steps.items() if s.error]
    message = f"the pipeline {result.status.lower()}: " + ("; ".join(errors) or "see its run")
    svc.report(fire_id, run_id=result.run_id, status=FAILED, message=_clip(message))
    return 1


def _end(finder: _RunFinder, svc: ScheduleService, fire_id: int, status: str, msg: str) -> None:
    with contextlib.suppress(Exception):
        finder.find()
    svc.report(fire_id, run_id=finder.run_id, status=status, message=_clip(msg))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m opsloop.pipelines.scheduling.fire FIRE_ID", file=sys.stderr)
        return 2
    store = Store.open()
    try:
        return run_fire(int(args[0]), store)
    except OpsloopError as exc:  # e.g. the schedule was deleted meanwhile
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
