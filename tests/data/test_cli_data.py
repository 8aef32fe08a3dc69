"""``opsloop data ...`` through the real command line, on a store of the test's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import opsloop.data
from tests import cli_process  # its `opsloop` would hide the package imported above


def _opsloop(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli_process.opsloop("data", *args, home=home, env={"COLUMNS": "250"}, check=check)


@pytest.fixture
def csvs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame(
        {
            "temp": rng.normal(20, 5, n),
            "site": rng.choice(["north", "south"], n),
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(n), unit="min"),
        }
    )
    a = tmp_path / "a.csv"
    df.to_csv(a, index=False)
    b = tmp_path / "b.csv"
    df.assign(temp=df["temp"] + 10, rain=1.0).drop(columns=["site"]).to_csv(b, index=False)
    return a, b


def test_register_ls_show_diff(home: Path, csvs: tuple[Path, Path]) -> None:
    a, b = csvs
    out = _opsloop("register", str(a), "--name", "sensors", "-d", "hourly [raw]", home=home)
    assert "registered sensors@1: 2,000 rows x 3 columns" in out.stdout
    again = _opsloop("register", str(a), "--name", "sensors", home=home)
    assert "already registered as sensors@1" in again.stdout
    assert "registered sensors@2" in _opsloop("register", str(b), "-n", "sensors", home=home).stdout

    listed = _opsloop("ls", home=home).stdout
    assert "sensors" in listed and "sensors@2" in listed and "2,000" in listed
    versions = _opsloop("ls", "sensors", home=home).stdout
    assert str(a) in versions and str(b) in versions

    # The validation hook: a report stored with the version is summarised by show.
    opsloop.data.set_validation_report(
        "sensors@1",
        {
            "passed": False,
            "checks": 2,
            "failed": 1,
            "results": [
                {"name": "in_range(temp)", "passed": False, "message": "3 rows outside [0, 40]"},
                {"name": "not_null(site)", "passed": True, "message": "ok"},
            ],
        },
    )
    show = _opsloop("show", "sensors@1", home=home).stdout
    digest = opsloop.data.get_version("sensors@1").digest
    for expected in (
        "sensors@1",
        digest,
        "2,000 rows x 3 columns",
        "description: hourly [raw]",  # user text printed as is, not as markup
        "timestamp[us]",
        "numeric columns",
        "categorical columns",
        "north",
        "datetime columns",
        "2026-01-01T00:00:00",
        "validation: failed (2 checks, 1 failed)",
        "in_range(temp): 3 rows outside [0, 40]",
    ):
        assert expected in show, expected
    assert "not_null(site)" not in show
    latest = _opsloop("show", "sensors", home=home).stdout
    assert "sensors@2" in latest and "validation: no report stored" in latest
    assert f"sensors@{digest[:8]}" not in latest
    assert "sensors@1" in _opsloop("show", f"sensors@{digest[:8]}", home=home).stdout

    diff = _opsloop("diff", "sensors@1", "sensors@2", home=home).stdout
    for expected in ("sensors@1 -> sensors@2", "added", "rain", "removed", "site", "temp", "PSI"):
        assert expected in diff, expected


def test_errors_exit_with_their_codes(home: Path, tmp_path: Path) -> None:
    missing = _opsloop("show", "nope", home=home, check=False)
    assert missing.returncode == 3 and "no dataset named 'nope'" in missing.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    bad = _opsloop("register", str(notes), "--name", "sensors", home=home, check=False)
    assert bad.returncode == 2 and "is not a CSV or Parquet file" in bad.stderr
    bad_name = _opsloop("register", str(notes), "--name", "a b", home=home, check=False)
    assert bad_name.returncode == 2 and "is not valid" in bad_name.stderr
    assert "sensors" not in _opsloop("ls", home=home).stdout
    no_version = _opsloop("diff", "sensors@1", "sensors@2", home=home, check=False)
    assert no_version.returncode == 3
