"""``opsloop logs ingest``, ``tail``, ``templates`` and ``anomalies`` as a user runs them:
real processes on a store of their own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from opsloop.aiops.logs.timestamps import line_time
from tests.cli_process import cli_env, opsloop


def _opsloop(home: Path, *args: str, stdin: str | None = None) -> str:
    done = opsloop("logs", *args, home=home, input=stdin)
    return done.stdout + done.stderr


def _wait(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_ingest_a_file_with_bad_lines_then_read_templates_and_anomalies(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = [
        f"2024-01-02 03:{m:02d}:{s:02d},000 INFO served request {m * 60 + s}"
        for m in range(3)
        for s in range(0, 60, 2)
    ]
    body = (
        "\n".join(lines[:10]).encode() + b"\n\n\x00\x01 binary\n" + "\n".join(lines[10:]).encode()
    )
    log.write_bytes(body + b"\n")
    home = tmp_path / "home"
    out = _opsloop(home, "ingest", str(log), "--source", "web", "--batch", "7")
    assert "92 lines to web in the local store: 90 accepted, 2 rejected, 1 new templates" in out
    assert "line 11: rejected: empty" in out and "line 12: rejected: binary" in out
    out = _opsloop(home, "templates", "web", "--json")
    (t,) = [json.loads(x) for x in out.splitlines()]
    assert t["count"] == 90 and t["template"] == "<*> INFO served request <*>"
    assert t["first_time"] == line_time(lines[0])  # times taken from the lines
    out = _opsloop(home, "anomalies", "--source", "web")
    assert out.strip().endswith("0 anomalies")
    # Standard input works too, and a store can be asked for a source it lacks.
    out = _opsloop(home, "ingest", "-", "-s", "stdin", "--timestamps", "now", stdin="a 1\nb 2\n")
    assert "2 accepted" in out
    done = opsloop("logs", "templates", "nope", home=home, check=False, timeout=60)
    assert done.returncode != 0 and "no log source named 'nope'" in done.stderr


def _hdfs_like(n: int, seed: int = 0) -> list[str]:
    """Lines in the shape of Hadoop's HDFS DataNode/NameNode log (block ids, addresses,
    sizes and thread ids vary as they do there); addStoredBlock the most common."""
    import random

    rng = random.Random(seed)

    def ip() -> str:
        return f"10.251.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    def blk() -> str:
        return f"blk_{rng.choice(['', '-'])}{rng.randint(10**17, 10**19)}"

    shapes = [
        lambda: (
            "INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: "
            f"{ip()}:50010 is added to {blk()} size {rng.randint(1000, 67108864)}"
        ),
        lambda: (
            f"INFO dfs.DataNode$PacketResponder: PacketResponder {rng.randint(0, 2)} for "
            f"block {blk()} terminating"
        ),
        lambda: (
            f"INFO dfs.DataNode$PacketResponder: Received block {blk()} of size "
            f"{rng.randint(1000, 67108864)} from /{ip()}"
        ),
        lambda: (
            f"INFO dfs.DataNode$DataXceiver: Receiving block {blk()} src: /{ip()}:"
            f"{rng.randint(30000, 60000)} dest: /{ip()}:50010"
        ),
        lambda: (
            "INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/rand/"
            f"_temporary/_task_200811092030_0001_m_{rng.randint(0, 999):06d}_0/part-"
            f"{rng.randint(0, 999):05d}. {blk()}"
        ),
    ]
    weights = [40, 20, 20, 15, 5]
    lines = []
    for i in range(n):
        t = 203500 + i // 10
        shape = rng.choices(shapes, weights)[0]
        lines.append(f"081109 {t:06d} {rng.randint(1, 400)} {shape()}")
    return lines


def test_ingest_an_hdfs_like_log(tmp_path: Path) -> None:
    hdfs = tmp_path / "hdfs.log"
    hdfs.write_text("\n".join(_hdfs_like(600)) + "\n")
    home = tmp_path / "home"
    out = _opsloop(home, "ingest", str(hdfs), "--source", "hdfs")
    assert "600 accepted, 0 rejected, 5 new templates" in out
    top = _opsloop(home, "templates", "hdfs", "--limit", "3").splitlines()
    assert "NameSystem.addStoredBlock" in top[0]


def test_tail_follows_appends_rotation_and_truncation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "app.log"
    log.write_bytes(b"old line 1 before start\n")

    from opsloop.core.config import Settings
    from opsloop.store import Store

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsloop",
            "logs",
            "tail",
            str(log),
            "--source",
            "tailed",
            "--from-start",
            "--poll",
            "0.05",
            "--flush",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(home),
    )
    try:
        _wait(lambda: (home / "opsloop.db").exists() or proc.poll() is not None)
        store = Store(
            Settings(
                home=home,
                database_url=f"sqlite:///{home / 'opsloop.db'}",
                artifacts_url=str(home / "artifacts"),
            ),
            migrate=False,
        )

        def lines_in() -> int:
            from opsloop.aiops.logs.queries import list_sources

            try:
                found = list_sources(store.db)
            except Exception:
                return -1
            return found[0].lines if found else 0

        _wait(lambda: lines_in() == 1)
        with log.open("ab") as f:
            f.write(b"job 7 done\njob 8 do")
            f.flush()
            _wait(lambda: lines_in() == 2)  # the half line waits for its end
            f.write(b"ne\n\n")
        _wait(lambda: lines_in() == 3)
        # Rotation: renamed away (with a last line written after), a new file made.
        rotated = tmp_path / "app.log.1"
        log.rename(rotated)
        with rotated.open("ab") as f:
            f.write(b"job 9 done\n")
        log.write_bytes(b"job 10 done\n")
        _wait(lambda: lines_in() == 5)
        # Truncation: cut to nothing, then written again.
        log.write_bytes(b"")
        # A file cut and written again to its old length or more looks like one that
        # grew (as for tail -F): give the follower a few polls to see it shorter.
        time.sleep(0.3)
        with log.open("ab") as f:
            f.write(b"job 11 done\n")
        _wait(lambda: lines_in() == 6)
        store.close()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"7 lines to tailed in the local store: 6 accepted, 1 rejected" in out, out + err


def test_line_times_of_the_common_shapes() -> None:
    import datetime as dt

    def ms(*args: int) -> int:
        return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)

    default = ms(2023, 5, 1)
    cases = {
        "2015-10-18 18:01:47,978 INFO [main] x": ms(2015, 10, 18, 18, 1, 47) + 978,
        "2015-10-18T18:01:47.5+02:00 x": ms(2015, 10, 18, 16, 1, 47) + 500,
        "17/06/09 20:10:40 INFO executor": ms(2017, 6, 9, 20, 10, 40),
        "081109 203615 148 INFO dfs": ms(2008, 11, 9, 20, 36, 15),
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: x": ms(2023, 6, 14, 15, 16, 1),
        "[Sun Dec 04 04:47:44 2005] [notice] x": ms(2005, 12, 4, 4, 47, 44),
        "- 1117838570 2005.06.03 R02-M1-N0 2005-06-03-15.42.50.675872 x": 1117838570000,
        "no time here at all": default,
        "2015-13-45 99:99:99 not a date": default,
    }
    for line, want in cases.items():
        assert line_time(line, default) == want, line
