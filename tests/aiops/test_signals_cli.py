"""``opsloop signals``: in-process (Typer's runner, on a store of the test's own) and once
as a user runs it, a real process, for the exit code and message of an error."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_process import opsloop

T0 = 1_700_000_000_000


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(home: Path, *args: str, stdin: str | None = None) -> Result:
    """The command in this process; an opsloop error gives its exit code and message
    as ``main()`` prints them."""
    from typer.testing import CliRunner

    from opsloop.cli.signals import app
    from opsloop.errors import OpsloopError

    r = CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})
    if isinstance(r.exception, OpsloopError):
        return Result(r.exception.exit_code, r.stdout, f"error: {r.exception.message}")
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return Result(r.exit_code, r.stdout, "")


def test_an_error_exits_with_its_code_and_message(tmp_path: Path) -> None:
    bad = json.dumps([{"name": "queue_depth", "value": 1}, {"name": "queue_depth", "value": "x"}])
    r = opsloop(
        *("signals", "push", "-f", "-"),
        home=tmp_path / "home",
        env={"COLUMNS": "200"},
        input=bad,
        check=False,
    )
    assert r.returncode == 2 and "points[1].value" in r.stderr, r.stderr


def test_push_query_limits_and_targets(home: Path) -> None:
    points = "\n".join(
        json.dumps(
            {
                "name": "disk_used_percent",
                "labels": {"mount": "/"},
                "timestamp": T0 + i * 60_000,
                "value": 50 + i,
            }
        )
        for i in range(30)
    )
    r = run(home, "push", "-f", "-", stdin=points)
    assert r.returncode == 0, r.stderr
    assert "stored 30 point(s) in 1 series (1 new)" in r.stdout
    r = run(home, "push", "queue_depth", "12", "-l", "q=jobs", "--time", str(T0))
    assert r.returncode == 0, r.stderr
    # A bad point: exit 2, the point named, nothing of the batch stored.
    bad = json.dumps([{"name": "queue_depth", "value": 1}, {"name": "queue_depth", "value": "x"}])
    r = run(home, "push", "-f", "-", stdin=bad)
    assert r.returncode == 2 and "points[1].value" in r.stderr, r.stderr
    r = run(home, "push", "queue_depth", "many")
    assert r.returncode == 2 and "number" in r.stderr
    r = run(home, "query", 'queue_depth{q="jobs"}', "--since", "0", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["name,q,timestamp,value", f"queue_depth,jobs,{T0},12.0"]
    r = run(
        home,
        "limit",
        "add",
        'disk_used_percent{mount="/"}',
        "--above",
        "90",
        "--horizon",
        "2h",
        "--name",
        "disk",
    )
    assert r.returncode == 0, r.stderr
    r = run(home, "limit", "forecast", "disk")
    assert r.returncode == 0, r.stderr
    assert "forecast" in r.stdout and "60" in r.stdout  # +60/h, crossing in 11 min
    r = run(home, "limit", "check")
    assert r.returncode == 0 and "(event " in r.stdout, r.stdout
    r = run(home, "scrape", "add", "http://127.0.0.1:9/metrics", "--every", "30s", "--job", "x")
    assert r.returncode == 0, r.stderr
    r = run(home, "scrape", "ls")
    assert "http://127.0.0.1:9/metrics" in r.stdout and "30s" in r.stdout
    r = run(home, "scrape", "add", "ftp://nope")
    assert r.returncode == 2 and "http(s) URL" in r.stderr
    r = run(home, "ls")
    assert "disk_used_percent" in r.stdout and "31 points" in r.stdout
