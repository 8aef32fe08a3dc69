"""Session ids in log lines: the block, request or trace a line belongs to.

One compiled pattern, searched once per line (in C). The default set knows the common
shapes without knowing the source: HDFS blocks (``blk_-42``), YARN/Spark containers,
applications and attempts, UUIDs (OpenStack ``req-…`` ids, instance ids, trace ids),
W3C trace ids in a ``traceparent``, and ``request_id=…``-style key/value pairs (request,
trace, session, transaction, correlation ids). A pattern of one's own replaces it; its
first group (or the whole match) is the session id.

>>> SessionPattern().find("Receiving block blk_-1608999687919862906 src: /10.0.0.1")
'blk_-1608999687919862906'
>>> SessionPattern().find("GET /api status=200 request_id=ab12cd duration=3ms")
'ab12cd'
>>> SessionPattern(r"user=(\\w+)").find("login user=alice ok")
'alice'
"""

from __future__ import annotations

import re

from opsloop.errors import InvalidInput

# The default set, in the order it is tried (the first that matches gives the id): an
# explicit key/value id, an HDFS block, a YARN/Spark id, a W3C trace id, a UUID. Each is
# its own regex behind a substring test, because one alternation of them all, tried at
# every position of every line, cost ~20 µs a line; this costs ~1 µs.
_KEY_VALUE = re.compile(
    r"(?i:(?<![A-Za-z])(?:request|req|trace|session|span|txn|transaction|correlation)[_.-]?id)"
    r"[\"']?\s*[=:]\s*[\"']?([\w.:-]{1,128})"
)
_BLOCK = re.compile(r"blk_-?\d+")
_YARN_HINT = re.compile(r"_[\dA-Za-z]+_\d")
_YARN = re.compile(
    r"(?<![A-Za-z0-9])(?:container|application|appattempt|attempt|job|task)_[\dA-Za-z]+(?:_\d+)+"
)
_TRACEPARENT = re.compile(r"traceparent[\"']?\s*[=:]\s*[\"']?[0-9a-f]{2}-([0-9a-f]{32})-")
_UUID_HINT = re.compile(r"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-")
_UUID = re.compile(
    r"(?<![0-9a-fA-F])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"(?![0-9a-fA-F])"
)
DEFAULT_SESSION_PATTERN = " | ".join(
    rx.pattern for rx in (_KEY_VALUE, _BLOCK, _YARN, _TRACEPARENT, _UUID)
)  # for display; matching goes through ``_default_find``


def _default_find(line: str) -> str | None:
    if "id" in line or "ID" in line or "Id" in line:
        m = _KEY_VALUE.search(line)
        if m is not None:
            return m.group(1)
    if "blk_" in line:
        m = _BLOCK.search(line)
        if m is not None:
            return m.group(0)
    if _YARN_HINT.search(line) is not None:
        m = _YARN.search(line)
        if m is not None:
            return m.group(0)
    if "traceparent" in line:
        m = _TRACEPARENT.search(line)
        if m is not None:
            return m.group(1)
    if _UUID_HINT.search(line) is not None:
        m = _UUID.search(line)
        if m is not None:
            return m.group(0)
    return None


MAX_PATTERN = 1000
MAX_SESSION_ID = 250


class SessionPattern:
    """Finds a line's session id with one regular expression (``None``: the default set).

    The id is the first group that matched, or the whole match if the pattern has no
    groups; ids are cut to 250 characters.
    """

    __slots__ = ("_search", "pattern")

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = pattern
        if pattern is None:
            self._search = None
            return
        text = pattern
        if not isinstance(text, str) or not text:
            raise InvalidInput(f"a session pattern must be a non-empty regex, got {pattern!r}")
        if len(text) > MAX_PATTERN:
            raise InvalidInput(
                f"a session pattern is limited to {MAX_PATTERN} characters, got {len(text)}"
            )
        try:
            compiled = re.compile(text)
        except re.error as exc:
            raise InvalidInput(
                f"session pattern {text!r} is not a valid regular expression: {exc}; "
                r"e.g. 'blk_-?\d+' or 'req-([0-9a-f-]+)'"
            ) from None
        self._search = compiled.search

    def find(self, line: str) -> str | None:
        """The line's session id, or ``None``."""
        if self._search is None:
            sid = _default_find(line)
            return sid[:MAX_SESSION_ID] if sid else None
        m = self._search(line)
        if m is None:
            return None
        if m.lastindex is None:
            sid = m.group(0)
        else:
            sid = next((g for g in m.groups() if g), None) or m.group(0)
        return sid[:MAX_SESSION_ID] if sid else None
