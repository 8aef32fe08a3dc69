"""Files and folders given to a step count by their content, remembered by size and mtime."""

from __future__ import annotations

import os
from pathlib import Path

from opsloop.pipelines import pipeline, run, step
from opsloop.pipelines.filehash import file_digest


@step
def count_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@pipeline
def measure(path: Path) -> int:
    return count_bytes(path)


def _hits(path: Path) -> int:
    result = run(measure, {"path": path}, executor="inline")
    return sum(1 for s in result.steps.values() if s.cache_hit)


def test_a_changed_file_reruns_and_an_unchanged_one_hits(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(b"a" * 1000)
    assert _hits(f) == 0
    assert _hits(f) == 1
    # Same size, same mtime, other bytes (as a careless copy might leave it): the
    # remembered hash is keyed on the inode too, so a replaced file is seen.
    st = f.stat()
    tmp = tmp_path / "new.bin"
    tmp.write_bytes(b"b" * 1000)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, f)
    assert _hits(f) == 0
    # Rewritten in place with a new mtime: hashed again.
    f.write_bytes(b"c" * 1000)
    assert _hits(f) == 0
    assert _hits(f) == 1


def test_folders_count_by_their_files(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "folder"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    assert _hits(d) == 0
    assert _hits(d) == 1
    (d / "sub" / "c.txt").write_text("c")
    assert _hits(d) == 0


def test_file_digest_is_sha256(home: Path, tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "x"
    f.write_bytes(b"hello")
    assert file_digest(f) == hashlib.sha256(b"hello").hexdigest()
    assert file_digest(f) == hashlib.sha256(b"hello").hexdigest()  # from the stored hash
