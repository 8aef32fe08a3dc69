"""The artifact store: content-addressed blobs on any fsspec filesystem.

A blob is stored once under ``objects/<sha[:2]>/<sha[2:]>``, named by the SHA-256 of
its bytes. It is written to a temporary name and renamed into place (on object stores,
where a PUT is atomic, it is written to its final key in one request), so a reader
never sees half a blob. Reads verify the checksum. The logical tree that users see
(``<experiment>/<run>/artifacts/model/MLmodel``) is an index in the metadata store
(``artifact_files``) from path to blob: a path appears only after its blob is complete.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import posixpath
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput, NotFound, PathOutsideRoot
from opsloop.store.blobs import BlobStore as BlobStore  # its old home
from opsloop.store.db import Database
from opsloop.store.sql import upsert
from opsloop.store.tables import artifact_files


def clean_path(path: str, *, allow_empty: bool = False) -> str:
    """Normalise a logical artifact path; refuse any that would leave its root."""
    if path is None:
        path = ""
    if "\x00" in path:
        raise PathOutsideRoot(f"artifact path {path!r} contains a NUL byte")
    p = path.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        raise PathOutsideRoot(
            f"artifact path {path!r} is absolute; give a path relative to the root"
        )
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if any(s == ".." for s in parts):
        raise PathOutsideRoot(f"artifact path {path!r} contains '..' and would leave its root")
    out = "/".join(parts)
    if not out and not allow_empty:
        raise InvalidInput("artifact path is empty")
    return out


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass(frozen=True)
class FileInfo:
    path: str
    is_dir: bool
    size: int | None = None
    sha256: str | None = None


class ArtifactStore:
    """The logical artifact tree: paths in the metadata store, bytes in the blob store."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def _index(self, path: str, sha: str, size: int) -> None:
        with self.db.write() as conn:
            _index_row(conn, path, sha, size)

    @staticmethod
    def index_in(conn: Any, path: str, sha: str, size: int) -> None:
        """Make a stored blob visible at ``path`` inside the caller's write transaction,
        so that the path appears together with the caller's own rows, or not at all."""
        _index_row(conn, clean_path(path), sha, size)

    def put_bytes(self, path: str, data: bytes) -> FileInfo:
        path = clean_path(path)
        sha, size = self.blobs.put_bytes(data)
        self._index(path, sha, size)
        return FileInfo(path, False, size, sha)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> FileInfo:
        path = clean_path(path)
        sha, size = self.blobs.put_stream(chunks)
        self._index(path, sha, size)
        return FileInfo(path, False, size, sha)

    async def put_async_stream(self, path: str, chunks: AsyncIterator[bytes]) -> FileInfo:
        path = clean_path(path)
        sha, size = await self.blobs.put_async_stream(chunks)
        # The index write may wait on the database lock: off the event loop.
        await asyncio.to_thread(self._index, path, sha, size)
        return FileInfo(path, False, size, sha)

    def put_file(self, path: str, local_path: str | os.PathLike[str]) -> FileInfo:
        path = clean_path(path)
        if os.path.islink(local_path):
            raise PathOutsideRoot(f"{local_path} is a symbolic link; log the file it points to")
        sha, size = self.blobs.put_file(local_path)
        self._index(path, sha, size)
        return FileInfo(path, False, size, sha)

    def put_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> builtins.list[FileInfo]:
        """Store every file under ``local_dir`` below ``prefix``.

        Symbolic links are refused when they point outside ``local_dir``, and followed
        (as copies) when they point inside it.
        """
        base = Path(local_dir)
        if not base.is_dir():
            raise InvalidInput(f"{local_dir} is not a directory")
        real_base = base.resolve()
        out: builtins.list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            for d in list(dirnames):
                full = Path(dirpath, d)
                if full.is_symlink():
                    _check_inside(full, real_base)
            for name in sorted(filenames):
                full = Path(dirpath, name)
                if full.is_symlink():
                    _check_inside(full, real_base)
                rel = full.relative_to(base).as_posix()
                sha, size = self.blobs.put_file(full.resolve())
                out.append(FileInfo(join(prefix, rel), False, size, sha))
        if out:
            with self.db.write() as conn:
                for fi in out:
                    _index_row(conn, clean_path(fi.path), fi.sha256 or "", fi.size or 0)
        return out

    def stat(self, path: str) -> FileInfo:
        path = clean_path(path)
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(artifact_files.c.sha256, artifact_files.c.size).where(
                    artifact_files.c.path == path
                )
            ).first()
        if row is None:
            raise NotFound(f"no artifact at {path!r}")
        return FileInfo(path, False, int(row.size), str(row.sha256))

    def get_bytes(self, path: str) -> bytes:
        return self.blobs.get_bytes(self.stat(path).sha256 or "")

    def iter_bytes(self, path: str) -> Iterator[bytes]:
        return self.blobs.iter_verified(self.stat(path).sha256 or "")

    def list(self, prefix: str) -> builtins.list[FileInfo]:
        """Immediate children of a folder, as MLflow's ``list_artifacts`` gives them."""
        prefix = clean_path(prefix, allow_empty=True)
        like = _like_prefix(prefix)
        with self.db.read() as conn:
            q = sa.select(artifact_files.c.path, artifact_files.c.size, artifact_files.c.sha256)
            if prefix:
                q = q.where(artifact_files.c.path.like(like, escape="\\"))
            rows = conn.execute(q.order_by(artifact_files.c.path)).all()
        start = len(prefix) + 1 if prefix else 0
        seen: dict[str, FileInfo] = {}
        for r in rows:
            rest = r.path[start:]
            head, sep, _ = rest.partition("/")
            child = join(prefix, head)
            if sep:
                seen.setdefault(child, FileInfo(child, True))
            else:
                seen[child] = FileInfo(child, False, int(r.size), r.sha256)
        return list(seen.values())

    def walk(self, prefix: str) -> builtins.list[FileInfo]:
        """Every file below a folder (or the one file at ``prefix``)."""
        prefix = clean_path(prefix, allow_empty=True)
        with self.db.read() as conn:
            q = sa.select(artifact_files.c.path, artifact_files.c.size, artifact_files.c.sha256)
            if prefix:
                q = q.where(
                    sa.or_(
                        artifact_files.c.path == prefix,
                        artifact_files.c.path.like(_like_prefix(prefix), escape="\\"),
                    )
                )
            rows = conn.execute(q.order_by(artifact_files.c.path)).all()
        return [FileInfo(r.path, False, int(r.size), r.sha256) for r in rows]

    def download(self, prefix: str, dest: str | os.PathLike[str]) -> Path:
        """Copy a file or folder to ``dest`` (a folder); returns the local path."""
        prefix = clean_path(prefix, allow_empty=True)
        files = self.walk(prefix)
        if not files:
            raise NotFound(f"no artifact at {prefix!r}")
        dest = Path(dest)
        for fi in files:
            if fi.path == prefix:
                rel = posixpath.basename(prefix)
            else:
                rel = fi.path[len(prefix) + 1 :] if prefix else fi.path
                rel = join(posixpath.basename(prefix), rel) if prefix else rel
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
            with open(tmp, "wb") as fh:
                for chunk in self.blobs.iter_verified(fi.sha256 or ""):
                    fh.write(chunk)
            os.replace(tmp, target)
        return dest / posixpath.basename(prefix) if prefix else dest

    def delete(self, path: str) -> int:
        """Forget a file or folder (blobs may be shared, so they stay)."""
        path = clean_path(path)
        with self.db.write() as conn:
            res = conn.execute(
                sa.delete(artifact_files).where(
                    sa.or_(
                        artifact_files.c.path == path,
                        artifact_files.c.path.like(_like_prefix(path), escape="\\"),
                    )
                )
            )
        return int(res.rowcount or 0)


def _check_inside(link: Path, real_base: Path) -> None:
    target = link.resolve()
    if target != real_base and real_base not in target.parents:
        raise PathOutsideRoot(
            f"{link} is a symbolic link to {target}, outside the folder being logged"
        )


def _like_prefix(prefix: str) -> str:
    esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{esc}/%"


def _index_row(conn: Any, path: str, sha: str, size: int) -> None:
    upsert(
        conn,
        artifact_files,
        {"path": path, "sha256": sha, "size": size, "created": now_ms()},
        ["path"],
        ["sha256", "size", "created"],
    )
