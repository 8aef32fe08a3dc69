"""Pipeline schedules: cron and dataset triggers, max_active, the lease, fire processes.

On SQLite and PostgreSQL (``store`` is parametrized over both). Cron timing uses a
chosen clock (``tick(now=...)``), never sleeps; fires that really run start a process
each (``python -m opsloop.pipelines.scheduling.fire``) running a module of the test's
folder, and the tests wait on their records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa

from opsloop.core.config import Settings
from opsloop.data import DatasetService
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.pipelines.scheduling import (
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SKIPPED,
    Fire,
    Scheduler,
    ScheduleService,
    target_of,
    timing,
)
from opsloop.store import Store
from opsloop.store.tables import pipeline_schedule_fires, pipeline_schedules
from opsloop.tracking.service import TrackingService
from tests.pipelines.schedule_flows import wait_until, write_flows

UTC = dt.UTC


def ms(*args: int, tz: dt.tzinfo = UTC) -> int:
    return round(dt.datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


class Clock:
    """A clock the test moves by hand (ms since the epoch)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def register(store: Store, name: str, seed: int) -> int:
    frame = pd.DataFrame({"x": [seed, seed + 1, seed + 2]})
    return DatasetService(store).register(frame, name).version


def fires(svc: ScheduleService, name: str) -> list[Fire]:
    """Oldest first."""
    return list(reversed(svc.history(name, limit=1000)))


# -- cron expressions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("0 0 32 * *", "day-of-month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * foo *", "month"),
        ("0 0 * * 8", "day-of-week"),
        ("0 0 * * funday", "day-of-week"),
        ("*/0 * * * *", "minute"),
        ("H * * * *", "minute"),
    ],
)
def test_a_bad_cron_field_is_named(expr: str, field: str) -> None:
    with pytest.raises(InvalidInput, match=f"the {field} field"):
        timing.check_cron(expr)


def test_cron_forms() -> None:
    assert timing.check_cron("  0   9 * *  MON-FRI ") == "0 9 * * MON-FRI"
    assert timing.check_cron("@Daily") == "@daily"
    for ok in ("*/15 9-17 * * 1-5", "0 0 1 jan,jul *", "5,35 */2 1-10/3 * sun", "@hourly"):
        assert timing.check_cron(ok)
    with pytest.raises(InvalidInput, match="has 6 field"):
        timing.check_cron("0 0 * * * *")
    with pytest.raises(InvalidInput, match="has 3 field"):
        timing.check_cron("* * *")
    with pytest.raises(InvalidInput, match="unknown shortcut"):
        timing.check_cron("@reboot")
    with pytest.raises(InvalidInput, match="never fires"):
        timing.check_cron("0 0 30 2 *")
    with pytest.raises(InvalidInput, match="non-empty"):
        timing.check_cron("")
    with pytest.raises(InvalidInput, match="unknown time zone"):
        timing.check_timezone("Mars/Olympus")


def test_slots_in_a_time_zone_across_daylight_saving() -> None:
    t = ms(2026, 1, 1, 10, 7, 30)
    assert timing.next_slot("*/15 * * * *", "UTC", t) == ms(2026, 1, 1, 10, 15)
    assert timing.last_slot("*/15 * * * *", "UTC", t) == ms(2026, 1, 1, 10, 0)
    on_slot = ms(2026, 1, 1, 10, 15)
    assert timing.last_slot("*/15 * * * *", "UTC", on_slot) == on_slot  # inclusive
    assert timing.next_slot("*/15 * * * *", "UTC", on_slot) == ms(2026, 1, 1, 10, 30)  # strict
    assert timing.count_slots("*/15 * * * *", "UTC", ms(2026, 1, 1, 10, 30), t + 2 * 3600_000) == 7
    berlin = ZoneInfo("Europe/Berlin")
    # 9:00 in Berlin is 8:00 UTC in winter and 7:00 UTC after the change on 29 March.
    before = timing.next_slot("0 9 * * *", "Europe/Berlin", ms(2026, 3, 28, 12, 0, tz=berlin))
    after = timing.next_slot("0 9 * * *", "Europe/Berlin", before)
    assert before == ms(2026, 3, 29, 7, 0)
    assert after == ms(2026, 3, 30, 7, 0)
    assert timing.iso(after, "Europe/Berlin") == "2026-03-30T09:00:00+02:00"


