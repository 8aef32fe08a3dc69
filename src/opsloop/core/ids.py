"""Identifiers and timestamps."""

from __future__ import annotations

import time
import uuid


def new_run_id() -> str:
    """A run id in MLflow's form: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def now_ms() -> int:
    """Milliseconds since the epoch, the unit MLflow's protocol uses."""
    return time.time_ns() // 1_000_000
