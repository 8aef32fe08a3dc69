"""The shell face: help, the main job, migrations, errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli_process import opsloop


def _opsloop(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return opsloop(*args, home=home, env={"COLUMNS": "200"}, check=check, timeout=300)


def test_help_lists_commands(tmp_path: Path) -> None:
    out = _opsloop("--help", home=tmp_path).stdout
    for cmd in ("demo", "server", "db", "runs", "models"):
        assert cmd in out


def test_demo_runs_twice_on_a_fresh_store(tmp_path: Path) -> None:
    home = tmp_path / "store"
    first = _opsloop("demo", home=home)
    assert "registered: demo-classifier version 1" in first.stdout
    assert "100% agree" in first.stdout
    assert str(home) in first.stdout
    assert "9 steps, 0 from the cache" in first.stdout
    # deployed, served, and every request in the prediction log
    assert "200 single-row requests to /invocations: p50" in first.stdout
    assert "100% answers as the model" in first.stdout
    assert "prediction log: 440 rows" in first.stdout
    # half the traffic shifted: the monitor names the shifted columns, and only there
    shifted = next(line for line in first.stdout.splitlines() if "shifted window" in line)
    assert "drift in 3 column(s): mean radius, mean texture, worst area" in shifted
    assert "over the steady window (200 rows): ok" in first.stdout
    # a latency fault swapped in without a restart, and a burst of new error lines: the
    # detectors flag both after the fault
    _check_detection(first.stdout)
    assert "demo-breast-cancer@1 (569 rows)" in first.stdout
    second = _opsloop("demo", home=home)
    # The data pipeline is served from the cache the second time; the same data is
    # the same dataset version.
    assert "9 steps, 9 from the cache" in second.stdout
    assert "demo-breast-cancer@1 (569 rows)" in second.stdout
    assert "served from the cache: demo-classifier version 1" in second.stdout
    assert "prediction log: 440 rows" in second.stdout  # this run's window
    assert "over the steady window (200 rows): ok" in second.stdout
    _check_detection(second.stdout)

    data = _opsloop("data", "ls", home=home).stdout
    assert "demo-breast-cancer-train" in data
    models = _opsloop("models", "ls", home=home).stdout
    assert "demo-classifier" in models and "production" in models
    runs = _opsloop(
        "runs", "ls", "-e", "demo-breast-cancer", "--order-by", "metrics.roc_auc DESC", home=home
    )
    assert "logreg" in runs.stdout or "FINISHED" in runs.stdout


def _check_detection(stdout: str) -> None:
    import re

    assert "latency drill: fault_delay_ms=100" in stdout
    assert "swapped in without a restart), 40 requests" in stdout
    latency = re.search(
        r"latency detector: serving_latency_ms anomalous at \S+ \(([\d.]+) ms, score ([\d.]+)\), ([\d.]+) s after",
        stdout,
    )
    assert latency is not None, stdout
    assert float(latency.group(1)) >= 100.0  # a point of the fault
    assert float(latency.group(3)) < 5.0  # the drill lasts 40 x 100 ms
    assert re.search(r"log detectors: \d+ event\(s\) in 460 lines", stdout), stdout
    new = re.search(r"new_template: at \S+, ([\d.]+) s after the fault: new log template", stdout)
    assert new is not None, stdout
    assert "ERROR feature store call" in stdout
    assert float(new.group(1)) < 5.0


def test_db_upgrade_and_errors(tmp_path: Path) -> None:
    out = _opsloop("db", "upgrade", home=tmp_path).stdout
    assert "upgraded from empty" in out
    assert "already at revision" in _opsloop("db", "upgrade", home=tmp_path).stdout
    bad = _opsloop("runs", "ls", "-e", "no-such-experiment", home=tmp_path, check=False)
    assert bad.returncode == 3
    assert "no experiment named 'no-such-experiment'" in bad.stderr
    bad = _opsloop("runs", "ls", "--filter", "metrics.acc >", home=tmp_path, check=False)
    assert bad.returncode == 2 and "error:" in bad.stderr
