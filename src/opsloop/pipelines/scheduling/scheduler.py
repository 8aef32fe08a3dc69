"""The scheduler: fire due schedules, start their pipelines, follow them to the end.

The server runs one ``Scheduler`` in a background thread; every ``interval`` seconds
it ticks. A tick, in one transaction:

1. **Lease.** Only the holder of the ``scheduler`` lease row acts. The holder renews
   it every tick (it lasts ``lease_ttl``); another process takes it over only once it
   has expired, with a conditional ``UPDATE`` that one writer wins, so two servers
   (or two workers of one) on one database never both fire. Every tick's transaction
   renews the lease first, so a holder that lost it mid-way writes nothing.
2. **Reconcile.** A fire left ``running`` whose process is gone is marked failed: a
   child of this process that exited without reporting, a process on this host that
   no longer exists (the server restarted and its child died with it), or a fire
   whose heartbeat is older than ``lost_after`` (its host went away). A child that
   outlived a server restart reports its own end, so nothing is lost.
3. **Fire.** A cron schedule whose next slot has come fires once, however many slots
   passed while no scheduler ran (the catch-up fires once and says how many slots it
   covers); its next slot is computed from now. A dataset trigger fires once for each
   version of the dataset registered since it last looked, by any process: it reads
   the ``dataset_versions`` table, not an in-process hook.
4. **Limit.** At most ``max_active`` fires of one pipeline (one target) run at once.
   A fire that comes while the pipeline is at its limit waits as ``queued`` when the
   schedule's ``overlap`` is ``"queue"`` (the default), but at most one per schedule:
   a further fire while one waits is recorded ``skipped`` (coalesced — the waiting run
   reads the newest data anyway); with ``overlap="skip"`` it is ``skipped`` at once,
   like Airflow's ``max_active_runs=1`` with catch-up off. Nothing piles up.
5. **Start.** Queued fires are started oldest first while there is room: each in its
   own process (``python -m opsloop.pipelines.scheduling.fire ID``, in the schedule's
   workdir, in a session of its own), so a pipeline cannot crash or block the server,
   and survives a server restart. The process records its pipeline run id, a
   heartbeat, and its end (finished or failed) in the fire's row itself.

Example::

    scheduler = Scheduler(store)
    scheduler.tick()                 # or tick(now=...) with a chosen clock
    scheduler.start(); ...; scheduler.stop()
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from opsloop.core.ids import now_ms
from opsloop.core.ticker import Ticker, interval_from_env
from opsloop.pipelines.scheduling import timing
from opsloop.pipelines.scheduling.entities import (
    CRON,
    DATASET_PREFIX,
    FAILED,
    FINISHED,
    OVERLAP_SKIP,
    QUEUED,
    RUNNING,
    SKIPPED,
)
from opsloop.pipelines.scheduling.service import ScheduleService, insert_fire
from opsloop.store import Store
from opsloop.store.db import process_is_alive
from opsloop.store.leases import Lease, new_holder
from opsloop.store.tables import (
    dataset_versions,
    pipeline_schedule_fires,
    pipeline_schedules,
)

log = logging.getLogger("opsloop.scheduler")

LEASE = "scheduler"
ENV_ENABLED = "OPSLOOP_SCHEDULER"
ENV_INTERVAL = "OPSLOOP_SCHEDULER_INTERVAL"
FIRE_MODULE = "opsloop.pipelines.scheduling.fire"
LOG_TAIL = 2000

S = pipeline_schedules
F = pipeline_schedule_fires


def enabled_by_env() -> bool:
    """Whether the server should schedule: ``OPSLOOP_SCHEDULER=0`` (or ``opsloop server
    --no-scheduler``) turns it off."""
    return os.environ.get(ENV_ENABLED, "1").strip().lower() not in ("0", "false", "no", "off")


def _ms(now: int | dt.datetime | None, clock: Callable[[], int]) -> int:
    if now is None:
        return clock()
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise ValueError("give an aware datetime (with tzinfo) as the scheduler's now")
        return round(now.timestamp() * 1000)
    return int(now)


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a zombie has exited)."""
    if not process_is_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()
    return not state or state[0] != "Z"


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text.strip()


