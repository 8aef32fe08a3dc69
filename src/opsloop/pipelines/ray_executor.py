"""The Ray executor: each attempt of a step is one Ray task.

A task carries the same pickled bytes a local worker gets (``executors.payload``) and
calls the same attempt function (``worker.run_payload``); the worker stores the step's
outputs in the artifact store itself (the task names the store by its absolute URL)
and never touches the database, so results are cached and tracked as with
``LocalExecutor``. Ray must be installed (``pip install 'opsloop[ray]'``) and every
node must reach the artifact store (a shared path, or S3).

* Ray's own task retries are off (``max_retries=0``): retries are the runner's, by the
  step's policy. A worker process that dies under a step (``os._exit``, a segfault, the
  OOM killer) fails that attempt (status ``error``); a lost node or object store counts
  as ``lost``, which the runner retries once for free.
* A step with a timeout runs as a streaming-generator task that yields once it has
  loaded the step, so the timeout counts from there (not while the task is queued or
  its worker starts), as with ``LocalExecutor``. When it is up, the task is cancelled
  with ``ray.cancel(force=True)``, which kills its worker process.
* ``abort()`` force-cancels every attempt in flight; ``close()`` waits for them, then
  disconnects from Ray if (and only if) this executor connected.

**Ray Client** (``address="ray://head:10001"``, or ``RAY_ADDRESS`` so): the process
running the pipeline is a thin client of the cluster, which needs the same Ray and
Python versions on both sides (``ray[client]``, part of ``opsloop[ray]``). Everything
above holds, with one difference in how: a Ray Client cannot consume streaming
generators, so a step with a timeout runs under a supervisor task on the cluster
(``num_cpus=0``) that starts the attempt there and enforces the timeout as this process
otherwise does; ``abort()`` cancels the supervisor, which cancels its attempt with it.
The workers still write outputs to the artifact store themselves, and the client reads
them from there: both must reach it (a local folder only works when the client runs on
the cluster's machine).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from opsloop.errors import InvalidInput, Unavailable
from opsloop.pipelines.executors import payload
from opsloop.pipelines.worker import (
    ERROR,
    LOST,
    TIMEOUT,
    Outcome,
    Task,
    _unpickle,
    execute,
    run_payload,
)

log = logging.getLogger(__name__)

# How long to wait, after a timed-out task is force-cancelled, for Ray to confirm it.
CANCEL_WAIT = 10.0

# Connections tried before a Ray Client address counts as unavailable (see _connect).
CLIENT_CONNECT_ATTEMPTS = 3

INSTALL_HINT = "executor='ray' needs Ray, which is not installed: pip install 'opsloop[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or ``InvalidInput`` saying how to install it.

    Example::

        ray = import_ray()
    """
    try:
        import ray
    except ImportError:
        raise InvalidInput(INSTALL_HINT) from None
    return ray


# -- what runs in a Ray worker ------------------------------------------------------------


def _timed_attempt(data: bytes) -> Iterator[Any]:
    """Like ``worker.run_in_child``: signal once the step is loaded, then run it."""
    task = _unpickle(data)
    yield b"started"
    yield task if isinstance(task, Outcome) else execute(task, in_worker=True)


def _await_timed(
    ray: Any, gen: Any, step: str, timeout: float, on_cancel: Callable[[], None] | None = None
) -> Outcome:
    """The Outcome of a timed attempt (a ``_timed_attempt`` generator task): no time
    limit while it is queued and loads the step, then ``timeout`` seconds, after which
    the task is force-cancelled (its worker process killed). Raises what Ray raises."""
    # Queued, then the worker loads the step: no time limit (abort() ends it).
    ray.get(next(gen))
    started = time.time()
    ready, _ = ray.wait([gen], timeout=timeout)
    if ready:
        outcome: Outcome = ray.get(next(gen))
        return outcome
    ray.cancel(gen, force=True)
    if on_cancel is not None:
        on_cancel()
    # Until Ray confirms, so that a retry does not overlap the killed attempt.
    ray.wait([gen], timeout=CANCEL_WAIT)
    return Outcome(
        TIMEOUT,
        error=(
            f"TimeoutError: step {step!r} took longer than its timeout of {timeout:g} s and "
            "was killed (its Ray task was cancelled)"
        ),
        started=started,
        duration=timeout,
    )


def _supervise(data: bytes, step: str, timeout: float) -> Outcome:
    """A timed attempt for a Ray Client driver, which cannot consume streaming
    generators: this task runs on the cluster, starts the attempt there and enforces
    its timeout as ``RayExecutor`` otherwise does in the driver."""
    import ray

    gen = _remote_functions(ray)[1].remote(data)
    try:
        return _await_timed(ray, gen, step, timeout)
    except Exception as exc:
        return _failure_outcome(ray, exc, cancelled=False)


