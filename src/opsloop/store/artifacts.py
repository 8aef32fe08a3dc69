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
import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import sqlalchemy as sa

from opsloop.core.ids import now_ms
from opsloop.errors import IntegrityError, InvalidInput, NotFound, PathOutsideRoot
from opsloop.store.db import Database
from opsloop.store.sql import upsert
from opsloop.store.tables import artifact_files

CHUNK = 1 << 20


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


class BlobStore:
    """Blobs by SHA-256 on an fsspec filesystem."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        if self.is_local:
            Path(self.root, "objects").mkdir(parents=True, exist_ok=True)
            Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)

    def _obj(self, sha: str) -> str:
        return f"{self.root}/objects/{sha[:2]}/{sha[2:]}"

    def exists(self, sha: str) -> bool:
        return bool(self.fs.exists(self._obj(sha)))

    # -- writing ----------------------------------------------------------------

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            if self.is_local:
                fd, tmp = tempfile.mkstemp(dir=f"{self.root}/tmp")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    self._publish_local(tmp, sha)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                self.fs.pipe_file(self._obj(sha), data)
        return sha, len(data)

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream of bytes; the blob appears only if the stream ends normally."""
        spool = self._spool()
        h = hashlib.sha256()
        size = 0
        try:
            with open(spool, "wb") as fh:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
            sha = h.hexdigest()
            self._publish_file(spool, sha)
            return sha, size
        finally:
            if os.path.exists(spool):
                os.unlink(spool)

    async def put_async_stream(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        """As ``put_stream`` for an async source (an HTTP request body)."""
        spool = self._spool()
        h = hashlib.sha256()
        size = 0
        try:
            with open(spool, "wb") as fh:
                async for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
            sha = h.hexdigest()
            # Publishing may copy to a remote store: off the event loop.
            await asyncio.to_thread(self._publish_file, spool, sha)
            return sha, size
        finally:
            if os.path.exists(spool):
                os.unlink(spool)

    def put_file(self, local_path: str | os.PathLike[str]) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with open(local_path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        sha = h.hexdigest()
        if not self.exists(sha):
            spool = self._spool()
            try:
                shutil.copyfile(local_path, spool)
                # The file may have changed between hashing and copying: hash the copy.
                if _sha_file(spool) != sha:
                    raise IntegrityError(
                        f"{local_path} changed while it was being stored; try again"
                    )
                self._publish_file(spool, sha)
            finally:
                if os.path.exists(spool):
                    os.unlink(spool)
        return sha, size

    def _spool(self) -> str:
        """A temporary file for an incoming blob: beside the objects on a local store
        (so publishing is a rename), in the machine's temp folder for a remote one."""
        d = self.spool_dir
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, f"upload-{uuid.uuid4().hex}")

    @property
    def spool_dir(self) -> str:
        if self.is_local:
            return f"{self.root}/tmp"
        return os.path.join(tempfile.gettempdir(), "opsloop-spool")

    def _publish_local(self, tmp: str, sha: str) -> None:
        dest = self._obj(sha)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(tmp, dest)

    def _publish_file(self, spool: str, sha: str) -> None:
        if self.exists(sha):
            return
        if self.is_local:
            self._publish_local(spool, sha)
        else:
            # One PUT (or one completed multipart upload): atomic on S3.
            self.fs.put_file(spool, self._obj(sha))

    # -- reading ----------------------------------------------------------------

    def get_bytes(self, sha: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self._obj(sha))
        except FileNotFoundError as exc:
            raise IntegrityError(f"artifact blob {sha} is missing from the artifact store") from exc
        if hashlib.sha256(data).hexdigest() != sha:
            raise IntegrityError(
                f"artifact blob {sha} failed its checksum: the stored copy is corrupt"
            )
        return data

    def iter_verified(self, sha: str) -> Iterator[bytes]:
        """Yield a blob's bytes after checking its checksum end to end.

        Large blobs are checked in a first pass so that a corrupt blob is refused
        before any byte is sent.
        """
        path = self._obj(sha)
        try:
            size = self.fs.size(path)
        except FileNotFoundError as exc:
            raise IntegrityError(f"artifact blob {sha} is missing from the artifact store") from exc
        if size <= 8 * CHUNK:
            yield self.get_bytes(sha)
            return
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha:
            raise IntegrityError(
                f"artifact blob {sha} failed its checksum: the stored copy is corrupt"
            )
        with self.fs.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def local_path(self, sha: str) -> str | None:
        return self._obj(sha) if self.is_local else None


def _sha_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
