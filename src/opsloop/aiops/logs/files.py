"""Log lines from files: a whole file or standard input, or a file that grows (``tail -F``).

Lines come as raw bytes without their ``\\n``, each with how many of its bytes were
skipped beyond ``MAX_LINE_BYTES`` (a 1 GB line costs no more memory than a 1 MB one);
decoding is ``opsloop.aiops.logs.decode_line``'s.

>>> import os
>>> r, w = os.pipe(); _ = os.write(w, b"a\\nb"); os.close(w)
>>> list(read_lines(r))
[(b'a', 0), (b'b', 0)]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

from opsloop.errors import InvalidInput

__all__ = ["MAX_LINE_BYTES", "Follower", "LineSplitter", "open_input", "read_lines"]

# Longest line read whole; the rest of a longer line is skipped (constant memory).
MAX_LINE_BYTES = 1 << 20
READ_BYTES = 1 << 16


class LineSplitter:
    """Bytes in, whole lines out; a line's part beyond ``MAX_LINE_BYTES`` is counted and
    dropped."""

    def __init__(self) -> None:
        self.partial = b""
        self.skipped = 0

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """The lines ``chunk`` completes (the part after its last ``\\n`` waits)."""
        out: list[tuple[bytes, int]] = []
        parts = chunk.split(b"\n")
        last = len(parts) - 1
        for i, part in enumerate(parts):
            room = MAX_LINE_BYTES - len(self.partial)
            if len(part) > room:
                self.skipped += len(part) - room
                part = part[:room]
            self.partial = self.partial + part if self.partial else part
            if i < last:
                out.append((self.partial, self.skipped))
                self.partial, self.skipped = b"", 0
        return out

    def rest(self) -> list[tuple[bytes, int]]:
        """The unfinished last line (a file that does not end in ``\\n``), if any."""
        if not (self.partial or self.skipped):
            return []
        out = [(self.partial, self.skipped)]
        self.partial, self.skipped = b"", 0
        return out


def open_input(file: str) -> int:
    """A file descriptor for ``file``, or standard input's for ``-``. Close it with
    ``os.close`` unless ``file`` is ``-``."""
    if file == "-":
        return sys.stdin.fileno()
    if os.path.isdir(file):
        raise InvalidInput(f"cannot read {file}: it is a folder; give a log file or -")
    try:
        return os.open(file, os.O_RDONLY)
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc


def read_lines(
    fd: int, before_read: Callable[[], None] | None = None
) -> Iterator[tuple[bytes, int]]:
    """The lines of a file descriptor to its end.

    ``before_read`` runs before every read that may wait for input (a command flushes
    its output there, so ``tail -f app.log | opsloop logs parse -`` prints as lines come
    and a file is still read in large blocks)."""
    splitter = LineSplitter()
    while True:
        if before_read is not None:
            before_read()
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            break
        yield from splitter.feed(chunk)
    yield from splitter.rest()


class Follower:
    """Lines appended to a file, as ``tail -F`` sees them: a file renamed away and made
    anew (rotation) is read to its end and the new one from its start; a file cut
    shorter (truncation) is read again from its start; a file not there yet is waited
    for."""

    def __init__(self, path: str, from_start: bool) -> None:
        self.path = path
        self.fd: int | None = None
        self.ident: tuple[int, int] | None = None
        self.pos = 0
        self.splitter = LineSplitter()
        self._open(from_start)

    def _open(self, at_start: bool) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        st = os.fstat(fd)
        self.fd, self.ident = fd, (st.st_dev, st.st_ino)
        self.pos = 0 if at_start else st.st_size
        os.lseek(fd, self.pos, os.SEEK_SET)

    def _drain(self) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        if self.fd is None:
            return out
        while chunk := os.read(self.fd, READ_BYTES):
            self.pos += len(chunk)
            out += self.splitter.feed(chunk)
        return out

    def read(self) -> list[tuple[bytes, int]]:
        """The whole lines appended since the last call."""
        if self.fd is None:
            self._open(True)  # the file appeared (after a rotation, or at last)
        out = self._drain()
        if out:
            return out
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # rotated away, the new file not made yet
        if (st.st_dev, st.st_ino) != self.ident:
            out = self._drain() + self.splitter.rest()
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
            self._open(True)
            out += self._drain()
        elif st.st_size < self.pos and self.fd is not None:
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.pos, self.splitter = 0, LineSplitter()
            out += self._drain()
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