def _failure_outcome(ray: Any, exc: BaseException, *, cancelled: bool) -> Outcome:
    """The Outcome of an attempt whose Ray task raised ``exc``."""
    errors = ray.exceptions
    if cancelled or isinstance(exc, errors.TaskCancelledError):
        return Outcome(LOST, error="CancelledError: the attempt was cancelled")
    if isinstance(exc, errors.WorkerCrashedError):
        error = (
            "WorkerCrashedError: the Ray worker process died while the step ran "
            "(it exited, crashed or was killed, e.g. for lack of memory)"
        )
        # As its traceback, so that the attempt's logs say why it ended.
        return Outcome(ERROR, error=error, traceback=error + "\n")
    lost = (
        errors.NodeDiedError,
        errors.LocalRayletDiedError,
        errors.ObjectLostError,
        errors.OwnerDiedError,
        errors.RaySystemError,
    )
    if isinstance(exc, lost):
        return Outcome(LOST, error=f"{type(exc).__name__}: {exc}")
    return Outcome(
        ERROR,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
    )


_remote_lock = threading.Lock()
_remote: dict[str, Any] = {}


def _remote_functions(ray: Any) -> tuple[Any, Any, Any]:
    """``run_payload``, ``_timed_attempt`` and ``_supervise`` as Ray remote functions
    (made once; Ray converts them for a Ray Client connection when they are called)."""
    with _remote_lock:
        if not _remote:
            _remote["plain"] = ray.remote(max_retries=0)(run_payload)
            _remote["timed"] = ray.remote(max_retries=0)(_timed_attempt)
            # It only waits: it must not hold a CPU its own attempt needs.
            _remote["supervised"] = ray.remote(num_cpus=0, max_retries=0)(_supervise)
        return _remote["plain"], _remote["timed"], _remote["supervised"]


def _connect(ray: Any, address: str | None) -> None:
    """Connect to the cluster at ``address`` (None: ``RAY_ADDRESS``), or raise
    ``Unavailable``.

    Through Ray Client, each connection gets a server process of its own on the head
    node, which can fail to start (seen on a loaded machine: it dies right after its
    fork, and the connection is refused with "Starting Ray client server failed"); a new
    connection gets a new one, so such a connection is tried again, twice.
    """
    target = address or os.environ.get("RAY_ADDRESS") or ""
    attempts = CLIENT_CONNECT_ATTEMPTS if "://" in target else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=True,
                ignore_reinit_error=True,
                runtime_env=None,
            )
            return
        except ConnectionError as exc:
            # The server's traceback comes inside the message: its last line says it.
            why = (str(exc).strip().splitlines() or [""])[-1]
            # Only a refused start is tried again: an address where nothing answers has
            # already been tried for a while by Ray itself.
            if attempt == attempts or not isinstance(exc, ConnectionAbortedError):
                raise Unavailable(
                    f"cannot connect to the Ray cluster at {target}"
                    + (f" (tried {attempt} times)" if attempt > 1 else "")
                    + f": {type(exc).__name__}: {why}"
                ) from exc
            log.warning("Ray Client connection to %s refused (%s); trying again", target, why)
            time.sleep(attempt)


def _client_connected() -> bool:
    """Whether this process talks to Ray through Ray Client (``ray://``)."""
    try:
        client: Any = importlib.import_module("ray.util.client")
    except ImportError:  # a Ray without the client
        return False
    return bool(client.ray.is_connected())


# -- the executor ---------------------------------------------------------------------------


