"""``opsloop monitor report``: HTML, JSON and table output, datasets, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

DRIFTED = "<b>x</b>"  # a column name that is also HTML: it must come out escaped


def _monitor(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSLOOP_HOME": str(home), "COLUMNS": "200"}
    env.pop("OPSLOOP_DATABASE_URL", None)
    env.pop("OPSLOOP_ARTIFACTS", None)
    return subprocess.run(
        [sys.executable, "-m", "opsloop", "monitor", "report", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _frames(seed: int = 0, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "steady": rng.normal(size=n),
            DRIFTED: rng.normal(size=n),
            "site": rng.choice(["a", "b", "<i>c</i>"], n),
        }
    )
    cur = pd.DataFrame(
        {
            "steady": rng.normal(size=n),
            DRIFTED: rng.normal(4.0, 1.0, size=n),  # planted drift
            "site": rng.choice(["a", "b", "<i>c</i>"], n),
        }
    )
    return ref, cur


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ref, cur = _frames()
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_parquet(tmp_path / "cur.parquet")
    return tmp_path / "ref.csv", tmp_path / "cur.parquet"


def test_html_report_is_self_contained_and_escaped(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    ref, cur = files
    out = tmp_path / "report.html"
    p = _monitor(str(ref), str(cur), "--html", str(out), home=tmp_path / "home", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page)  # only in-page links
    assert "<b>x</b>" not in page and "<i>c</i>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "&lt;i&gt;c&lt;/i&gt;" in page
    # the drifted column's row is marked, with a plot per column
    row = re.search(r'<tr class="drift"><td class="l"><a href="#c\d">([^<]*)</a>', page)
    assert row is not None and row.group(1) == "&lt;b&gt;x&lt;/b&gt;"
    assert page.count("<figure") == 3 and page.count("<svg") == 3
    assert "Multivariate checks" in page and "Alerts" in page


def test_json_to_stdout_is_only_json(tmp_path: Path, files: tuple[Path, Path]) -> None:
    ref, cur = files
    p = _monitor(str(ref), str(cur), "--json", "-", home=tmp_path / "home", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["drifted_columns"] == [DRIFTED]
    assert {c["column"] for c in report["columns"]} == {"steady", DRIFTED, "site"}

    # to a file, with options; the table summary when neither --html nor --json
    out = tmp_path / "r.json"
    p = _monitor(
        str(ref),
        str(cur),
        "--json",
        str(out),
        "--columns",
        f"steady,{DRIFTED}",
        "--test",
        "psi",
        "--threshold",
        "0.2",
        home=tmp_path / "home",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    report = json.loads(out.read_text())
    assert [c["column"] for c in report["columns"]] == ["steady", DRIFTED]
    assert {c["test"] for c in report["columns"]} == {"psi"}
    assert report["drifted_columns"] == [DRIFTED]
    p = _monitor(str(ref), str(cur), home=tmp_path / "home", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = " ".join(p.stdout.split())
    assert "1 of 3 tested columns drifted" in text and DRIFTED in text


def test_registered_dataset_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opsloop import data

    home = tmp_path / "home"
    monkeypatch.setenv("OPSLOOP_HOME", str(home))
    monkeypatch.delenv("OPSLOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPSLOOP_ARTIFACTS", raising=False)
    ref, cur = _frames()  # the same content as the files
    assert data.register(ref, "sensors").ref == "sensors@1"
    assert data.register(cur, "sensors").ref == "sensors@2"
    out = tmp_path / "ds.html"
    p = _monitor(
        "sensors@1", "sensors@2", "--json", "-", "--html", str(out), home=home, cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["drifted_columns"] == [DRIFTED]
    assert report["reference_source"]["dataset"] == "sensors@1"
    assert "sensors@1" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["missing.csv", "cur.parquet"], 3, "does not exist"),
        (["notes.txt", "cur.parquet"], 2, "not a CSV or Parquet"),
        (["ref.csv", "nosuch@1"], 3, "nosuch"),
        (["ref.csv", "other.csv"], 2, "no column in common"),
        (["ref.csv", "cur.parquet", "--test", "nope"], 2, "unknown drift test"),
        (["ref.csv", "cur.parquet", "--threshold", "high"], 2, "--threshold"),
        (["ref.csv", "cur.parquet", "--columns", "zz"], 2, "zz"),
    ],
)
def test_bad_input(
    tmp_path: Path, files: tuple[Path, Path], args: list[str], code: int, words: str
) -> None:
    """One line on stderr, the error's exit code, nothing on stdout, no file written."""
    (tmp_path / "notes.txt").write_text("a,b\n1,2\n")
    pd.DataFrame({"other": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "other.csv", index=False)
    p = _monitor(
        *args, "--html", "out.html", "--json", "out.json", home=tmp_path / "home", cwd=tmp_path
    )
    assert p.returncode == code, (p.stdout, p.stderr)
    assert p.stderr.startswith("error:") and words in " ".join(p.stderr.split())
    assert p.stdout == ""
    assert not (tmp_path / "out.html").exists() and not (tmp_path / "out.json").exists()
