"""The fluent API on the embedded store: runs, buffered metrics, artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import opsloop
from opsloop.errors import InvalidInput, InvalidState, PathOutsideRoot


def test_start_run_logs_everything(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    d = tmp_path / "folder"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.txt").write_text("a")
    with opsloop.start_run(experiment="exp", run_name="r1", tags={"team": "a"}) as run:
        opsloop.log_params({"lr": 0.01, "layers": 3})
        for step in range(2500):
            opsloop.log_metric("loss", 1.0 / (step + 1), step=step)
        opsloop.log_metrics({"acc": 0.9, "nan": math.nan}, step=0)
        # numpy scalars, as training loops pass them
        opsloop.log_metric("np", np.float32(0.5), step=np.int64(3))
        opsloop.log_artifact(f)
        opsloop.log_artifacts(d, "data")
        opsloop.log_text("x", "texts/x.txt")
    got = opsloop.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.params == {"lr": "0.01", "layers": "3"}
    assert got.tags["team"] == "a"
    latest = got.metrics_dict
    assert latest["loss"] == pytest.approx(1 / 2500) and math.isnan(latest["nan"])
    assert latest["np"] == 0.5
    from opsloop.store import default_store
    from opsloop.tracking.service import TrackingService

    hist = TrackingService(default_store()).get_metric_history(run.run_id, "loss").items
    assert [m.step for m in hist] == list(range(2500))
    root = got.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    arts = default_store().artifacts
    assert arts.get_bytes(f"{root}/notes.txt") == b"hello"
    assert arts.get_bytes(f"{root}/data/sub/a.txt") == b"a"
    assert arts.get_bytes(f"{root}/texts/x.txt") == b"x"


def test_nested_runs_and_failure_status(home: Path) -> None:
    with pytest.raises(RuntimeError), opsloop.start_run(experiment="e") as parent:
        with opsloop.start_run(nested=True) as child:
            opsloop.log_metric("m", 1.0)
        raise RuntimeError("training blew up")
    assert opsloop.get_run(parent.run_id).info.status == "FAILED"
    c = opsloop.get_run(child.run_id)
    assert c.info.parent_run_id == parent.run_id and c.info.status == "FINISHED"
    assert c.info.experiment_id == opsloop.get_run(parent.run_id).info.experiment_id


def test_misuse_is_refused(home: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidState):
        opsloop.log_metric("m", 1.0)
    with opsloop.start_run():
        with pytest.raises(InvalidState):
            opsloop.start_run()
        with pytest.raises(InvalidInput):
            opsloop.log_metric("bad name!", 1.0)
        with pytest.raises(InvalidInput):
            opsloop.log_metric("m", "not a number")  # type: ignore[arg-type]
        opsloop.log_param("p", 1)
        with pytest.raises(InvalidInput):
            opsloop.log_param("p", 2)
        with pytest.raises(PathOutsideRoot):
            opsloop.log_text("x", "../escape.txt")
        with pytest.raises(InvalidInput):
            opsloop.log_artifact(tmp_path / "missing.txt")


def test_active_runs_are_per_thread(home: Path) -> None:
    import threading

    seen: list[object] = []
    with opsloop.start_run() as run:
        t = threading.Thread(target=lambda: seen.append(opsloop.active_run()))
        t.start()
        t.join()
        assert opsloop.active_run() is not None
        assert opsloop.active_run().info.run_id == run.run_id  # type: ignore[union-attr]
    assert seen == [None]