# -- records -------------------------------------------------------------------------------


def test_bad_input_is_refused_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    svc = ScheduleService(store)
    good = {"target": "flows:good", "name": "ok", "cron": "@daily"}

    def refused(match: str, **change: Any) -> None:
        args = {**good, **change}
        with pytest.raises(InvalidInput, match=match):
            svc.create(args.pop("target"), args.pop("name"), **args)

    refused("the hour field '25'", cron="0 25 * * *")
    refused("on_dataset must name a dataset", cron=None, on_dataset="")
    refused("on_dataset must name a dataset", cron=None, on_dataset="   ")
    refused("dataset name 'no good' is not valid", cron=None, on_dataset="no good")
    refused("has no trigger", cron=None)
    refused("is not MODULE:PIPELINE", target="flows.good")
    refused("is not MODULE:PIPELINE", target="flows:")
    refused("neither a module name", target="my flows:good")
    refused("is not a Python name", target="flows:good-one")
    refused("schedule name", name="bad name")
    refused("unknown time zone", timezone="Nowhere/Land")
    refused("JSON values", params={"when": dt.datetime(2026, 1, 1)})
    refused("unknown option 'retries'", options={"retries": 3})
    refused("'max_workers' must be a positive integer", options={"max_workers": 0})
    refused("max_active must be an integer of at least 1", max_active=0)
    refused("overlap must be", overlap="pile-up")
    refused("workdir must be an absolute path", workdir="relative/dir")
    assert svc.list_schedules() == []
    s = svc.create(
        "flows:good",
        "ok",
        on_dataset="not-yet-registered",
        params={"n": 2},
        options={"executor": "inline", "cache": False},
        workdir=str(tmp_path),
    )
    assert (s.on_dataset, s.dataset_version, s.cron, s.next_fire_time) == (
        "not-yet-registered",
        0,
        None,
        None,
    )
    with pytest.raises(Conflict, match="already exists"):
        svc.create("flows:other", "ok", cron="@hourly")
    with pytest.raises(NotFound, match="no schedule named 'missing'"):
        svc.get("missing")
    with pytest.raises(NotFound):
        svc.trigger("missing")
    assert [x.name for x in svc.list_schedules()] == ["ok"]
    assert svc.get("ok").target == "flows:good"  # the failed duplicate changed nothing
    svc.delete("ok")
    assert svc.list_schedules() == []


