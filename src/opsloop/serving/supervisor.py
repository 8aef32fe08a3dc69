"""The inference servers ``opsloop server`` runs for the deployments it manages.

A deployment whose settings carry a ``port`` (``opsloop deploy create churn
models:/churn@production --set port=8081``) is *managed*: while ``opsloop server``
runs, it keeps ``opsloop serve DEPLOYMENT --host HOST --port PORT --workers N`` running
as a child process for it. :class:`Supervisor` is that background service (one entry
in ``opsloop.server.background.SERVICES``). Every ``interval`` (1 s) it:

1. takes or renews the ``serving-supervisor`` lease (a row of ``scheduler_leases``):
   with several server workers, or several servers on one database, only the holder
   runs children; the others wait, and take over once the lease expires;
2. reads which deployments want a server (one small query), starts a child for each
   new one, stops (SIGTERM: it drains its requests and flushes its prediction log) the
   child of a deployment deleted or no longer managed, and restarts a child whose
   host, port or worker count changed;
3. restarts a child that died, after a backoff (0.5 s, doubling up to 30 s while it
   keeps dying within a minute of its start), and records a ``deployment.server_exited``
   event at the first death of a streak;
4. asks a starting child's ``/v2/health/ready`` until it answers, then calls it
   ``running``;
5. writes what it runs to ``<OPSLOOP_HOME>/serving/supervisor.json`` (only when it
   changed), which ``GET /api/v1/deployments/{name}/server`` reads
   (:func:`server_state`).

On ``stop()`` (the server stops) every child gets SIGTERM, and SIGKILL if it is still
up after ``stop_timeout``. On Linux a child also gets SIGTERM if the supervising
thread dies with its process (e.g. ``opsloop server`` killed with SIGKILL), so no
orphan keeps the port. A child's output goes to ``<OPSLOOP_HOME>/logs/serving/NAME.log``.
Hot swaps (a new version, a moved alias, a promoted canary) need no restart: the child
polls its deployment itself.

``OPSLOOP_SERVING_SUPERVISOR=0`` turns it off.

Example::

    with Supervisor(store).running():
        ...   # every deployment with a port setting is served meanwhile
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from opsloop.core.ids import now_ms
from opsloop.core.ticker import Ticker
from opsloop.store import Store
from opsloop.store.leases import Lease, lease_holder
from opsloop.store.tables import deployments

log = logging.getLogger("opsloop.serving")

LEASE: Final = "serving-supervisor"
ENV: Final = "OPSLOOP_SERVING_SUPERVISOR"
STATE_FILE: Final = "supervisor.json"

# Statuses of a managed deployment's server.
STARTING: Final = "starting"  # the process is up; /v2/health/ready has not answered yet
RUNNING: Final = "running"  # it answered /v2/health/ready
BACKOFF: Final = "backoff"  # it exited; restarted at next_start_time

D = deployments


def enabled_by_env() -> bool:
    """False when ``OPSLOOP_SERVING_SUPERVISOR`` is 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Spec:
    """How a managed deployment's server runs; a change means a restart."""

    host: str
    port: int
    workers: int


@dataclass
class _Managed:
    name: str
    spec: Spec
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    status: str = STARTING
    started_time: int | None = None  # ms
    started_at: float = 0.0  # monotonic
    restarts: int = 0
    failures: int = 0  # deaths in a row, each within a minute of its start
    next_start: float = 0.0  # monotonic
    next_start_time: int | None = None  # ms, for the state file
    last_exit_code: int | None = None
    last_exit_time: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        host = self.spec.host
        reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return {
            "status": self.status,
            "pid": self.proc.pid if self.proc is not None else None,
            "host": host,
            "port": self.spec.port,
            "workers": self.spec.workers,
            "url": f"http://{reach}:{self.spec.port}",
            "restarts": self.restarts,
            "started_time": self.started_time,
            "last_exit_code": self.last_exit_code,
            "last_exit_time": self.last_exit_time,
            "next_start_time": self.next_start_time if self.status == BACKOFF else None,
            "log": str(self.log),
        }