class RayExecutor:
    """Run attempts as Ray tasks on a Ray cluster, up to its CPU count at once.

    ``address``: a cluster to connect to (``"ray://head:10001"``, ``"auto"``,
    ``"10.0.0.5:6379"``); ``None`` uses ``RAY_ADDRESS`` if set, else starts a local
    Ray instance. If this process is already connected to Ray, that connection is used
    (and left open by ``close()``). ``max_workers`` caps the attempts in flight
    (default: the cluster's CPUs, as ``ray.cluster_resources()`` reports them at start).

    Example::

        with RayExecutor(address="ray://head:10001") as ex:
            opsloop.pipelines.run(churn, {"path": "s3://data/churn.csv"}, executor=ex)

        opsloop.pipelines.run(churn, executor="ray")     # a shared one, RAY_ADDRESS or local
    """

    in_process = False

    def __init__(self, address: str | None = None, *, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise InvalidInput(f"max_workers must be an integer >= 1, got {max_workers!r}")
        ray = import_ray()
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            if address is None and not os.environ.get("RAY_ADDRESS"):
                ray.init(num_cpus=max_workers or os.cpu_count() or 1, include_dashboard=False)
            else:
                _connect(ray, address)
            self._owns = True
        self.address = address
        # Through Ray Client, timed attempts are supervised on the cluster (see above).
        self.client = _client_connected()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity: int = max_workers or max(1, cpus)
        self._plain, self._timed, self._supervised = _remote_functions(ray)
        self._lock = threading.Lock()
        # Every attempt in flight: its Ray ref (or generator) by the future it completes.
        self._inflight: dict[Future[Outcome], Any] = {}
        self._cancelled: set[int] = set()  # id() of the refs abort() cancelled
        self._closed = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RayExecutor address={self.address!r} capacity={self.capacity}>"

    def submit(self, task: Task) -> Future[Outcome]:
        """Start the attempt as a Ray task; the future's result is its Outcome.

        Example::

            RayExecutor().submit(task).result().status     # "ok"
        """
        data = payload(task)
        out: Future[Outcome] = Future()
        watch = task.timeout is not None and not self.client
        with self._lock:
            if self._closed:
                raise InvalidInput("this executor is closed")
            if task.timeout is None:
                ref = self._plain.remote(data)
                self._inflight[out] = ref
            elif self.client:
                ref = self._supervised.remote(data, task.step, task.timeout)
                self._inflight[out] = ref
            else:
                gen = self._timed.remote(data)
                self._inflight[out] = gen
        if not watch:
            ref.future().add_done_callback(functools.partial(self._settle, out, ref))
        else:
            threading.Thread(
                target=self._run_timed,
                args=(gen, task, out),
                name=f"opsloop-ray-{task.step}",
                daemon=True,
            ).start()
        return out

    def _finish(self, out: Future[Outcome], ref: Any, outcome: Outcome) -> None:
        with self._lock:
            self._inflight.pop(out, None)
            self._cancelled.discard(id(ref))
        out.set_result(outcome)

    def _settle(self, out: Future[Outcome], ref: Any, raw: Future[Any]) -> None:
        try:
            outcome: Outcome = raw.result()
        except BaseException as exc:
            outcome = self._failure(exc, ref)
        self._finish(out, ref, outcome)

    def _run_timed(self, gen: Any, task: Task, out: Future[Outcome]) -> None:
        outcome: Outcome
        assert task.timeout is not None
        try:
            outcome = _await_timed(
                self._ray, gen, task.step, task.timeout, functools.partial(self._cancel, gen)
            )
        except BaseException as exc:
            outcome = self._failure(exc, gen)
        self._finish(out, gen, outcome)

    def _cancel(self, ref: Any) -> None:
        with self._lock:
            self._cancelled.add(id(ref))

    def _failure(self, exc: BaseException, ref: Any) -> Outcome:
        """The Outcome of an attempt whose Ray task raised ``exc``."""
        with self._lock:
            cancelled = id(ref) in self._cancelled
        return _failure_outcome(self._ray, exc, cancelled=cancelled)

    def close(self) -> None:
        """Wait for the attempts in flight, then disconnect if this executor connected.

        Example::

            ex = RayExecutor("auto")
            ...
            ex.close()
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._inflight)
        if pending and self._ray.is_initialized():
            wait_futures(pending)
        if self._owns:
            self._ray.shutdown()

    def abort(self) -> None:
        """Force-cancel every attempt in flight now; the executor stays usable.

        Example::

            ex.abort()    # after Ctrl-C
        """
        with self._lock:
            refs = list(self._inflight.values())
            self._cancelled.update(id(r) for r in refs)
        for ref in refs:
            # Already finished, or Ray is gone: nothing left to stop.
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)


_shared: dict[int | None, RayExecutor] = {}
_shared_lock = threading.Lock()


def shared_ray_executor(max_workers: int | None = None) -> RayExecutor:
    """The process-wide ``RayExecutor`` (for ``run(executor="ray")``), kept between runs.

    It connects to ``RAY_ADDRESS`` if set (or to the Ray this process is already
    connected to), else starts a local Ray instance.

    Example::

        ex = shared_ray_executor()
    """
    with _shared_lock:
        ex = _shared.get(max_workers)
        if ex is None or ex._closed or not ex._ray.is_initialized():
            ex = _shared[max_workers] = RayExecutor(max_workers=max_workers)
        return ex


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        executors = list(_shared.values())
        _shared.clear()
    for ex in executors:
        ex.close()
