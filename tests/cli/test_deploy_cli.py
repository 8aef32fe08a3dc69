"""``opsloop deploy``: create, update, promote, rollback, ls, show, history, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsloop.cli.main import app
from opsloop.errors import Conflict, InvalidInput, InvalidState, NotFound
from opsloop.registry.service import RegistryService


@pytest.fixture
def registry(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RegistryService]:
    """The CLI's default store on the test's database, with model 'churn' v1..v3."""
    from opsloop.store import default_store, reset_default_store

    monkeypatch.setenv("OPSLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPSLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("OPSLOOP_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("OPSLOOP_USER", "cli-tester")
    monkeypatch.setenv("COLUMNS", "250")
    reset_default_store()
    reg = RegistryService(default_store())
    reg.create_registered_model("churn")
    for _ in range(3):
        reg.create_model_version(
            "churn", "mlflow-artifacts:/0/x", flavor="sklearn", signature="{}", environment="{}"
        )
    reg.set_registered_model_alias("churn", "production", 1)
    yield reg
    reset_default_store()


def _ok(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _refused(*args: str) -> BaseException:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code != 0 and result.exception is not None, result.output
    return result.exception


def test_deploy_commands(registry: RegistryService) -> None:
    out = _ok(
        "deploy", "create", "churn-api", "models:/churn@production", "--canary", "2",
        "--share", "20", "--set", "max_batch_size=64", "--set", "log_sample_rate=0.5",
        "-m", "first release",
    )  # fmt: skip
    assert "created" in out and "v1 80%, v2 20%" in out
    _ok("deploy", "create", "pinned", "churn", "--version", "3")
    listed = _ok("deploy", "ls")
    assert "churn-api" in listed and "models:/churn@production" in listed
    assert "pinned" in listed and "models:/churn/3" in listed

    out = _ok("deploy", "update", "churn-api", "--share", "50", "--shadow", "3", "-m", "more")
    assert "v1 50%, v2 50%, shadow v3" in out
    shown = _ok("deploy", "show", "churn-api")
    assert "canary  v2  50%" in shown and "shadow  v3" in shown
    assert '"max_batch_size": 64' in shown and "predictions/churn-api/" in shown
    out = _ok("deploy", "update", "churn-api", "--no-shadow", "--unset", "log_sample_rate")
    assert "shadow" not in out

    out = _ok("deploy", "promote", "churn-api", "-m", "v2 is better")
    assert "promoted" in out and "v2 100%" in out
    assert registry.get_model_version_by_alias("churn", "production").version == "2"
    out = _ok("deploy", "rollback", "churn-api", "-m", "v2 drifts")
    assert "rolled back" in out and "v1 100%" in out
    assert registry.get_model_version_by_alias("churn", "production").version == "1"

    history = _ok("deploy", "history", "churn-api")
    for words in ("create", "update", "promote", "rollback", "cli-tester",
                  "first release", "v2 is better", "v2 drifts"):  # fmt: skip
        assert words in history, words
    assert history.index("rollback") < history.index("promote")  # newest first

    err = _refused("deploy", "create", "churn-api", "churn", "--version", "1")
    assert isinstance(err, Conflict)
    err = _refused(
        "deploy", "create", "x", "churn", "--version", "1", "--canary", "2", "--share", "100"
    )
    assert isinstance(err, InvalidInput) and "between 0 and 100" in err.message
    err = _refused("deploy", "create", "x", "churn", "--version", "9")
    assert isinstance(err, NotFound) and "no version 9" in err.message
    err = _refused("deploy", "create", "x", "churn", "--version", "1", "--set", "bogus=1")
    assert isinstance(err, InvalidInput) and "unknown serving setting 'bogus'" in err.message
    err = _refused("deploy", "update", "churn-api", "--no-canary", "--canary", "2")
    assert isinstance(err, InvalidInput)
    err = _refused("deploy", "promote", "churn-api")
    assert isinstance(err, InvalidState) and "no canary to promote" in err.message
    err = _refused("deploy", "rollback", "pinned")
    assert isinstance(err, InvalidState) and "no previous stable version" in err.message
    assert isinstance(_refused("deploy", "show", "missing"), NotFound)
    assert "x" not in _ok("deploy", "ls").split()  # nothing half-written

    _ok("deploy", "update", "pinned", "--set", "port=18099")
    shown = _ok("deploy", "show", "pinned")
    assert "server: port 18099, not running" in shown  # no opsloop server runs here
    assert "deleted" in _ok("deploy", "delete", "pinned", "-m", "gone")
    assert "pinned" not in _ok("deploy", "ls")
    assert isinstance(_refused("deploy", "delete", "pinned"), NotFound)


def test_errors_exit_with_their_code(registry: RegistryService) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "opsloop.cli.main", "deploy", "rollback", "missing"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == NotFound.exit_code
    assert "deployment 'missing' does not exist" in done.stderr
