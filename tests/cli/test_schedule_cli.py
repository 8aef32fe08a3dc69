"""``opsloop schedule``: create, list, show, pause, resume, trigger, history, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsloop.cli.main import app
from opsloop.errors import Conflict, InvalidInput, NotFound
from tests.cli_process import opsloop
from tests.pipelines.schedule_flows import write_flows


@pytest.fixture
def project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a flows module, as the current folder."""
    work = tmp_path / "proj"
    module = f"cliflows_{tmp_path.name}".replace("-", "_")
    write_flows(work, module)
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.syspath_prepend(str(work))
    return work


def _ok(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _refused(*args: str) -> BaseException:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code != 0 and result.exception is not None
    return result.exception


def test_schedule_commands(project: Path) -> None:
    module = next(project.glob("cliflows_*.py")).stem
    out = _ok(
        "schedule", "create", "nightly", f"{module}:good", "--cron", "0 3 * * *",
        "-p", "n=4", "--executor", "inline", "--timezone", "Europe/Berlin",
    )  # fmt: skip
    assert "schedule 'nightly' created" in out and "next cron fire" in out
    assert "+01:00" in out or "+02:00" in out
    _ok("schedule", "create", "on-data", f"{module}:good", "--on-dataset", "sensors", "--paused")
    listed = _ok("schedule", "ls")
    assert "nightly" in listed and "on-data" in listed and "paused" in listed
    assert "cron '0 3 * * *' (Europe/Berlin)" in listed

    shown = _ok("schedule", "show", "nightly")
    assert f"{module}:good" in shown and "{'n': 4}" in shown and str(project) in shown
    assert "queued" in _ok("schedule", "trigger", "nightly", "-p", "n=6")
    history = _ok("schedule", "history", "nightly")
    assert "manual" in history and "queued" in history
    assert "paused" in _ok("schedule", "pause", "nightly")
    assert "resumed" in _ok("schedule", "resume", "nightly")
    assert "deleted" in _ok("schedule", "delete", "on-data")
    assert "on-data" not in _ok("schedule", "ls")

    err = _refused("schedule", "create", "x", f"{module}:good", "--cron", "0 0 * * 9")
    assert isinstance(err, InvalidInput) and "day-of-week field '9'" in err.message
    err = _refused("schedule", "create", "x", f"{module}:good", "--on-dataset", "")
    assert isinstance(err, InvalidInput) and "on_dataset" in err.message
    err = _refused("schedule", "create", "x", f"{module}:nope", "--cron", "@daily")
    assert isinstance(err, InvalidInput) and "has no 'nope'" in err.message
    err = _refused("schedule", "create", "x", f"{module}:not_a_pipeline", "--cron", "@daily")
    assert isinstance(err, InvalidInput) and "not an @opsloop.pipeline" in err.message
    err = _refused("schedule", "create", "nightly", f"{module}:good", "--cron", "@daily")
    assert isinstance(err, Conflict)
    assert isinstance(_refused("schedule", "history", "missing"), NotFound)
    assert "nightly" in _ok("schedule", "ls") and "x" not in _ok("schedule", "ls").split()


def test_errors_exit_with_their_code(tmp_path: Path) -> None:
    bad = opsloop(
        *("schedule", "create", "x", "flows:good", "--cron", "*/5 * * 13 *", "--no-check"),
        home=tmp_path / "home",
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "the month field '13'" in bad.stderr
