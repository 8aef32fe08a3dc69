"""``opsloop events ls|show``: a real process on a store of the test's own."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from opsloop.core.config import Settings
from opsloop.store import Store
from opsloop.store.events import record_event
from tests.cli_process import opsloop


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return opsloop("events", *args, home=home, env={"COLUMNS": "250"}, check=False)


def test_events_ls_and_show(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = Store(
        Settings(
            home=home,
            database_url=f"sqlite:///{home / 'opsloop.db'}",
            artifacts_url=str(home / "artifacts"),
        )
    )
    now = int(time.time() * 1000)
    try:
        old = record_event(
            store.db, "monitor.alert", "long ago", source="m", time_ms=now - 30 * 86_400_000
        )
        ids = [
            record_event(
                store.db,
                kind,
                f"event {i}",
                source="test",
                subject="churn",
                payload={"i": i},
                time_ms=now - 1000 * (10 - i),
            )
            for i, kind in enumerate(["monitor.alert", "signal.anomaly", "log.anomaly"] * 2)
        ]
    finally:
        store.close()

    out = _run(home, "ls")
    assert out.returncode == 0, out.stderr
    assert "6 event(s)" in out.stdout and "long ago" not in out.stdout  # the last 7 days
    assert _run(home, "ls", "--since", "60d").stdout.count("event") >= 7

    lines = _run(home, "ls", "--kind", "monitor.*", "--json", "--limit", "1").stdout.splitlines()
    (newest,) = [json.loads(x) for x in lines]
    assert newest["event_id"] == ids[3] and newest["kind"] == "monitor.alert"
    both = _run(home, "ls", "-k", "log.anomaly", "-k", "signal.anomaly", "--json").stdout
    assert [json.loads(x)["kind"] for x in both.splitlines()].count("log.anomaly") == 2

    shown = json.loads(_run(home, "show", str(ids[0])).stdout)
    assert shown["payload"] == {"i": 0} and shown["subject"] == "churn"
    assert json.loads(_run(home, "show", str(old)).stdout)["message"] == "long ago"

    missing = _run(home, "show", "9999")
    assert missing.returncode == 3 and "no event with id 9999" in missing.stderr
    bad = _run(home, "ls", "--since", "yesterday")
    assert bad.returncode == 2 and "a time is ms since the epoch" in bad.stderr
