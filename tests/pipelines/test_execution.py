"""Executing steps: in parallel, retried, timed out, failing, and resuming."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsloop.errors import NotFound
from opsloop.pipelines import LocalExecutor, PipelineFailed, pipeline, run, step
from opsloop.pipelines.cache import entry_path
from opsloop.store import Store
from opsloop.tracking.service import TrackingService
from tests.pipelines.helpers import artifacts, step_runs

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def two_workers() -> Iterator[LocalExecutor]:
    with LocalExecutor(max_workers=2) as ex:
        ex.warm()
        yield ex


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@step
def nap(i: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return i


@step
def start(x: int) -> int:
    return x


@step
def add(a: int, b: int) -> int:
    return a + b


@sqlite_only
def test_independent_steps_run_in_parallel(store: Store, two_workers: LocalExecutor) -> None:
    @pipeline
    def two_naps():
        nap(1)
        nap(2)

    t0 = time.perf_counter()
    r = run(two_naps, store=store, executor=two_workers, cache=False)
    elapsed = time.perf_counter() - t0
    assert r.ok
    assert all(0.9 < s.duration < 1.5 for s in r.steps.values())
    # One after the other they would take 2 s or more (the margin is for a busy machine).
    assert elapsed < 1.95, f"two 1 s steps took {elapsed:.2f} s on two workers"
    runs = step_runs(store, r.run_id).values()
    a, b = sorted(runs, key=lambda x: x.info.start_time)
    assert b.info.start_time < (a.info.end_time or 0)  # they overlapped


@step(retries=2, retry_backoff=0.05)
def flaky(counter: str) -> int:
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    print(f"attempt {n + 1}")
    if n < 2:
        raise RuntimeError(f"attempt {n + 1} fails")
    return n + 1


@sqlite_only
@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_step_that_fails_twice_then_succeeds(store: Store, tmp_path: Path, executor: str) -> None:
    @pipeline
    def p(counter: str):
        add(flaky(counter), 1)

    t0 = time.perf_counter()
    r = run(p, {"counter": str(tmp_path / "n")}, store=store, executor=executor)
    assert r.ok and r.output("add") == 4
    assert r.steps["flaky"].attempts == 3
    assert time.perf_counter() - t0 >= 0.05 + 0.1  # backoff: 0.05 s, then 0.1 s
    flaky_run = step_runs(store, r.run_id)["flaky"]
    assert flaky_run.info.status == "FINISHED" and flaky_run.tags["opsloop.attempts"] == "3"
    logs = artifacts(store, flaky_run)
    out = logs["logs/stdout.txt"].decode()
    assert "--- attempt 1 ---\nattempt 1\n--- attempt 2 ---\nattempt 2\n" in out
    assert "RuntimeError: attempt 2 fails" in logs["logs/stderr.txt"].decode()
    assert "logs/traceback.txt" not in logs


@step(timeout=0.5, retries=1, retry_backoff=0.0)
def stuck(pidfile: str, seconds: float) -> int:
    with open(pidfile, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return 1


@sqlite_only
def test_a_step_over_its_timeout_is_killed(store: Store, tmp_path: Path) -> None:
    @pipeline
    def p(pidfile: str, seconds: float):
        add(stuck(pidfile, seconds), 1)

    pidfile = tmp_path / "pids"
    t0 = time.perf_counter()
    r = run(p, {"pidfile": str(pidfile), "seconds": 30}, store=store, raise_on_failure=False)
    assert time.perf_counter() - t0 < 10
    s = r.steps["stuck"]
    assert (s.status, s.attempts) == ("FAILED", 2)
    assert "took longer than its timeout of 0.5 s and was killed" in (s.error or "")
    assert r.steps["add"].status == "SKIPPED"
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    # killed and reaped: not running, and not left as zombies
    assert not any(_alive(pid) for pid in pids)
    # a step within its timeout runs normally in its own process
    ok = run(p, {"pidfile": str(pidfile), "seconds": 0.01}, store=store)
    assert ok.output("add") == 2


@sqlite_only
def test_inline_timeout_abandons_the_attempt(store: Store, tmp_path: Path) -> None:
    @pipeline
    def p():
        stuck.options(retries=0, timeout=0.2)(str(tmp_path / "pids"), 1.0)

    r = run(p, store=store, executor="inline", raise_on_failure=False)
    assert r.steps["stuck"].status == "FAILED"
    assert "abandoned" in (r.steps["stuck"].error or "")


@step
def boom(x: int, flag: str) -> int:
    print("about to fail")
    if Path(flag).exists():
        raise ValueError(f"bad value {x}")
    return x * 10


@step(outputs=2)
def half_stored(x: int) -> tuple[int, object]:
    import threading

    return x, threading.Lock()  # the second output cannot be stored


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_failure_stops_downstream_and_resume_hits_the_cache(
    store: Store, tmp_path: Path, executor: str
) -> None:
    flag = tmp_path / "fail"
    flag.touch()

    @pipeline
    def p(flag: str):
        a = start(4)
        b = boom(a, flag)
        add(b, 1)  # downstream of the failure: not run
        add(a, 2)  # another branch: runs
        half_stored(a)

    with pytest.raises(
        PipelineFailed, match=r"step 'boom' failed: ValueError: bad value 4"
    ) as info:
        run(p, {"flag": str(flag)}, store=store, executor=executor)
    r = info.value.result
    assert r.status == "FAILED"
    assert {n: s.status for n, s in r.steps.items()} == {
        "start": "FINISHED",
        "boom": "FAILED",
        "add": "SKIPPED",
        "add_2": "FINISHED",
        "half_stored": "FAILED",
    }
    assert r.steps["add"].run_id is None
    runs = step_runs(store, r.run_id)
    assert set(runs) == {"start", "boom", "add_2", "half_stored"}  # no run for the skipped
    failed = runs["boom"]
    assert failed.info.status == "FAILED"
    assert failed.tags["opsloop.error"] == "ValueError: bad value 4"
    files = artifacts(store, failed)
    tb = files["logs/traceback.txt"].decode()
    assert "Traceback" in tb and 'raise ValueError(f"bad value {x}")' in tb
    assert files["logs/stdout.txt"] == b"about to fail\n"
    # nothing of a failed step is visible: no outputs, no cache entry
    assert not [p for p in files if p.startswith("outputs/")]
    assert not [p for p in artifacts(store, runs["half_stored"]) if p.startswith("outputs/")]
    for name in ("boom", "half_stored"):
        with pytest.raises(NotFound):
            store.artifacts.stat(entry_path(r.steps[name].cache_key or ""))
    prun = TrackingService(store).get_run(r.run_id)
    assert prun.info.status == "FAILED"
    assert prun.tags["opsloop.steps.skipped"] == "1"

    # fixed (same code, params and inputs): the re-run resumes from the cache
    flag.unlink()
    again = run(p, {"flag": str(flag)}, store=store, executor=executor, raise_on_failure=False)
    assert {n: s.cache_hit for n, s in again.steps.items()} == {
        "start": True,
        "boom": False,
        "add": False,
        "add_2": True,
        "half_stored": False,
    }
    assert again.output("add") == 41


@step
def dies(x: int) -> int:
    os._exit(3)


@sqlite_only
def test_a_worker_that_dies_fails_its_step_and_the_pool_recovers(
    store: Store, two_workers: LocalExecutor
) -> None:
    @pipeline
    def p():
        dies(start(1))

    r = run(p, store=store, executor=two_workers, raise_on_failure=False, cache=False)
    assert r.steps["dies"].status == "FAILED"
    assert "WorkerLost" in (r.steps["dies"].error or "")
    assert r.steps["dies"].attempts == 1  # the first loss was retried free of charge

    @pipeline
    def fine():
        add(start(1), 2)

    assert run(fine, store=store, executor=two_workers, cache=False).output("add") == 3
