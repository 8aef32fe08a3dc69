"""A job that ticks in a background thread (the server's background services: the
monitors, the signals service, the log window closer).

A subclass sets ``name`` (the thread's and the log's) and ``interval`` (seconds) and
defines ``tick()``; ``wake()`` brings the next tick forward; ``stopped()`` runs once the thread has ended (e.g. to release a
lease). A tick that raises is logged and the next comes ``interval`` later.

Example::

    class Cleaner(Ticker):
        name = "cleaner"

        def __init__(self) -> None:
            super().__init__(interval=5.0)

        def tick(self) -> None: ...

    with Cleaner().running():
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Self

log = logging.getLogger("opsloop")


def interval_from_env(var: str, default: float) -> float:
    """Seconds from the variable ``var`` (``default`` when unset or not a number; at
    least 0.05)."""
    raw = os.environ.get(var, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %g", var, raw, default)
        value = default
    return max(0.05, value)


class Ticker(ABC):
    """``tick()`` every ``interval`` seconds in a thread, from ``start()`` to ``stop()``."""

    name = "ticker"

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def tick(self) -> Any:
        """One round of the job."""

    def stopped(self) -> None:  # noqa: B027 (a hook: most subclasses need none)
        """Runs after the thread ends (by ``stop()``)."""

    def start(self) -> None:
        """Tick in a background thread until ``stop()``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"opsloop-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop ticking (the current tick finishes), then ``stopped()``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.stopped()
        except Exception:
            log.exception("%s: stopping failed", self.name)

    def wake(self) -> None:
        """Tick now rather than at the next interval (e.g. after a manual trigger)."""
        self._wake.set()

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        """``start()`` on entry, ``stop()`` on exit."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("%s tick failed; trying again in %.1f s", self.name, self.interval)
            self._wake.wait(self.interval)
            self._wake.clear()
