"""``opsloop logs parse`` as a user runs it: a real process, files and standard input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.aiops.synth import synthetic_log

LINES = [
    b"Connection from 10.0.0.1 closed",
    b"",
    b"Connection from 10.0.0.2 closed",
    b"\x00\x01\x02 binary",
    b"caf\xe9 encoded line 7",
    b"x" * 1_100_000 + b" 42",
    b"user alice logged in",
]


def _parse(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "opsloop", "logs", "parse", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=True,
    )


def test_templates_format_prints_one_line_per_input_line_in_order(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_bytes(b"\n".join(LINES) + b"\n")
    out = _parse(str(f)).stdout.decode().splitlines()
    assert out == [
        "Connection from <*> closed",
        "<bad line: empty>",
        "Connection from <*> closed",
        "<bad line: binary: NUL bytes>",
        "caf\ufffd encoded line <*>",
        "x" * 16384,
        "user alice logged in",
    ]


def test_json_format_from_stdin(tmp_path: Path) -> None:
    out = _parse("-", "--format", "json", stdin=b"\r\n".join(LINES)).stdout.decode()
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["line"] for r in recs] == list(range(1, 8))
    assert recs[0] == {
        "line": 1,
        "template_id": 1,
        "template": "Connection from <*> closed",
        "parameters": ["10.0.0.1"],
    }
    assert recs[2]["template_id"] == 1 and recs[2]["parameters"] == ["10.0.0.2"]
    assert recs[1] == {"line": 2, "error": "empty"}
    assert recs[3]["error"].startswith("binary")
    assert "UTF-8" in recs[4]["warning"] and recs[4]["parameters"] == ["7"]
    assert "cut" in recs[5]["warning"] and "skipped" in recs[5]["warning"]


def test_summary_and_state_across_runs(tmp_path: Path) -> None:
    lines, _ = synthetic_log(600)
    f = tmp_path / "a.log"
    f.write_text("\n".join(lines) + "\n")
    state = tmp_path / "templates.json"
    first = _parse(str(f), "--format", "summary", "--state", str(state)).stdout.decode()
    rows = first.splitlines()
    assert rows[-1] == "12 templates; 0 bad lines"
    assert sum(int(r.split()[0]) for r in rows[:-1]) == 600
    # A second run starts from the saved store: same ids, counts added up.
    out = _parse(str(f), "--format", "json", "--state", str(state)).stdout.decode()
    ids = {json.loads(x)["template_id"] for x in out.splitlines()}
    saved = json.loads(state.read_text())
    assert ids == {t["id"] for t in saved["templates"]}
    assert sum(t["count"] for t in saved["templates"]) == 1200


def test_missing_file_is_an_error_with_a_message(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "opsloop", "logs", "parse", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "cannot read" in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "opsloop", "logs", "parse", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "folder" in p.stderr


def test_stdin_is_streamed_line_by_line() -> None:
    # Each template is printed before the next line is written: nothing waits for EOF.
    p = subprocess.Popen(
        [sys.executable, "-m", "opsloop", "logs", "parse", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert p.stdin is not None and p.stdout is not None
    try:
        for i in range(3):
            p.stdin.write(f"Connection from 10.0.0.{i} closed\n".encode())
            p.stdin.flush()
            assert p.stdout.readline() == b"Connection from <*> closed\n"
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
        p.wait()


def test_a_closed_reader_stops_quietly(tmp_path: Path) -> None:
    lines, _ = synthetic_log(20000)
    f = tmp_path / "big.log"
    f.write_text("\n".join(lines) + "\n")
    p = subprocess.run(
        f"{sys.executable} -m opsloop logs parse {f} | head -3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(p.stdout.splitlines()) == 3
    assert "Traceback" not in p.stderr


def test_merge_stores(tmp_path: Path) -> None:
    lines, _ = synthetic_log(400)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("\n".join(lines[:200]) + "\n")
    b.write_text("\n".join(lines[200:]) + "\n")
    sa, sb = tmp_path / "a.json", tmp_path / "b.json"
    _parse(str(a), "--state", str(sa))
    _parse(str(b), "--state", str(sb))
    p = subprocess.run(
        [sys.executable, "-m", "opsloop", "logs", "merge", str(sa), str(sb)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(p.stdout)
    merged = json.loads(sa.read_text())
    assert out["store"] == str(sb)
    assert set(out["ids"].values()) <= {t["id"] for t in merged["templates"]}
    assert sum(t["count"] for t in merged["templates"]) == 400
    assert len(merged["templates"]) == 12
