"""Content hashes of files and folders given to steps, remembered by size and mtime.

A step's cache key counts a ``pathlib.Path`` argument by the SHA-256 of what the path
holds, not by its name, so a changed file re-runs the step and an unchanged one is
served from the cache. Hashing a large file each time would cost seconds, so the hash
is kept in a small SQLite file on this machine (``$OPSLOOP_HOME/cache/file-hashes.db``)
under the file's absolute path, size, modification time (ns) and inode: while those
are unchanged the stored hash is used (one ``stat``), as ``make``, ``rsync`` and DVC
do. A folder's hash is that of its files' relative paths and hashes, in order.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

from opsloop.core.config import Settings
from opsloop.errors import InvalidInput
from opsloop.store.blobs import sha256_file

CHUNK = 4 << 20
_lock = threading.Lock()
_conns: dict[str, sqlite3.Connection] = {}


def _db() -> sqlite3.Connection:
    path = Settings.from_env().home / "cache" / "file-hashes.db"
    key = str(path)
    with _lock:
        conn = _conns.get(key)
        if conn is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(key, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS file_hashes (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, inode INTEGER, sha256 TEXT)"
            )
            _conns[key] = conn
        return conn


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (from the remembered hash while its size, mtime and
    inode are unchanged).

    Example::

        >>> file_digest(Path("data/raw.csv"))  # doctest: +SKIP
        '9f86d081884c7d65...'
    """
    full = str(path.resolve())
    st = os.stat(full)
    db = _db()
    row = db.execute(
        "SELECT size, mtime_ns, inode, sha256 FROM file_hashes WHERE path = ?", (full,)
    ).fetchone()
    if row is not None and tuple(row[:3]) == (st.st_size, st.st_mtime_ns, st.st_ino):
        return str(row[3])
    sha = sha256_file(full, CHUNK)
    after = os.stat(full)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise InvalidInput(f"{full} changed while it was being hashed; run the pipeline again")
    db.execute(
        "INSERT INTO file_hashes (path, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
        "inode = excluded.inode, sha256 = excluded.sha256",
        (full, st.st_size, st.st_mtime_ns, st.st_ino, sha),
    )
    return sha


def path_digest(path: Path) -> str:
    """The content hash of a file, or of a folder (its files' relative paths and hashes)."""
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root, name)
                rel = full.relative_to(path).as_posix()
                h.update(rel.encode() + b"\0" + file_digest(full).encode() + b"\n")
        return h.hexdigest()
    raise InvalidInput(f"{path} is neither a file nor a folder")