def test_cron_fires_at_its_slots_and_once_on_catch_up(store: Store) -> None:
    clock = Clock(ms(2026, 1, 1, 10, 0, 30))
    svc = ScheduleService(store, clock)
    s = svc.create("flows:good", "quarterly", cron="*/15 * * * *", max_active=100)
    assert s.next_fire_time == ms(2026, 1, 1, 10, 15)
    sched = Scheduler(store, clock=clock, lost_after=10**6, heartbeat=10**5)

    assert sched.tick(ms(2026, 1, 1, 10, 14, 59), start=False).fired == []
    first = sched.tick(ms(2026, 1, 1, 10, 15, 0, 200), start=False)
    assert len(first.fired) == 1
    assert sched.tick(ms(2026, 1, 1, 10, 15, 30), start=False).fired == []
    # The server was down from 10:16 to 12:07: seven slots (10:30 ... 12:00) fire once.
    late = sched.tick(ms(2026, 1, 1, 12, 7), start=False)
    assert len(late.fired) == 1
    history = fires(svc, "quarterly")
    assert [(f.reason, f.status) for f in history] == [("cron", QUEUED), ("cron", QUEUED)]
    assert history[0].scheduled_time == ms(2026, 1, 1, 10, 15)
    assert history[1].scheduled_time == ms(2026, 1, 1, 12, 0)
    assert history[1].message is not None and "7 slots" in history[1].message
    assert svc.get("quarterly").next_fire_time == ms(2026, 1, 1, 12, 15)

    # Paused, nothing fires; resumed, the slots missed meanwhile do not fire either.
    clock.now = ms(2026, 1, 1, 12, 8)
    svc.pause("quarterly")
    assert sched.tick(ms(2026, 1, 1, 13, 0), start=False).fired == []
    clock.now = ms(2026, 1, 1, 13, 1)
    assert svc.resume("quarterly").next_fire_time == ms(2026, 1, 1, 13, 15)
    assert sched.tick(ms(2026, 1, 1, 13, 2), start=False).fired == []
    assert len(sched.tick(ms(2026, 1, 1, 13, 15), start=False).fired) == 1

    # In a time zone: 9:00 in Berlin, summer time from 29 March (7:00 UTC).
    clock.now = ms(2026, 3, 28, 12, 0)
    svc.delete("quarterly")
    s = svc.create("flows:good", "berlin", cron="0 9 * * *", timezone="Europe/Berlin")
    assert s.next_fire_time == ms(2026, 3, 29, 7, 0)
    assert len(sched.tick(ms(2026, 3, 29, 7, 0), start=False).fired) == 1
    assert svc.get("berlin").next_fire_time == ms(2026, 3, 30, 7, 0)


def test_a_dataset_trigger_fires_once_per_new_version(store: Store) -> None:
    svc = ScheduleService(store)
    register(store, "sensors", 0)  # before the schedule: does not fire it
    svc.create("flows:good", "on-sensors", on_dataset="sensors", max_active=100)
    svc.create("flows:good", "on-later", on_dataset="later", max_active=100)
    sched = Scheduler(store)
    assert sched.tick(start=False).fired == []
    register(store, "sensors", 1)
    register(store, "other", 1)
    assert len(sched.tick(start=False).fired) == 1
    assert sched.tick(start=False).fired == []
    register(store, "sensors", 2)
    register(store, "sensors", 3)
    register(store, "sensors", 1)  # the same content again: not a new version
    register(store, "later", 1)  # a dataset that did not exist when the schedule was made
    assert len(sched.tick(start=False).fired) == 3
    assert [f.reason for f in fires(svc, "on-sensors")] == [
        "dataset:sensors@2",
        "dataset:sensors@3",
        "dataset:sensors@4",
    ]
    assert [f.reason for f in fires(svc, "on-later")] == ["dataset:later@1"]
    svc.pause("on-sensors")
    register(store, "sensors", 4)
    assert sched.tick(start=False).fired == []
    svc.resume("on-sensors")  # the version that came while paused does not fire
    assert sched.tick(start=False).fired == []
    register(store, "sensors", 5)
    sched.tick(start=False)
    assert fires(svc, "on-sensors")[-1].reason == "dataset:sensors@6"
    assert svc.get("on-sensors").dataset_version == 6


def test_max_active_queues_one_and_skips_the_rest(store: Store) -> None:
    svc = ScheduleService(store)
    svc.create("flows:good", "q", on_dataset="q", max_active=1)
    svc.create("flows:good", "s", on_dataset="s", max_active=1, overlap="skip")
    svc.create("flows:other", "free", on_dataset="s", max_active=2)
    sched = Scheduler(store)
    for seed in range(4):
        register(store, "q", seed)
    report = sched.tick(start=False)
    assert len(report.fired) == 4 and len(report.skipped) == 2
    got = [(f.reason, f.status) for f in fires(svc, "q")]
    assert got == [
        ("dataset:q@1", QUEUED),  # starts
        ("dataset:q@2", QUEUED),  # waits for the slot
        ("dataset:q@3", SKIPPED),  # one already waits
        ("dataset:q@4", SKIPPED),
    ]
    assert "fire" in (fires(svc, "q")[2].message or "") and "already waiting" in (
        fires(svc, "q")[2].message or ""
    )
    # Schedule "s" has the same target (flows:good): the pipeline is at its limit.
    register(store, "s", 0)
    sched.tick(start=False)
    assert [(f.status, "max_active=1" in (f.message or "")) for f in fires(svc, "s")] == [
        (SKIPPED, True)
    ]
    # Another pipeline has its own limit.
    assert [f.status for f in fires(svc, "free")] == [QUEUED]
    # A manual trigger always waits its turn.
    assert svc.trigger("q", {"n": 9}).status == QUEUED


