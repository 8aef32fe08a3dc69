"""Page tokens: opaque to callers, an offset inside."""

from __future__ import annotations

import base64
import json

from opsloop.errors import InvalidInput


def encode(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode(token: str | None) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["offset"])
        if offset < 0:
            raise ValueError
        return offset
    except Exception:
        raise InvalidInput(
            f"invalid page token {token!r}: pass the token a search returned"
        ) from None
