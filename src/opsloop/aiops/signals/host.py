"""Signals of the host opsloop runs on, through psutil: CPU, memory, disk, network.

Every series has the labels ``job="host"`` and ``host`` (the host name)::

    host_cpu_percent                      busy share of all CPUs since the last collection
    host_load1 / host_load5 / host_load15 load averages
    host_memory_used_percent              as psutil's virtual_memory().percent
    host_memory_available_bytes / host_memory_total_bytes
    host_swap_used_percent
    host_disk_used_percent{mountpoint}    per mounted file system (the root always)
    host_disk_free_bytes{mountpoint} / host_disk_total_bytes{mountpoint}
    host_disk_read_bytes_total / host_disk_written_bytes_total
    host_network_receive_bytes_total{interface} / host_network_transmit_bytes_total{interface}
    host_network_receive_errors_total{interface} / host_network_transmit_errors_total{interface}

A reading psutil cannot make on this system (no swap, no disk counters in a container)
is left out rather than failing the collection.

Example::

    rows = HostCollector().collect()
    Signals(store).ingest(rows)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from opsloop.aiops.signals.model import check_labels
from opsloop.aiops.signals.storage import Row
from opsloop.core.ids import now_ms

log = logging.getLogger("opsloop.signals")

MAX_MOUNTS = 16
MAX_INTERFACES = 32
_PSEUDO_FS = {"tmpfs", "devtmpfs", "squashfs", "overlay", "proc", "sysfs", "devfs", "autofs"}


class HostCollector:
    """Collects the host's signals; keep one to get CPU use between collections."""

    def __init__(self, *, host: str | None = None, mounts: list[str] | None = None) -> None:
        import psutil  # type: ignore[import-untyped]

        self._psutil = psutil
        self.host = host or socket.gethostname()
        self.labels = check_labels({"job": "host", "host": self.host[:1024]})
        self.mounts = mounts
        psutil.cpu_percent(interval=None)  # the first reading starts the interval

    def _mounts(self) -> list[str]:
        if self.mounts is not None:
            return self.mounts
        found = ["/"]
        try:
            for p in self._psutil.disk_partitions(all=False):
                if p.fstype in _PSEUDO_FS or p.mountpoint.startswith(("/proc", "/sys", "/snap")):
                    continue
                if p.mountpoint not in found:
                    found.append(p.mountpoint)
        except OSError:
            pass
        return found[:MAX_MOUNTS]

    def collect(self, at: int | None = None) -> list[Row]:
        """One reading of every host signal, at ``at`` (default now)."""
        at = now_ms() if at is None else at
        ps = self._psutil
        rows: list[Row] = []
        base = self.labels

        def add(name: str, value: float, **extra: str) -> None:
            labels = {**base, **extra} if extra else base
            rows.append((name, labels, at, float(value)))

        def attempt(what: str, read: Callable[[], Any]) -> None:
            try:
                read()
            # psutil raises NotImplementedError for a reading the platform lacks (and
            # some lack the function: AttributeError): that signal is left out.
            except (OSError, AttributeError, RuntimeError, NotImplementedError) as exc:
                log.debug("host signal %s not available: %s", what, exc)

        attempt("cpu", lambda: add("host_cpu_percent", ps.cpu_percent(interval=None)))

        def load() -> None:
            one, five, fifteen = os.getloadavg()
            add("host_load1", one)
            add("host_load5", five)
            add("host_load15", fifteen)

        attempt("load", load)

        def memory() -> None:
            vm = ps.virtual_memory()
            add("host_memory_used_percent", vm.percent)
            add("host_memory_available_bytes", vm.available)
            add("host_memory_total_bytes", vm.total)
            sw = ps.swap_memory()
            if sw.total:
                add("host_swap_used_percent", sw.percent)

        attempt("memory", memory)
        for mount in self._mounts():

            def disk(mount: str = mount) -> None:
                du = ps.disk_usage(mount)
                add("host_disk_used_percent", du.percent, mountpoint=mount)
                add("host_disk_free_bytes", du.free, mountpoint=mount)
                add("host_disk_total_bytes", du.total, mountpoint=mount)

            attempt(f"disk {mount}", disk)

        def disk_io() -> None:
            io = ps.disk_io_counters(perdisk=False)
            if io is not None:
                add("host_disk_read_bytes_total", io.read_bytes)
                add("host_disk_written_bytes_total", io.write_bytes)

        attempt("disk io", disk_io)

        def network() -> None:
            nics = ps.net_io_counters(pernic=True)
            for nic in sorted(nics)[:MAX_INTERFACES]:
                c = nics[nic]
                add("host_network_receive_bytes_total", c.bytes_recv, interface=nic)
                add("host_network_transmit_bytes_total", c.bytes_sent, interface=nic)
                add("host_network_receive_errors_total", c.errin, interface=nic)
                add("host_network_transmit_errors_total", c.errout, interface=nic)

        attempt("network", network)
        return rows
