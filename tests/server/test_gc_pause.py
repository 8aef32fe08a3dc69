"""The cycle-collector pause the MLflow routes hold while building large answers."""

from __future__ import annotations

import gc
import threading

import pytest

from opsloop.server.mlflow_compat import routing


def test_pause_is_shared_and_released() -> None:
    assert gc.isenabled()
    with routing.gc_paused():
        assert not gc.isenabled()
        with routing.gc_paused():
            assert not gc.isenabled()
        # The outer holder still holds it.
        assert not gc.isenabled()
    assert gc.isenabled()


def test_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with routing.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_holders_still_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under sustained load (always one request in flight) cycles are still collected."""
    monkeypatch.setattr(routing, "MAX_GC_PAUSE", -1.0)

    class Node:
        def __init__(self) -> None:
            self.me = self

    collected = threading.Event()
    gc.callbacks.append(lambda phase, info: collected.set() if phase == "stop" else None)
    try:
        with routing.gc_paused():
            Node()  # unreachable cycle
            with routing.gc_paused():  # a second, overlapping request
                pass
        assert collected.is_set()
    finally:
        gc.callbacks.pop()
    assert gc.isenabled()
