"""Starting ``opsloop serve`` the way a user does, and reading its metrics.

Servers run as ``python -m opsloop.cli.main serve`` on a free loopback port, waited on
through ``/v2/health/ready``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_serve(
    args: list[str], log: Path, env_extra: dict[str, str] | None = None, timeout: float = 60
) -> Served:
    """``opsloop serve ARGS`` on a free port; returns once it answers ready."""
    port = free_port()
    env = {**os.environ, **(env_extra or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop.cli.main", "serve", *args, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"opsloop serve exited at start:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return Served(url, proc, log)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"opsloop serve did not get ready:\n{log.read_text()}")
        time.sleep(0.05)


def stop_serve(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(15)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(10)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``cond`` until it holds (an AssertionError naming ``what`` after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.05)