def _death_signal() -> Callable[[], None] | None:
    """On Linux, a child to be sent SIGTERM when the thread that started it dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    term = int(signal.SIGTERM)

    def preexec() -> None:  # runs in the child between fork and exec: nothing else
        prctl(pr_set_pdeathsig, term)

    return preexec


class Supervisor(Ticker):
    """Runs ``opsloop serve`` for every deployment with a ``port`` setting (see the
    module docstring).

    Example::

        sup = Supervisor(store, interval=1.0)
        sup.start(); ...; sup.stop()
    """

    name = "serving-supervisor"

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 1.0,
        lease_ttl: float = 15.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        stop_timeout: float = 35.0,
        child_poll_interval: float = 1.0,
    ) -> None:
        if interval <= 0 or lease_ttl <= 2 * interval or backoff <= 0 or max_backoff < backoff:
            raise ValueError(
                "need interval > 0, lease_ttl > 2 * interval, 0 < backoff <= max_backoff"
            )
        super().__init__(interval)
        self.store = store
        self.db = store.db
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stop_timeout = stop_timeout
        self.child_poll_interval = child_poll_interval
        self.lease = Lease(self.db, LEASE, self.lease_ttl_ms)
        self.holder = self.lease.holder
        self.log_dir = store.settings.home / "logs" / "serving"
        self.state_path = state_path(store)
        self._managed: dict[str, _Managed] = {}
        self._leading = False
        self._written: dict[str, Any] | None = None
        self._preexec = _death_signal()

    # -- the background thread (started and stopped as a Ticker) ------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Stop every child (they drain and flush), give up the lease."""
        super().stop(self.stop_timeout + 10 if timeout is None else timeout)

    def _loop(self) -> None:
        # The children are started from this thread (their death signal follows it), so
        # they are stopped from it too, on the way out.
        try:
            super()._loop()
        finally:
            self._stop_all()
            try:
                self.lease.release()
            except Exception:
                log.exception("could not release the serving supervisor lease")

    # -- one tick -------------------------------------------------------------------------

    def tick(self) -> None:
        """One round: lease, wanted servers, start/stop/restart, readiness, state file."""
        if not self.lease.take(now_ms()):
            if self._leading:
                log.warning("serving supervisor lost its lease; stopping its servers")
                self._stop_all()
            self._leading = False
            return
        self._leading = True
        wanted = self._wanted()
        for name in list(self._managed):
            old = self._managed[name]
            if name not in wanted or wanted[name] != old.spec:
                why = "deleted or not managed any more" if name not in wanted else "changed"
                log.info("deployment %s %s: stopping its server", name, why)
                self._stop_children([old])
                del self._managed[name]
        now = time.monotonic()
        for name, spec in wanted.items():
            m = self._managed.get(name)
            if m is None:
                m = self._managed[name] = _Managed(name, spec, self.log_dir / f"{name}.log")
                self._launch(m)
                continue
            if m.proc is not None and m.proc.poll() is not None:
                self._exited(m, now)
            if m.proc is None and now >= m.next_start:
                m.restarts += 1
                self._launch(m)
            elif m.status == STARTING and m.proc is not None and _ready(m):
                m.status = RUNNING
                log.info("deployment %s serving at %s", name, m.state()["url"])
        self._write_state()

    def _wanted(self) -> dict[str, Spec]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(D.c.name, D.c.settings).order_by(D.c.name)).all()
        out: dict[str, Spec] = {}
        ports: set[int] = set()
        for name, raw in rows:
            try:
                settings = json.loads(raw or "{}")
            except ValueError:
                continue
            port = settings.get("port")
            if not isinstance(port, int) or port in ports:  # the service refuses a 2nd
                continue
            ports.add(port)
            out[name] = Spec(
                host=str(settings.get("host") or "127.0.0.1"),
                port=port,
                workers=max(1, int(settings.get("workers") or 1)),
            )
        return out

    def _launch(self, m: _Managed) -> None:
        m.log.parent.mkdir(parents=True, exist_ok=True)
        s = self.store.settings
        env = {
            **os.environ,
            "OPSLOOP_HOME": str(s.home),
            "OPSLOOP_DATABASE_URL": s.database_url,
            "OPSLOOP_ARTIFACTS": s.artifacts_url,
        }
        # Settings of this process's own serving, if any, are not the child's. (Imported
        # here: the inference server's modules take ~0.5 s that opsloop server's start
        # need not pay when no deployment is managed.)
        from opsloop.serving.app import CONFIG_ENV
        from opsloop.serving.deployment_server import DEPLOYMENT_ENV
        from opsloop.serving.metrics import MULTIPROC_ENV

        for key in (ENV, CONFIG_ENV, DEPLOYMENT_ENV, MULTIPROC_ENV):
            env.pop(key, None)
        cmd = [
            sys.executable,
            "-m",
            "opsloop.cli.main",
            "serve",
            m.name,
            "--host",
            m.spec.host,
            "--port",
            str(m.spec.port),
            "--workers",
            str(m.spec.workers),
            "--poll-interval",
            str(self.child_poll_interval),
        ]
        with open(m.log, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            m.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec,  # only prctl: see _death_signal
            )
        m.status = STARTING
        m.started_time = now_ms()
        m.started_at = time.monotonic()
        log.info(
            "deployment %s: started its server (pid %d, port %d)", m.name, m.proc.pid, m.spec.port
        )

    def _exited(self, m: _Managed, now: float) -> None:
        assert m.proc is not None
        m.last_exit_code = m.proc.returncode
        m.last_exit_time = now_ms()
        m.failures = m.failures + 1 if now - m.started_at < 60 else 1
        delay = min(self.max_backoff, self.backoff * 2 ** (m.failures - 1))
        m.next_start = now + delay
        m.next_start_time = m.last_exit_time + int(delay * 1000)
        m.proc = None
        m.status = BACKOFF
        log.warning(
            "deployment %s: its server exited with %s; restarting in %.1f s (see %s)",
            m.name,
            m.last_exit_code,
            delay,
            m.log,
        )
        if m.failures == 1:  # once per streak of failures, not once per restart
            self._event(m, delay)

    def _event(self, m: _Managed, delay: float) -> None:
        """A ``deployment.server_exited`` event (``GET /api/v1/events``)."""
        from opsloop.store.events import record_event

        try:
            record_event(
                self.db,
                "deployment.server_exited",
                f"the inference server of deployment {m.name!r} (port {m.spec.port}) exited "
                f"with {m.last_exit_code}; restarting it in {delay:.1f} s (log: {m.log})",
                source="serving",
                subject=m.name,
                severity="warning",
                payload={
                    "exit_code": m.last_exit_code,
                    "restarts": m.restarts,
                    "port": m.spec.port,
                    "log": str(m.log),
                },
            )
        except Exception:  # the supervisor goes on without its event
            log.exception("could not record the exit of deployment %s's server", m.name)

    def _stop_children(self, managed: list[_Managed]) -> None:
        """SIGTERM to each (it drains and flushes), SIGKILL after ``stop_timeout``."""
        procs = [m.proc for m in managed if m.proc is not None and m.proc.poll() is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "server pid %d did not stop in %.0f s; killing it", p.pid, self.stop_timeout
                )
                p.kill()
                p.wait()
        for m in managed:
            m.proc = None

    def _stop_all(self) -> None:
        self._stop_children(list(self._managed.values()))
        self._managed.clear()
        with contextlib.suppress(Exception):
            self._write_state()

    # -- state ----------------------------------------------------------------------------

    def state(self) -> dict[str, dict[str, Any]]:
        """Deployment name -> its server's state (status, pid, port, restarts, ...)."""
        return {name: m.state() for name, m in sorted(self._managed.items())}

    def _write_state(self) -> None:
        body = {"holder": self.holder, "deployments": self.state()}
        if body == self._written:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**body, "updated_time": now_ms()}, indent=1))
        os.replace(tmp, self.state_path)  # readers see the old file or the new one
        self._written = body


def _ready(m: _Managed) -> bool:
    url = f"{m.state()['url']}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def state_path(store: Store) -> Path:
    """Where the supervisor writes what it runs."""
    return store.settings.home / "serving" / STATE_FILE


def server_state(store: Store, name: str) -> dict[str, Any] | None:
    """The state of the server ``opsloop server`` runs for deployment ``name``: a dict
    with ``status`` (starting, running, backoff), ``pid``, ``host``, ``port``, ``url``,
    ``restarts``, ``started_time``, ``last_exit_code`` ...; None when no supervisor
    holding the lease runs one for it (none runs, or it is not managed yet).

    Example::

        server_state(store, "churn")["status"]       # "running"
    """
    try:
        data = json.loads(state_path(store).read_text())
    except (OSError, ValueError):
        return None
    holder = lease_holder(store.db, LEASE, now_ms())
    if holder is None or holder != data.get("holder"):
        return None  # written by a supervisor that is gone
    state = data.get("deployments", {}).get(name)
    return dict(state) if isinstance(state, dict) else None


def from_env(store: Store) -> Supervisor | None:
    """The server's supervisor, unless ``OPSLOOP_SERVING_SUPERVISOR=0``."""
    return Supervisor(store) if enabled_by_env() else None
