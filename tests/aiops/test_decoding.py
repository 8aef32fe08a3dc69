"""Bytes to lines: every line gets text or a reason."""

from __future__ import annotations

from opsloop.aiops.logs import BadLine, decode_line
from opsloop.aiops.logs.decoding import Decoded


def test_utf8_and_line_endings() -> None:
    assert decode_line(b"caf\xc3\xa9 ok\r\n") == Decoded("café ok")


def test_empty_and_blank_lines_are_rejected() -> None:
    assert decode_line(b"\n") == BadLine("empty")
    assert decode_line(b"  \t \r\n") == BadLine("empty")


def test_binary_is_rejected_with_a_reason() -> None:
    assert decode_line(b"\x00\x01abc") == BadLine("binary: NUL bytes")
    bad = decode_line(bytes(range(1, 32)) * 3)
    assert isinstance(bad, BadLine) and bad.reason.startswith("binary:")


def test_other_encodings_decode_with_a_warning() -> None:
    d = decode_line("naïve café".encode("latin-1"))
    assert isinstance(d, Decoded) and d.warning and "UTF-8" in d.warning
    assert d.text.startswith("na")
    d = decode_line("héllo wörld".encode("utf-16"))
    assert d == Decoded("héllo wörld")


def test_long_lines_are_cut() -> None:
    d = decode_line(b"x" * 1_000_000, max_chars=1000)
    assert isinstance(d, Decoded) and len(d.text) == 1000 and d.warning