@dataclass
class TickReport:
    """What one tick did (for tests and logs)."""

    leader: bool
    fired: list[int] = field(default_factory=list)  # new fires, any status
    skipped: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    log: Path


class Scheduler(Ticker):
    """Fires schedules and runs their pipelines; one acts per database (see the module
    docstring). Times are ms since the epoch; ``clock`` gives now (the tests set it,
    or pass ``now`` to ``tick``).

    Example::

        with Scheduler(store, interval=1.0).running():
            ...   # schedules fire while this block runs
    """

    name = "scheduler"

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 2.0,
        lease_ttl: float = 30.0,
        lost_after: float = 60.0,
        heartbeat: float = 10.0,
        clock: Callable[[], int] | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        if interval <= 0 or lease_ttl <= interval or heartbeat <= 0 or lost_after <= heartbeat:
            raise ValueError(
                "need interval > 0, lease_ttl > interval, heartbeat > 0, lost_after > heartbeat"
            )
        super().__init__(interval)
        self.store = store
        self.db = store.db
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.lost_after_ms = int(lost_after * 1000)
        self.heartbeat = heartbeat
        self.clock = clock or now_ms
        self.service = ScheduleService(store, self.clock)
        self.host = socket.gethostname()[:200]
        self.lease = Lease(self.db, LEASE, self.lease_ttl_ms, new_holder(self.host))
        self.holder = self.lease.holder
        self.log_dir = Path(log_dir) if log_dir else store.settings.home / "logs" / "schedules"
        self._children: dict[int, _Child] = {}

    @classmethod
    def from_env(cls, store: Store) -> Scheduler:
        """A scheduler whose tick interval is ``OPSLOOP_SCHEDULER_INTERVAL`` seconds (2)."""
        interval = interval_from_env(ENV_INTERVAL, 2.0)
        return cls(store, interval=interval, lease_ttl=max(30.0, interval * 5))

    # -- the background thread (a Ticker: start, stop, wake, running) ---------------------

    def stopped(self) -> None:
        """Give up the lease, so another server takes over at once. Running pipelines go
        on: each reports its own end."""
        self.release()

    # -- one tick -------------------------------------------------------------------------

    def tick(self, now: int | dt.datetime | None = None, *, start: bool = True) -> TickReport:
        """Do one round (see the module docstring) at ``now`` (default: the clock).
        ``start=False`` records fires but starts none (they stay queued)."""
        at = _ms(now, self.clock)
        if not self.lease.may_take(at):
            return TickReport(leader=False)
        exited = self._reap()
        report = TickReport(leader=True)
        with self.db.write() as conn:
            if not self.lease.hold(conn, at):
                return TickReport(leader=False)
            self._reconcile(conn, at, exited, report)
            self._fire_due(conn, at, report)
            to_start = self._take_queued(conn, at) if start else []
        for fire_id in to_start:
            if self._launch(fire_id):
                report.started.append(fire_id)
        return report

    # -- the lease ------------------------------------------------------------------------

    def release(self) -> None:
        """Give up the lease if this scheduler holds it."""
        self.lease.release()

    def lease_holder(self) -> str | None:
        """Who holds the lease now (None: nobody, or it expired)."""
        return self.lease.current_holder(self.clock())

    # -- reconcile ------------------------------------------------------------------------

    def _reap(self) -> dict[int, tuple[int, Path]]:
        exited = {}
        for fire_id, child in list(self._children.items()):
            code = child.proc.poll()
            if code is not None:
                exited[fire_id] = (code, child.log)
                del self._children[fire_id]
        return exited

    def _fail(self, conn: Connection, fire_id: int, now: int, message: str) -> None:
        conn.execute(
            F.update()
            .where((F.c.fire_id == fire_id) & (F.c.status == RUNNING))
            .values(status=FAILED, end_time=now, message=message)
        )

    def _reconcile(
        self,
        conn: Connection,
        now: int,
        exited: dict[int, tuple[int, Path]],
        report: TickReport,
    ) -> None:
        if exited:
            for e in conn.execute(
                sa.select(F.c.fire_id, F.c.status).where(F.c.fire_id.in_(list(exited)))
            ):
                code, log_path = exited[e.fire_id]
                if e.status == RUNNING:
                    tail = _tail(log_path)
                    self._fail(
                        conn,
                        e.fire_id,
                        now,
                        f"the pipeline's process exited with code {code} without reporting "
                        f"its end (log: {log_path})" + (f":\n{tail}" if tail else ""),
                    )
                    report.lost.append(e.fire_id)
                elif e.status == FINISHED:
                    log_path.unlink(missing_ok=True)
        rows = conn.execute(
            sa.select(
                F.c.fire_id, F.c.host, F.c.pid, F.c.heartbeat_time, F.c.start_time, F.c.fire_time
            ).where(F.c.status == RUNNING)
        ).all()
        for r in rows:
            if r.fire_id in self._children:
                continue
            beat = r.heartbeat_time or r.start_time or r.fire_time
            if r.host == self.host and r.pid is not None and not _alive(r.pid):
                why = (
                    f"its process {r.pid} on {r.host} is gone (did the server or machine restart?)"
                )
            elif beat + self.lost_after_ms < now:
                why = (
                    f"no heartbeat from its process ({r.pid} on {r.host}) since {timing.iso(beat)}"
                )
            else:
                continue
            self._fail(conn, r.fire_id, now, f"lost: {why}")
            report.lost.append(r.fire_id)

    # -- firing ---------------------------------------------------------------------------

    def _occupancy(self, conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
        """Fires running or queued, per target; and per schedule, its queued fire that
        is beyond max_active (one that waits for a slot rather than starting now)."""
        occupied: dict[str, int] = {}
        for target, n in conn.execute(
            sa.select(S.c.target, sa.func.count())
            .select_from(F.join(S, S.c.schedule_id == F.c.schedule_id))
            .where(F.c.status == RUNNING)
            .group_by(S.c.target)
        ):
            occupied[target] = int(n)
        waiting: dict[str, int] = {}
        for r in conn.execute(
            sa.select(F.c.fire_id, F.c.schedule_id, S.c.target, S.c.max_active)
            .join(S, S.c.schedule_id == F.c.schedule_id)
            .where(F.c.status == QUEUED)
            .order_by(F.c.fire_id)
        ):
            n = occupied.get(r.target, 0)
            if n >= r.max_active:
                waiting[r.schedule_id] = r.fire_id
            occupied[r.target] = n + 1
        return occupied, waiting

    def _fire_due(self, conn: Connection, now: int, report: TickReport) -> None:
        rows = conn.execute(sa.select(S).where(S.c.enabled.is_(True)).order_by(S.c.name)).all()
        if not rows:
            return
        occupied, waiting = self._occupancy(conn)

        def fire(r: Any, reason: str, scheduled: int | None, note: str | None) -> None:
            params = _params_of(r)
            active = occupied.get(r.target, 0)
            if active < r.max_active:
                status, message = QUEUED, note
            elif r.overlap == OVERLAP_SKIP:
                status = SKIPPED
                message = (
                    f"skipped: the pipeline already has {active} active fire(s) "
                    f"(max_active={r.max_active}, overlap='skip')"
                )
            elif r.schedule_id in waiting:
                status = SKIPPED
                message = (
                    f"skipped: fire {waiting[r.schedule_id]} is already waiting for a free "
                    f"slot (max_active={r.max_active}); it will run on the newest data"
                )
            else:
                status = QUEUED
                message = f"waiting: the pipeline is at max_active={r.max_active}"
                if note:
                    message = f"{note}; {message}"
            fire_id = insert_fire(
                conn,
                r.schedule_id,
                reason,
                status,
                now,
                params,
                scheduled_time=scheduled,
                message=message,
            )
            report.fired.append(fire_id)
            if status == SKIPPED:
                report.skipped.append(fire_id)
                return
            if active >= r.max_active:
                waiting[r.schedule_id] = fire_id
            occupied[r.target] = active + 1

        for r in rows:
            changes: dict[str, Any] = {}
            if r.cron:
                due = r.next_fire_time
                if due is None:
                    changes["next_fire_time"] = timing.next_slot(r.cron, r.timezone, now)
                elif due <= now:
                    slot = timing.last_slot(r.cron, r.timezone, now)
                    missed = timing.count_slots(r.cron, r.timezone, due, now)
                    note = None
                    if missed > 1:
                        many = f"{missed}+" if missed >= timing.MAX_COUNTED else str(missed)
                        note = (
                            f"catch-up: {many} slots from {timing.iso(due, r.timezone)} to "
                            f"{timing.iso(slot, r.timezone)} were missed; fired once"
                        )
                    fire(r, CRON, slot, note)
                    changes["next_fire_time"] = timing.next_slot(r.cron, r.timezone, now)
            if r.on_dataset:
                versions = conn.execute(
                    sa.select(dataset_versions.c.version)
                    .where(
                        (dataset_versions.c.name == r.on_dataset)
                        & (dataset_versions.c.version > r.dataset_version)
                    )
                    .order_by(dataset_versions.c.version)
                ).all()
                for (version,) in versions:
                    fire(r, f"{DATASET_PREFIX}{r.on_dataset}@{version}", None, None)
                if versions:
                    changes["dataset_version"] = int(versions[-1][0])
            if changes:
                conn.execute(S.update().where(S.c.schedule_id == r.schedule_id).values(**changes))

    def _take_queued(self, conn: Connection, now: int) -> list[int]:
        """Mark the queued fires that have room as running, oldest first."""
        running: dict[str, int] = {}
        for target, n in conn.execute(
            sa.select(S.c.target, sa.func.count())
            .select_from(F.join(S, S.c.schedule_id == F.c.schedule_id))
            .where(F.c.status == RUNNING)
            .group_by(S.c.target)
        ):
            running[target] = int(n)
        waiting = conn.execute(
            sa.select(F.c.fire_id, S.c.target, S.c.max_active)
            .join(S, S.c.schedule_id == F.c.schedule_id)
            .where(F.c.status == QUEUED)
            .order_by(F.c.fire_id)
        ).all()
        out = []
        for r in waiting:
            if running.get(r.target, 0) >= r.max_active:
                continue
            conn.execute(
                F.update()
                .where((F.c.fire_id == r.fire_id) & (F.c.status == QUEUED))
                .values(
                    status=RUNNING,
                    start_time=now,
                    heartbeat_time=now,
                    host=self.host,
                    pid=None,
                )
            )
            running[r.target] = running.get(r.target, 0) + 1
            out.append(int(r.fire_id))
        return out

    # -- starting a fire's process ----------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        """The environment of a fire's process: this one's, with the store's location
        made absolute (the process runs in the schedule's workdir)."""
        env = dict(os.environ)
        settings = self.store.settings
        db_url = settings.database_url
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            db_url = url.set(database=os.path.abspath(url.database)).render_as_string(
                hide_password=False
            )
        art = settings.artifacts_url
        env["OPSLOOP_HOME"] = str(Path(settings.home).absolute())
        env["OPSLOOP_DATABASE_URL"] = db_url
        env["OPSLOOP_ARTIFACTS"] = art if "://" in art else os.path.abspath(art)
        env["OPSLOOP_FIRE_HEARTBEAT"] = str(self.heartbeat)
        env.pop(ENV_ENABLED, None)
        return env

    def _launch(self, fire_id: int) -> bool:
        try:
            _fire, sched = self.service.fire_context(fire_id)
            if sched.workdir and not os.path.isdir(sched.workdir):
                raise FileNotFoundError(
                    f"the schedule's workdir {sched.workdir} does not exist on {self.host}"
                )
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"fire-{fire_id}.log"
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", FIRE_MODULE, str(fire_id)],
                    cwd=sched.workdir or None,
                    env=self.child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except Exception as exc:
            log.warning("could not start fire %s: %s", fire_id, exc)
            self.service.report(
                fire_id, status=FAILED, message=f"could not start the pipeline's process: {exc}"
            )
            return False
        self._children[fire_id] = _Child(proc, log_path)
        with self.db.write() as conn:
            conn.execute(F.update().where(F.c.fire_id == fire_id).values(pid=proc.pid))
        log.info("fire %s of schedule %r started (pid %s)", fire_id, sched.name, proc.pid)
        return True

    def wait_children(self, timeout: float | None = None) -> None:
        """Wait for the pipelines this scheduler started (for tests and orderly exits)."""
        for child in list(self._children.values()):
            child.proc.wait(timeout)


def _params_of(r: Any) -> dict[str, Any]:
    data = json.loads(r.params) if r.params else {}
    return data if isinstance(data, dict) else {}
