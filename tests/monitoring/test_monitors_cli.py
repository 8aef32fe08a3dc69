"""``opsloop monitor create|ls|show|run|results|pause|resume|delete`` in process, on the
embedded store: a drifted log alerts and names the column; bad input is refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from opsloop.cli.main import app
from opsloop.errors import InvalidInput, NotFound


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from opsloop.data.service import DatasetService
    from opsloop.serving.predictions import PredictionWriter
    from opsloop.store import default_store, reset_default_store

    monkeypatch.setenv("OPSLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPSLOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPSLOOP_ARTIFACTS", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    reset_default_store()
    store = default_store()
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"temp": rng.normal(20, 2, 1000), "site": rng.choice(["a", "b"], 1000)})
    DatasetService(store).register(ref, "sensors")
    now = time.time()
    with PredictionWriter(store, start=False) as w:
        for i in range(200):
            w.log("model", 1, f"r{i}", {"temp": float(rng.normal(20, 2)),
                                        "site": str(rng.choice(["a", "b", "c"]))},
                  0.5, 1.0, now - 600 + i)  # fmt: skip
        w.flush()
    yield tmp_path
    reset_default_store()


def _ok(*args: str) -> str:
    result = CliRunner().invoke(app, ["monitor", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _refused(*args: str) -> BaseException:
    result = CliRunner().invoke(app, ["monitor", *args])
    assert result.exit_code != 0 and result.exception is not None, result.output
    return result.exception


def test_monitor_commands(cli_home: Path) -> None:
    out = _ok("create", "m", "-d", "model", "--reference", "sensors@1", "--every", "1h",
              "--window", "20m", "--no-multivariate")  # fmt: skip
    assert "input_drift" in out and "shorter than every" in out
    run = json.loads(_ok("run", "m", "--json"))
    # "c" is a category the reference never saw: a data signal on site, named
    assert run["status"] == "alert" and "site" in run["message"], run
    assert "site" in _ok("results", "m", "--alerts")
    assert "alert" in _ok("ls") and "sensors@1" in _ok("show", "m")
    csv = cli_home / "m.csv"
    _ok("results", "m", "--csv", str(csv))
    assert set(pd.read_csv(csv)["signal"]) >= {"temp", "site"}
    assert "paused" in _ok("pause", "m") + _ok("ls")
    assert "resumed" in _ok("resume", "m")
    assert isinstance(_refused("create", "x", "-d", "model", "--reference", "sensors@1",
                               "--every", "often"), InvalidInput)  # fmt: skip
    assert isinstance(_refused("create", "x", "-d", "model", "--reference", "sensors@1",
                               "--metric", "accuracy"), InvalidInput)  # fmt: skip
    assert isinstance(_refused("create", "x", "-d", "ghost", "--reference", "sensors@1"), NotFound)
    assert isinstance(_refused("run", "ghost"), NotFound)
    _ok("delete", "m")
    assert isinstance(_refused("show", "m"), NotFound)
