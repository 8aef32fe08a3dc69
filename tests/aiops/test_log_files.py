"""Reading log lines from files: one splitter for whole files and for followed ones."""

from __future__ import annotations

import os
from pathlib import Path

from opsloop.aiops.logs.files import MAX_LINE_BYTES, Follower, LineSplitter, read_lines


def test_a_line_longer_than_the_cap_is_cut_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"a\nbb") == [(b"a", 0)]
    assert s.feed(b"x" * MAX_LINE_BYTES) == []
    ((line, skipped),) = s.feed(b"y\nc")
    assert len(line) == MAX_LINE_BYTES and line.startswith(b"bbx") and skipped == 3
    assert s.rest() == [(b"c", 0)] and s.rest() == []


def test_read_lines_keeps_an_unfinished_last_line(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\n\ntwo")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert list(read_lines(fd)) == [(b"one", 0), (b"", 0), (b"two", 0)]
    finally:
        os.close(fd)


def test_follower_reads_appends_and_a_rotated_file(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    p.write_bytes(b"old\n")
    f = Follower(str(p), from_start=False)
    try:
        assert f.read() == []
        with open(p, "ab") as out:
            out.write(b"new 1\nnew")
        assert f.read() == [(b"new 1", 0)]
        p.rename(tmp_path / "app.log.1")
        p.write_bytes(b"fresh\n")
        assert f.read() == [(b"new", 0), (b"fresh", 0)]
    finally:
        f.close()
