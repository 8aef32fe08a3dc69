"""Several processes logging to one run at once: every point stored, none twice."""

from __future__ import annotations

import multiprocessing as mp

from opsloop.core.config import Settings
from opsloop.store import Store
from opsloop.tracking.entities import Metric
from opsloop.tracking.service import TrackingService

PROCS = 8
POINTS = 5000


def _worker(args: tuple[str, str, str, int]) -> int:
    db_url, art, run_id, worker = args
    from pathlib import Path

    store = Store(Settings(home=Path(art), database_url=db_url, artifacts_url=art))
    svc = TrackingService(store)
    # Mixed batch sizes, as real clients send: single points and batches.
    sent = 0
    step = 0
    while sent < POINTS:
        n = 1 if sent % 2000 < 50 else min(250, POINTS - sent)
        svc.log_batch(
            run_id,
            [Metric(f"w{worker}", float(step + i), 1000 + step + i, step + i) for i in range(n)],
        )
        sent += n
        step += n
    store.close()
    return sent


def test_eight_processes_one_run(store: Store, db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    svc = TrackingService(store)
    run_id = svc.create_run("0").info.run_id
    ctx = mp.get_context("spawn")
    with ctx.Pool(PROCS) as pool:
        sent = pool.map(
            _worker, [(db_url, str(tmp_path / "artifacts"), run_id, w) for w in range(PROCS)]
        )
    assert sent == [POINTS] * PROCS
    # Every point stored once: each worker's series holds exactly its 5,000 steps.
    for w in range(PROCS):
        hist = svc.get_metric_history(run_id, f"w{w}").items
        assert [m.step for m in hist] == list(range(POINTS))
        assert [m.value for m in hist] == [float(i) for i in range(POINTS)]
    latest = {m.key: m for m in svc.get_run(run_id).metrics}
    assert {k: m.step for k, m in latest.items()} == {f"w{w}": POINTS - 1 for w in range(PROCS)}
