"""A small module of pipelines for the schedule tests, written into a test's folder
(the scheduler imports it there in a process of its own, as a user's module)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

FLOWS = textwrap.dedent(
    """
    import json
    import os
    import time
    from pathlib import Path

    import opsloop

    @opsloop.step
    def load(n: int):
        return list(range(n))

    @opsloop.step(cache=False)
    def total(xs, out: str):
        # What the fire's process tells the pipeline, for the tests to read.
        keys = ("OPSLOOP_SCHEDULE", "OPSLOOP_FIRE_ID", "OPSLOOP_FIRE_REASON",
                "OPSLOOP_TRIGGER_DATASET", "OPSLOOP_SCHEDULED_TIME")
        seen = {k: os.environ.get(k) for k in keys}
        seen["sum"] = sum(xs)
        if out:
            Path(out, f"fire-{seen['OPSLOOP_FIRE_ID']}.json").write_text(json.dumps(seen))
        return seen["sum"]

    @opsloop.pipeline
    def good(n: int = 3, out: str = ""):
        return total(load(n), out)

    @opsloop.step(cache=False)
    def wait_for(gate: str):
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no gate file {gate}")
            time.sleep(0.02)
        return 1

    @opsloop.pipeline
    def gated(gate: str):
        return wait_for(gate)

    @opsloop.step
    def boom(n: int):
        raise ValueError("bad batch")

    @opsloop.pipeline
    def bad(n: int = 1):
        return boom(n)

    not_a_pipeline = 42
    """
)


def write_flows(folder: Path, module: str = "flows") -> Path:
    """The flows module as ``folder/module.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(FLOWS)
    return path


def wait_until(condition: Callable[[], object], timeout: float = 60.0, every: float = 0.05) -> None:
    """Wait for ``condition()`` to be true (no fixed sleeps), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
