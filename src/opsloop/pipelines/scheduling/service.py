"""Schedules on the store: create, find, pause, resume, delete, trigger, history.

``ScheduleService(store)`` is what the faces and the scheduler use. Creating checks
everything first (name, target, cron, time zone, dataset name, params, options) and
stores the schedule in one transaction, so bad input leaves no trace. A manual trigger
only records a queued fire: the server's scheduler starts it (see ``scheduler``), so
no face ever runs a user's pipeline in its own process.

Example::

    svc = ScheduleService(store)
    svc.create("flows:churn", "churn-nightly", cron="0 3 * * *", params={"lr": 0.1})
    svc.trigger("churn-nightly")
    svc.history("churn-nightly")[0].status        # "queued", later "running", "finished"
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.pipelines.scheduling import timing
from opsloop.pipelines.scheduling.entities import (
    MANUAL,
    OPTIONS,
    OVERLAP_QUEUE,
    OVERLAPS,
    QUEUED,
    RUNNING,
    STATUSES,
    Fire,
    Schedule,
)
from opsloop.store import Store
from opsloop.store.tables import (
    MAX_NAME_LENGTH,
    dataset_versions,
    pipeline_schedule_fires,
    pipeline_schedules,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ATTR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_HISTORY = 1000

S = pipeline_schedules
F = pipeline_schedule_fires


# -- checks ---------------------------------------------------------------------------


def schedule_name(name: object) -> str:
    """A schedule name: letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a schedule name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"schedule name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"schedule name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'churn-nightly')"
        )
    return name


def check_target(target: object) -> str:
    """``module:pipeline`` or ``path/to/file.py:pipeline``, as ``opsloop run`` takes it."""
    hint = "give MODULE:PIPELINE, e.g. 'flows:churn' or 'jobs/flows.py:churn'"
    if not isinstance(target, str) or not target.strip():
        raise InvalidInput(f"a schedule's target must be a non-empty string: {hint}")
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise InvalidInput(f"target {target!r} is not MODULE:PIPELINE: {hint}")
    if not (module.endswith(".py") or _MODULE_RE.match(module)):
        raise InvalidInput(
            f"target {target!r}: {module!r} is neither a module name (dotted identifiers) "
            f"nor a .py file: {hint}"
        )
    if not _ATTR_RE.match(attr):
        raise InvalidInput(
            f"target {target!r}: {attr!r} is not a Python name (the pipeline's variable): {hint}"
        )
    if len(target) > 4000:
        raise InvalidInput("a schedule's target is limited to 4000 characters")
    return target


