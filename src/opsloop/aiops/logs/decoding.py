"""Bytes to text, one line at a time: every line gets text or a reason, none stops a stream."""

from __future__ import annotations

from dataclasses import dataclass

# Control characters other than tab: many of them mean the line is not text.
_CONTROL = bytes(c for c in range(32) if c != 9) + b"\x7f"
_DELETE_CONTROL = bytes.maketrans(b"", b"")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was not parsed, and why (``empty``, ``binary``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """A line's text, with a note when it was not clean UTF-8 or was cut."""

    text: str
    warning: str | None = None


def decode_line(raw: bytes, max_chars: int = 16384) -> Decoded | BadLine:
    """Decode one line (without or with its line ending).

    UTF-8 first; a UTF-16 line (byte-order mark) as such; anything else is decoded as
    UTF-8 with the bad bytes replaced and a warning saying how many. A line with NUL
    bytes or mostly control characters is binary and rejected; an empty (or blank) line
    is rejected; a line longer than ``max_chars`` is cut to that length, with a warning.

    >>> decode_line(b"caf\\xc3\\xa9 ok\\n").text
    'café ok'
    >>> decode_line(b"\\x00\\x01\\x02")
    BadLine(reason='binary: NUL bytes')
    """
    raw = raw.rstrip(b"\r\n")
    if not raw.strip():
        return BadLine("empty")
    warning: str | None = None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            return BadLine("undecodable: UTF-16 byte-order mark but invalid UTF-16")
    else:
        if b"\x00" in raw:
            return BadLine("binary: NUL bytes")
        control = len(raw) - len(raw.translate(_DELETE_CONTROL, _CONTROL))
        if control * 10 > len(raw) * 3:
            return BadLine(f"binary: {control} of {len(raw)} bytes are control characters")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            warning = f"not valid UTF-8: {text.count(chr(0xFFFD))} bad byte sequence(s) replaced"
    if len(text) > max_chars:
        note = f"line of {len(text)} characters cut to {max_chars}"
        warning = f"{warning}; {note}" if warning else note
        text = text[:max_chars]
    return Decoded(text, warning)