# -- the lease --------------------------------------------------------------------------


def test_only_the_lease_holder_fires(store: Store) -> None:
    svc = ScheduleService(store)
    svc.create("flows:good", "leased", on_dataset="d", max_active=100)
    t0 = ms(2030, 1, 1)
    a = Scheduler(store, lease_ttl=30, clock=Clock(t0), lost_after=10**6, heartbeat=10**5)
    b = Scheduler(store, lease_ttl=30, clock=Clock(t0), lost_after=10**6, heartbeat=10**5)
    assert a.tick(t0, start=False).leader
    register(store, "d", 0)
    assert not b.tick(t0 + 1000, start=False).leader  # a holds it: b fires nothing
    assert len(a.tick(t0 + 2000, start=False).fired) == 1
    register(store, "d", 1)
    # a stops renewing (a server died): b takes over once the lease expired, not before.
    assert not b.tick(t0 + 31_000, start=False).leader
    taken = b.tick(t0 + 32_001, start=False)
    assert taken.leader and len(taken.fired) == 1
    assert not a.tick(t0 + 33_000, start=False).leader
    b.release()  # an orderly stop hands over at once
    assert a.tick(t0 + 34_000, start=False).leader
    assert [f.reason for f in fires(svc, "leased")] == ["dataset:d@1", "dataset:d@2"]


def test_racing_schedulers_fire_each_version_once(store: Store) -> None:
    svc = ScheduleService(store)
    svc.create("flows:good", "raced", on_dataset="r", max_active=1000)
    schedulers = [
        Scheduler(store, lease_ttl=1, interval=0.5, lost_after=10**6, heartbeat=10**5)
        for _ in range(3)
    ]
    rounds = 6
    barrier = threading.Barrier(len(schedulers))
    leaders: list[list[bool]] = [[] for _ in range(rounds)]
    t0 = ms(2030, 1, 1)

    def race(s: Scheduler) -> None:
        for i in range(rounds):
            barrier.wait(30)
            # Every round the lease has expired: all three try to take it at once.
            leaders[i].append(s.tick(t0 + i * 10_000, start=False).leader)
            barrier.wait(30)
            if s is schedulers[0]:
                register(store, "r", i)
            barrier.wait(30)

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [sum(round_) for round_ in leaders] == [1] * rounds
    reasons = [f.reason for f in fires(svc, "raced")]
    assert reasons == [f"dataset:r@{v}" for v in range(1, rounds)]