def check_params(params: object, what: str = "params") -> dict[str, Any]:
    """A JSON object of the pipeline's parameters (stored as JSON, given to the run)."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput(f"{what} must be a mapping of names to JSON values, got {params!r}")
    out = dict(params)
    for key in out:
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"{what}: every name must be a non-empty string, got {key!r}")
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{what} must be JSON values (strings, numbers, booleans, lists, objects): {exc}"
        ) from None
    return out


def check_options(options: object) -> dict[str, Any]:
    """Executor options: ``executor``, ``max_workers``, ``cache``, ``experiment``."""
    opts = check_params(options, "options")
    for key, value in opts.items():
        if key not in OPTIONS:
            known = "; ".join(f"{k}: {v}" for k, v in OPTIONS.items())
            raise InvalidInput(f"unknown option {key!r}; the options are {known}")
        if value is None:
            continue
        if key in ("executor", "experiment") and (not isinstance(value, str) or not value):
            raise InvalidInput(f"option {key!r} must be a non-empty string, got {value!r}")
        if key == "max_workers" and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidInput(f"option 'max_workers' must be a positive integer, got {value!r}")
        if key == "cache" and not isinstance(value, bool):
            raise InvalidInput(f"option 'cache' must be true or false, got {value!r}")
    return {k: v for k, v in opts.items() if v is not None}


def _check_int(what: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{what} must be an integer of at least {minimum}, got {value!r}")
    return value


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _loads(text: str | None) -> dict[str, Any]:
    data = json.loads(text) if text else {}
    return data if isinstance(data, dict) else {}


# -- rows -----------------------------------------------------------------------------


def schedule_of(r: Any, last_fire: Fire | None = None) -> Schedule:
    return Schedule(
        schedule_id=r.schedule_id,
        name=r.name,
        target=r.target,
        workdir=r.workdir,
        params=_loads(r.params),
        options=_loads(r.options),
        cron=r.cron,
        timezone=r.timezone,
        on_dataset=r.on_dataset,
        dataset_version=int(r.dataset_version),
        enabled=bool(r.enabled),
        max_active=int(r.max_active),
        overlap=r.overlap,
        next_fire_time=r.next_fire_time,
        description=r.description or "",
        creation_time=int(r.creation_time),
        last_updated_time=int(r.last_updated_time),
        last_fire=last_fire,
    )


def fire_of(r: Any, schedule: str) -> Fire:
    return Fire(
        fire_id=int(r.fire_id),
        schedule=schedule,
        reason=r.reason,
        status=r.status,
        fire_time=int(r.fire_time),
        scheduled_time=r.scheduled_time,
        start_time=r.start_time,
        end_time=r.end_time,
        params=_loads(r.params),
        run_id=r.run_id,
        host=r.host,
        pid=r.pid,
        message=r.message,
    )


def latest_dataset_version(conn: Connection, name: str) -> int:
    """The newest version number of a dataset (0 when it has none yet)."""
    found = conn.execute(
        sa.select(sa.func.max(dataset_versions.c.version)).where(dataset_versions.c.name == name)
    ).scalar()
    return int(found or 0)


def insert_fire(
    conn: Connection,
    schedule_id: str,
    reason: str,
    status: str,
    now: int,
    params: dict[str, Any],
    *,
    scheduled_time: int | None = None,
    message: str | None = None,
) -> int:
    values: dict[str, Any] = {
        "schedule_id": schedule_id,
        "reason": reason[:512],
        "status": status,
        "fire_time": now,
        "scheduled_time": scheduled_time,
        "params": _json(params),
        "message": message,
    }
    if status not in (QUEUED, RUNNING):
        values["end_time"] = now
    key = conn.execute(F.insert().values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


class ScheduleService:
    """Schedules of pipelines and their fire history on one store.

    ``clock`` gives the time in ms since the epoch (the tests set it).

    Example::

        svc = ScheduleService(store)
        s = svc.create("flows:retrain", "retrain-on-data", on_dataset="sensors")
        svc.pause(s.name); svc.resume(s.name)
        [f.reason for f in svc.history(s.name)]   # ["dataset:sensors@3", ...]
    """

    def __init__(self, store: Store, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.db = store.db
        self.clock = clock or now_ms

    # -- schedules ------------------------------------------------------------------

    def create(
        self,
        target: str,
        name: str,
        *,
        cron: str | None = None,
        on_dataset: str | None = None,
        params: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        max_active: int = 1,
        overlap: str = OVERLAP_QUEUE,
        workdir: str | None = None,
        enabled: bool = True,
        description: str = "",
    ) -> Schedule:
        """Store a new schedule; nothing is stored if any argument is wrong.

        At least one of ``cron`` and ``on_dataset`` is needed. The dataset need not
        exist yet: the schedule fires for each version registered after it was made.
        """
        schedule_name(name)
        check_target(target)
        if cron is None and on_dataset is None:
            raise InvalidInput(
                f"schedule {name!r} has no trigger: give cron (e.g. '0 3 * * *') and/or "
                "on_dataset (a dataset name)"
            )
        cron_text = timing.check_cron(cron) if cron is not None else None
        if on_dataset is not None:
            from opsloop.data.refs import dataset_name

            if not isinstance(on_dataset, str) or not on_dataset.strip():
                raise InvalidInput(
                    "on_dataset must name a dataset (it need not exist yet), got an empty name"
                )
            dataset_name(on_dataset)
        tz = timing.check_timezone(timezone)
        stored_params = check_params(params)
        stored_options = check_options(options)
        _check_int("max_active", max_active, 1)
        if overlap not in OVERLAPS:
            raise InvalidInput(
                f"overlap must be 'queue' (wait for a free slot, at most one waiting fire) "
                f"or 'skip' (do not run), got {overlap!r}"
            )
        if workdir is not None and (not isinstance(workdir, str) or not os.path.isabs(workdir)):
            raise InvalidInput(
                f"workdir must be an absolute path (the folder to import the target from), "
                f"got {workdir!r}"
            )
        if not isinstance(enabled, bool):
            raise InvalidInput(f"enabled must be true or false, got {enabled!r}")
        if not isinstance(description, str):
            raise InvalidInput(f"description must be a string, got {description!r}")
        now = self.clock()
        sid = uuid.uuid4().hex
        try:
            with self.db.write() as conn:
                if conn.execute(sa.select(S.c.schedule_id).where(S.c.name == name)).first():
                    raise Conflict(
                        f"a schedule named {name!r} already exists: delete it first or "
                        "choose another name"
                    )
                seen = latest_dataset_version(conn, on_dataset) if on_dataset else 0
                conn.execute(
                    S.insert().values(
                        schedule_id=sid,
                        name=name,
                        target=target,
                        workdir=workdir,
                        params=_json(stored_params),
                        options=_json(stored_options),
                        cron=cron_text,
                        timezone=tz,
                        on_dataset=on_dataset,
                        dataset_version=seen,
                        enabled=enabled,
                        max_active=max_active,
                        overlap=overlap,
                        next_fire_time=(
                            timing.next_slot(cron_text, tz, now) if cron_text else None
                        ),
                        description=description,
                        creation_time=now,
                        last_updated_time=now,
                    )
                )
        except SAIntegrityError:
            raise Conflict(f"a schedule named {name!r} already exists") from None
        return self.get(name)

    def _row(self, conn: Connection, name: str) -> Any:
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"a schedule name must be a non-empty string, got {name!r}")
        row = conn.execute(sa.select(S).where(S.c.name == name)).first()
        if row is None:
            raise NotFound(f"no schedule named {name!r} (opsloop schedule ls lists them)")
        return row

    def get(self, name: str) -> Schedule:
        with self.db.read() as conn:
            row = self._row(conn, name)
            last = conn.execute(
                sa.select(F)
                .where(F.c.schedule_id == row.schedule_id)
                .order_by(F.c.fire_id.desc())
                .limit(1)
            ).first()
        return schedule_of(row, fire_of(last, row.name) if last is not None else None)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule by name, each with its latest fire."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(S).order_by(S.c.name)).all()
            latest = sa.select(sa.func.max(F.c.fire_id)).group_by(F.c.schedule_id).scalar_subquery()
            fires = {
                r.schedule_id: r for r in conn.execute(sa.select(F).where(F.c.fire_id.in_(latest)))
            }
        out = []
        for r in rows:
            f = fires.get(r.schedule_id)
            out.append(schedule_of(r, fire_of(f, r.name) if f is not None else None))
        return out

    def pause(self, name: str) -> Schedule:
        """Stop firing on cron and on new dataset versions (queued fires and manual
        triggers still run)."""
        with self.db.write() as conn:
            row = self._row(conn, name)
            if row.enabled:
                conn.execute(
                    S.update()
                    .where(S.c.schedule_id == row.schedule_id)
                    .values(enabled=False, last_updated_time=self.clock())
                )
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Fire again, from now on: cron slots and dataset versions that came while the
        schedule was paused do not fire."""
        now = self.clock()
        with self.db.write() as conn:
            row = self._row(conn, name)
            if not row.enabled:
                conn.execute(
                    S.update()
                    .where(S.c.schedule_id == row.schedule_id)
                    .values(
                        enabled=True,
                        last_updated_time=now,
                        next_fire_time=(
                            timing.next_slot(row.cron, row.timezone, now) if row.cron else None
                        ),
                        dataset_version=(
                            latest_dataset_version(conn, row.on_dataset)
                            if row.on_dataset
                            else row.dataset_version
                        ),
                    )
                )
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete a schedule and its fire history. A fire running now runs to its end
        (its pipeline run stays in tracking); nothing records it here any more."""
        with self.db.write() as conn:
            row = self._row(conn, name)
            conn.execute(F.delete().where(F.c.schedule_id == row.schedule_id))
            conn.execute(S.delete().where(S.c.schedule_id == row.schedule_id))

    # -- fires --------------------------------------------------------------------------

    def trigger(self, name: str, params: Mapping[str, Any] | None = None) -> Fire:
        """Queue a manual fire (``params`` override the schedule's); the server's
        scheduler starts it when the pipeline has a free slot under max_active, even
        if the schedule is paused."""
        override = check_params(params)
        with self.db.write() as conn:
            row = self._row(conn, name)
            merged = {**_loads(row.params), **override}
            fire_id = insert_fire(conn, row.schedule_id, MANUAL, QUEUED, self.clock(), merged)
        return self.get_fire(fire_id)

    def get_fire(self, fire_id: int) -> Fire:
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(F, S.c.name)
                .join(S, S.c.schedule_id == F.c.schedule_id)
                .where(F.c.fire_id == fire_id)
            ).first()
        if row is None:
            raise NotFound(f"no schedule fire {fire_id}")
        return fire_of(row, row.name)

    def history(self, name: str, limit: int = 50, status: str | None = None) -> list[Fire]:
        """A schedule's fires, newest first."""
        _check_int("limit", limit, 1)
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self.db.read() as conn:
            row = self._row(conn, name)
            query = sa.select(F).where(F.c.schedule_id == row.schedule_id)
            if status is not None:
                query = query.where(F.c.status == status)
            rows = conn.execute(
                query.order_by(F.c.fire_id.desc()).limit(min(limit, MAX_HISTORY))
            ).all()
        return [fire_of(r, row.name) for r in rows]

    # -- what a fire's own process reports ---------------------------------------------

    def fire_context(self, fire_id: int) -> tuple[Fire, Schedule]:
        """A fire and its schedule, for the process that runs it."""
        fire = self.get_fire(fire_id)
        return fire, self.get(fire.schedule)

    def heartbeat(self, fire_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                F.update()
                .where((F.c.fire_id == fire_id) & (F.c.status == RUNNING))
                .values(heartbeat_time=self.clock())
            )

    def report(
        self,
        fire_id: int,
        *,
        run_id: str | None = None,
        status: str | None = None,
        message: str | None = None,
    ) -> None:
        """Record a fire's pipeline run and/or its end (finished or failed)."""
        values: dict[str, Any] = {"heartbeat_time": self.clock()}
        if run_id is not None:
            values["run_id"] = run_id
        if status is not None:
            values["status"] = status
            values["end_time"] = self.clock()
            values["message"] = message
        with self.db.write() as conn:
            conn.execute(F.update().where(F.c.fire_id == fire_id).values(**values))
