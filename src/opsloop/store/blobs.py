"""Content-addressed blobs on any fsspec filesystem (see ``artifacts`` for the logical
tree on top of them).

Kept apart from the metadata store so that what needs only blobs - a pipeline's worker
processes, on this machine or a cluster - does not import SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import fsspec

from opsloop.errors import IntegrityError

CHUNK = 1 << 20


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
                if sha256_file(spool) != sha:
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


def sha256_file(path: str | os.PathLike[str], chunk_size: int = CHUNK) -> str:
    """The SHA-256 of a file's bytes, read in chunks.

    Example::

        sha256_file("data/raw.csv")      # '9f86d081884c7d65...'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