# -- fires that run -----------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """The embedded store only, for the tests whose pipeline processes run one after
    another (the PostgreSQL case of fire processes is covered by the test before)."""
    s = Store(
        Settings(
            home=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'opsloop.db'}",
            artifacts_url=str(tmp_path / "artifacts"),
        )
    )
    yield s
    s.close()


def _scheduler(store: Store) -> Scheduler:
    return Scheduler(store, interval=0.1, lease_ttl=30, heartbeat=0.5, lost_after=20)


def _settle(sched: Scheduler, svc: ScheduleService, fire_id: int) -> Fire:
    """Tick until the fire has ended."""

    def ended() -> bool:
        sched.tick()
        return svc.get_fire(fire_id).status in (FINISHED, FAILED, SKIPPED)

    wait_until(ended, timeout=90, every=0.1)
    return svc.get_fire(fire_id)


def test_fires_run_in_their_own_process_and_record_their_run(store: Store, tmp_path: Path) -> None:
    work = tmp_path / "proj"
    write_flows(work)
    out = tmp_path / "out"
    out.mkdir()
    svc = ScheduleService(store)
    opts = {"executor": "inline"}
    svc.create(
        "flows:good",
        "good",
        on_dataset="sensors",
        params={"n": 3, "out": str(out)},
        options=opts,
        workdir=str(work),
    )
    svc.create("flows:missing", "typo", on_dataset="sensors", options=opts, workdir=str(work))
    svc.create("flows:bad", "failing", on_dataset="sensors", options=opts, workdir=str(work))
    svc.create("flows.py:good", "by-file", cron="@yearly", options=opts, workdir=str(work))
    sched = _scheduler(store)
    register(store, "sensors", 0)
    manual = svc.trigger("by-file", {"n": 5, "out": str(out)})
    report = sched.tick()
    assert len(report.started) == 4
    ok, typo, failing = (fires(svc, n)[0] for n in ("good", "typo", "failing"))
    ok, typo, failing, manual = (
        _settle(sched, svc, f.fire_id) for f in (ok, typo, failing, manual)
    )

    assert ok.status == FINISHED, ok.message
    run = TrackingService(store).get_run(ok.run_id or "")
    assert run.info.status == "FINISHED"
    assert run.tags["opsloop.schedule"] == "good"
    assert run.tags["opsloop.schedule.reason"] == "dataset:sensors@1"
    assert run.params["n"] == "3"
    seen = json.loads((out / f"fire-{ok.fire_id}.json").read_text())
    assert seen["OPSLOOP_TRIGGER_DATASET"] == "sensors@1" and seen["sum"] == 3

    assert manual.status == FINISHED and manual.reason == "manual"
    assert json.loads((out / f"fire-{manual.fire_id}.json").read_text())["sum"] == 10

    assert typo.status == FAILED and typo.run_id is None
    assert "has no 'missing'" in (typo.message or "")
    assert failing.status == FAILED and failing.run_id is not None
    assert "bad batch" in (failing.message or "")
    assert TrackingService(store).get_run(failing.run_id).info.status == "FAILED"
    assert all(f.end_time and f.start_time and f.end_time >= f.start_time for f in (ok, typo))


def test_max_active_with_running_pipelines(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    work = tmp_path / "proj"
    write_flows(work)
    gate = tmp_path / "gate"
    svc = ScheduleService(store)
    svc.create(
        "flows:gated",
        "gated",
        on_dataset="g",
        params={"gate": str(gate)},
        options={"executor": "inline"},
        workdir=str(work),
    )
    sched = _scheduler(store)
    register(store, "g", 0)
    first = sched.tick()
    assert len(first.started) == 1
    wait_until(lambda: svc.get_fire(first.started[0]).run_id is not None)
    register(store, "g", 1)
    register(store, "g", 2)
    second = sched.tick()
    assert second.started == [] and len(second.skipped) == 1
    assert [f.status for f in fires(svc, "gated")] == [RUNNING, QUEUED, SKIPPED]
    gate.touch()
    one, two, three = fires(svc, "gated")
    assert _settle(sched, svc, one.fire_id).status == FINISHED
    assert _settle(sched, svc, two.fire_id).status == FINISHED
    assert svc.get_fire(three.fire_id).status == SKIPPED
    assert svc.get_fire(two.fire_id).start_time >= svc.get_fire(one.fire_id).end_time  # type: ignore[operator]


def _running_fire(store: Store, host: str, pid: int, heartbeat: int) -> int:
    """A fire row as a server that started a process for it left it."""
    with store.db.write() as conn:
        sid = conn.execute(sa.select(pipeline_schedules.c.schedule_id)).scalar_one()
        key = conn.execute(
            pipeline_schedule_fires.insert().values(
                schedule_id=sid,
                reason="manual",
                status=RUNNING,
                fire_time=heartbeat,
                start_time=heartbeat,
                heartbeat_time=heartbeat,
                params="{}",
                host=host,
                pid=pid,
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def test_a_restarted_server_finds_lost_fires(store: Store) -> None:
    svc = ScheduleService(store)
    svc.create("flows:good", "restarted", cron="@yearly", max_active=10)
    new = _scheduler(store)
    now = new.clock()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = _running_fire(store, new.host, dead.pid, now)  # died with the old server
        going = _running_fire(store, new.host, alive.pid, now)  # outlived it: still running
        silent = _running_fire(store, "elsewhere", 1, now - 60_000)  # its host went away
        beating = _running_fire(store, "elsewhere", 1, now)
        report = new.tick()
        assert sorted(report.lost) == [gone, silent]
        assert "is gone" in (svc.get_fire(gone).message or "")
        assert "no heartbeat" in (svc.get_fire(silent).message or "")
        assert {svc.get_fire(f).status for f in (gone, silent)} == {FAILED}
        assert {svc.get_fire(f).status for f in (going, beating)} == {RUNNING}
    finally:
        alive.kill()
        alive.wait()
    assert new.tick().lost == [going]


def test_a_child_that_dies_is_recorded_with_its_log(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    work = tmp_path / "proj"
    write_flows(work)
    svc = ScheduleService(store)
    svc.create(
        "flows:gated",
        "gated",
        cron="@yearly",
        params={"gate": str(tmp_path / "never")},
        options={"executor": "inline"},
        workdir=str(work),
    )
    sched = _scheduler(store)
    fire = svc.trigger("gated")
    assert sched.tick().started == [fire.fire_id]
    wait_until(lambda: svc.get_fire(fire.fire_id).run_id is not None)
    os.killpg(svc.get_fire(fire.fire_id).pid or 0, signal.SIGKILL)
    sched.wait_children(30)
    assert sched.tick().lost == [fire.fire_id]
    dead = svc.get_fire(fire.fire_id)
    assert dead.status == FAILED and "exited with code -9" in (dead.message or "")


# -- the Python API ------------------------------------------------------------------------


def test_python_api_schedules_a_pipeline_object(home: Path, tmp_path: Path) -> None:
    import importlib

    import opsloop
    from opsloop.pipelines import scheduling

    module = f"flows_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    write_flows(tmp_path / "pkgroot", module)
    sys.path.insert(0, str(tmp_path / "pkgroot"))
    try:
        flows = importlib.import_module(module)
    finally:
        sys.path.remove(str(tmp_path / "pkgroot"))
    assert target_of(flows.good) == (f"{module}:good", str((tmp_path / "pkgroot").resolve()))
    s = opsloop.pipelines.schedule(
        flows.good, "api", cron="0 3 * * *", params={"n": 2}, executor="inline", cache=False
    )
    assert (s.target, s.workdir, s.options) == (
        f"{module}:good",
        str((tmp_path / "pkgroot").resolve()),
        {"cache": False, "executor": "inline"},
    )
    assert [x.name for x in scheduling.list_schedules()] == ["api"]
    assert not scheduling.pause("api").enabled
    assert scheduling.resume("api").enabled
    fire = scheduling.trigger_now("api", {"n": 4})
    assert (fire.reason, fire.status, fire.params) == ("manual", QUEUED, {"n": 4})
    assert [f.fire_id for f in scheduling.history("api")] == [fire.fire_id]
    assert scheduling.get("api").last_fire == fire
    with pytest.raises(InvalidInput, match="schedule a @pipeline"):
        opsloop.pipelines.schedule(flows.not_a_pipeline, "x", cron="@daily")
    main_pipe = opsloop.pipeline(lambda: None)
    main_pipe.fn.__module__ = "__main__"
    with pytest.raises(InvalidInput, match="define it at the top level of a module"):
        opsloop.pipelines.schedule(main_pipe, "y", cron="@daily")
    scheduling.delete("api")
    with pytest.raises(NotFound):
        scheduling.history("api")
