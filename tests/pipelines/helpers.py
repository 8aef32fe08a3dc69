"""Reading back what a pipeline run recorded: its step runs and their artifacts."""

from __future__ import annotations

import sqlalchemy as sa

from opsloop.store import Store
from opsloop.store.tables import runs
from opsloop.tracking.entities import Run
from opsloop.tracking.service import TrackingService, artifact_path_of


def step_runs(store: Store, pipeline_run_id: str) -> dict[str, Run]:
    """The runs nested under a pipeline's run, by step name."""
    svc = TrackingService(store)
    with store.db.read() as conn:
        ids = [
            r.run_uuid
            for r in conn.execute(
                sa.select(runs.c.run_uuid).where(runs.c.parent_run_id == pipeline_run_id)
            )
        ]
    found = [svc.get_run(i) for i in ids]
    return {r.tags["opsloop.step"]: r for r in found}


def artifacts(store: Store, run: Run) -> dict[str, bytes]:
    """Every artifact of a run, by its path relative to the run's artifact root."""
    root = artifact_path_of(run.info.artifact_uri)
    assert root is not None
    return {
        fi.path[len(root) + 1 :]: store.artifacts.get_bytes(fi.path)
        for fi in store.artifacts.walk(root)
    }


def run_count(store: Store) -> int:
    with store.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())
