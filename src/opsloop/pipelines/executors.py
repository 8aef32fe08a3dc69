"""Executors: where the attempts of steps run.

The runner decides *what* runs and when (order, cache, retries, tracking); an executor
decides *where* one attempt runs, and enforces its timeout, because only it knows how
to stop what it started. Its futures never raise: every failure is an ``Outcome``.
That split is what lets a Ray executor (one attempt = one Ray task, a timeout =
``ray.cancel(force=True)``) slot in beside these two without touching the runner.

* ``InlineExecutor`` runs each attempt in the calling thread, one at a time, passing
  live values between steps: for debugging (breakpoints work) and for tiny steps. A
  step that times out there is abandoned, since a thread cannot be killed.
* ``LocalExecutor`` runs attempts in a ``ProcessPoolExecutor`` of ``forkserver`` (or,
  where there is none, ``spawn``) processes, reused across steps and pipelines, so a
  step costs no process start. A step with a timeout runs instead in a process of its
  own from the same context, which is killed (and reaped) when the time is up: a pool
  worker cannot be killed alone without breaking the pool for every other step.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from multiprocessing import forkserver, popen_forkserver, reduction
from multiprocessing import spawn as mp_spawn
from multiprocessing import util as mp_util
from multiprocessing.connection import wait as mp_wait
from multiprocessing.context import BaseContext, ForkServerProcess, set_spawning_popen
from typing import Any, Protocol, runtime_checkable

from opsloop.errors import InvalidInput
from opsloop.pipelines.values import dumps_code
from opsloop.pipelines.worker import (
    ERROR,
    LOST,
    TIMEOUT,
    Outcome,
    Task,
    execute,
    run_in_child,
    run_payload,
)

# How long a fresh process for a timed step may take to start before it counts as lost.
START_TIMEOUT = 120.0


@runtime_checkable
class Executor(Protocol):
    """Runs attempts of steps. See the module docstring for the contract.

    Example::

        class MyExecutor:
            capacity = 8              # attempts that may run at once
            in_process = False        # True: tasks carry live values, not pickles
            def submit(self, task: Task) -> Future[Outcome]: ...
            def close(self) -> None: ...   # wait for running attempts, free resources
            def abort(self) -> None: ...   # stop everything now (Ctrl-C)
    """

    @property
    def capacity(self) -> int:
        """How many attempts may run at once."""
        ...

    @property
    def in_process(self) -> bool:
        """Whether attempts run in this process (tasks then carry live values)."""
        ...

    def submit(self, task: Task) -> Future[Outcome]:
        """Start one attempt; the future's result is its Outcome (it never raises)."""
        ...

    def close(self) -> None:
        """Wait for running attempts, then free the executor's resources."""
        ...

    def abort(self) -> None:
        """Stop every running attempt now (Ctrl-C); the executor stays usable."""
        ...


def _done(outcome: Outcome) -> Future[Outcome]:
    fut: Future[Outcome] = Future()
    fut.set_result(outcome)
    return fut


class InlineExecutor:
    """Run each attempt in the calling thread (timed attempts: in a helper thread).

    Example::

        opsloop.pipelines.run(churn, {"path": "x.csv"}, executor=InlineExecutor())
    """

    capacity = 1
    in_process = True

    def submit(self, task: Task) -> Future[Outcome]:
        """Run the attempt now, in this thread; the future is already done.

        Example::

            outcome = InlineExecutor().submit(task).result()
        """
        if task.timeout is None:
            return _done(execute(task, in_worker=False))
        box: list[Outcome] = []
        thread = threading.Thread(
            target=lambda: box.append(execute(task, in_worker=False)),
            name=f"opsloop-step-{task.step}",
            daemon=True,
        )
        thread.start()
        thread.join(task.timeout)
        if box:
            return _done(box[0])
        return _done(
            Outcome(
                TIMEOUT,
                error=(
                    f"TimeoutError: step {task.step!r} took longer than its timeout of "
                    f"{task.timeout:g} s; it was abandoned (an in-process step cannot be "
                    "killed and may still be running)"
                ),
                duration=task.timeout,
            )
        )

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def payload(task: Task) -> bytes:
    """The bytes sent to a worker for ``task`` (project code by value, see ``values``).

    Example::

        data = payload(task)      # what run_payload(data) runs in a worker
    """
    return dumps_code(task.wire(), task.by_value)


def _default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class _NoMainPopen(popen_forkserver.Popen):
    """Start a forkserver child as multiprocessing does, except that the child does not
    re-import the parent's ``__main__``.

    multiprocessing re-runs the main script in each child so that objects pickled by
    reference to ``__main__`` resolve there. Workers need none of it - step code and
    values are pickled by value (cloudpickle) - and re-running it cost each worker the
    script's own imports (0.4 s for a script that imports opsloop's runner), ran its
    top-level code again, and made ``if __name__ == "__main__":`` mandatory.
    (``_launch`` is CPython's own, 3.11-3.13, but for the two keys it drops.)
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = mp_spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        close = mp_util.close_fds  # type: ignore[attr-defined]
        self.finalizer = mp_util.Finalize(self, close, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _WorkerProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _NoMainPopen(process_obj)


def _process(ctx: BaseContext, **kwargs: Any) -> Any:
    """A process of ``ctx`` (forkserver: one that does not re-run ``__main__``)."""
    if ctx.get_start_method() == "forkserver":
        return _WorkerProcess(**kwargs)
    return ctx.Process(**kwargs)  # type: ignore[attr-defined]


def _serve(conn: Any) -> None:
    """A pool worker's life: take a pickled task, run it, send back the pickled outcome,
    until the parent closes its end of the pipe."""
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not data:  # the pool is shutting down
            break
        outcome = run_payload(data)
        try:
            reply = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an error object that cannot be pickled, say
            reply = pickle.dumps(
                Outcome(
                    ERROR,
                    error=f"the step's outcome cannot be sent back: {type(exc).__name__}: {exc}",
                    stdout=outcome.stdout,
                    stderr=outcome.stderr,
                    started=outcome.started,
                    duration=outcome.duration,
                ),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            break
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: nothing here needs it, and it is slow


class _Worker:
    __slots__ = ("conn", "fut", "proc")

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.fut: Future[Outcome] | None = None


_start_lock = threading.Lock()


class _Pool:
    """Worker processes, each with a pipe of its own, and one thread that reads them all.

    A task is written straight to an idle worker's pipe by the thread that submits it,
    and its outcome is read by the reader thread, which settles the future: one thread
    hand-off per attempt. (``ProcessPoolExecutor`` makes three - a management thread, a
    queue feeder thread and back - which on a chain of tiny steps cost more than the
    steps: measured 1.9 vs ... ms a step, see bench/pipeline_overhead.py.) A worker that
    dies fails the attempt it was running with ``LOST``, and is replaced on demand.
    """

    def __init__(self, ctx: BaseContext, size: int) -> None:
        self._ctx = ctx
        self._size = size
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._backlog: deque[tuple[bytes, Future[Outcome]]] = deque()
        self._starting = 0  # workers asked for and not yet up
        self._started = threading.Event()  # set whenever a start finishes
        self._wake_r, self._wake_w = ctx.Pipe(duplex=False)
        self._stopping = False
        self._reader = threading.Thread(target=self._read, name="opsloop-pool-reader", daemon=True)
        self._reader.start()

    # -- submitting ----------------------------------------------------------------------

    def submit(self, data: bytes) -> Future[Outcome]:
        """Send to an idle worker, or queue the task for the next worker that is free or
        starts (starting one more, in the background, while there is room)."""
        fut: Future[Outcome] = Future()
        with self._lock:
            if self._stopping:
                raise RuntimeError("the pool is shut down")
            worker = self._idle.pop() if self._idle else None
            if worker is not None:
                worker.fut = fut
            else:
                self._backlog.append((data, fut))
                grow = self._reserve(1)
        if worker is not None:
            self._send(worker, data)
        elif grow:
            self._grow(grow)
        return fut

    def _reserve(self, n: int) -> int:
        """Count ``n`` more workers as starting, within the pool's size (lock held)."""
        n = max(0, min(n, self._size - len(self._workers) - self._starting))
        self._starting += n
        return n

    def _grow(self, n: int) -> None:
        """Start ``n`` reserved workers in a thread of their own: process starts (the
        first one starts the fork server: a Python process and its imports) never hold
        up the caller, which meanwhile prepares and records the pipeline."""
        threading.Thread(
            target=self._start_workers, args=(n,), name="opsloop-pool-start", daemon=True
        ).start()

    def _start_workers(self, n: int) -> None:
        # One after the other: multiprocessing's process start is not thread-safe.
        with _start_lock:
            for _ in range(n):
                try:
                    worker = self._spawn()
                except BaseException as exc:
                    self._start_failed(exc)
                    continue
                nxt = None
                with self._lock:
                    self._starting -= 1
                    self._workers.append(worker)
                    if self._backlog:
                        nxt = self._backlog.popleft()
                        worker.fut = nxt[1]
                    else:
                        self._idle.append(worker)
                self._wake()  # the reader must watch the new pipe
                self._started.set()
                if nxt is not None:
                    self._send(worker, nxt[0])

    def _start_failed(self, exc: BaseException) -> None:
        with self._lock:
            self._starting -= 1
            # With no worker up or coming, nothing would ever take the queued tasks.
            stranded = list(self._backlog) if not self._workers and not self._starting else []
            if stranded:
                self._backlog.clear()
        self._started.set()
        for _, fut in stranded:
            fut.set_result(
                Outcome(LOST, error=f"cannot start a worker process: {type(exc).__name__}: {exc}")
            )

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = _process(self._ctx, target=_serve, args=(child,), name="opsloop-worker", daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _send(self, worker: _Worker, data: bytes) -> None:
        # If it died, the reader sees its pipe close and settles the attempt as LOST.
        with contextlib.suppress(OSError, EOFError, ValueError):
            worker.conn.send_bytes(data)

    def _wake(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._wake_w.send_bytes(b"w")

    def start_all(self, *, wait: bool = True, more: bool = True) -> None:
        """Start every missing worker (in the background; ``wait``: until all are up;
        ``more=False``: only wait for those already starting)."""
        with self._lock:
            n = self._reserve(self._size) if more else 0
        if n:
            self._grow(n)
        while wait:
            with self._lock:
                if not self._starting:
                    return
                self._started.clear()
            self._started.wait(1.0)

    # -- reading -------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            with self._lock:
                if self._stopping and not self._workers:
                    return
                conns = {w.conn: w for w in self._workers}
            ready = mp_wait([self._wake_r, *conns])
            for conn in ready:
                if conn is self._wake_r:
                    try:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                    except (EOFError, OSError):
                        return
                    continue
                self._on_ready(conns[conn])

    def _on_ready(self, worker: _Worker) -> None:
        try:
            reply = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._on_death(worker)
            return
        fut = worker.fut
        worker.fut = None
        try:
            outcome: Outcome = pickle.loads(reply)
        except Exception as exc:
            outcome = Outcome(ERROR, error=f"cannot read the step's outcome: {exc}")
        nxt = None
        with self._lock:
            if self._backlog:
                nxt = self._backlog.popleft()
                worker.fut = nxt[1]
            else:
                self._idle.append(worker)
        if fut is not None and not fut.done():
            fut.set_result(outcome)
        if nxt is not None:
            self._send(worker, nxt[0])

    def _on_death(self, worker: _Worker) -> None:
        proc = worker.proc
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        worker.conn.close()
        fut, worker.fut = worker.fut, None
        grow = 0
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            if self._backlog and not self._stopping:
                grow = self._reserve(len(self._backlog))  # its place is free
        if fut is not None and not fut.done():
            fut.set_result(
                Outcome(
                    LOST,
                    error=(
                        "WorkerLost: the worker process died while the step ran "
                        f"(exit code {proc.exitcode})"
                    ),
                )
            )
        if grow:
            self._grow(grow)

    # -- stopping ------------------------------------------------------------------------

    def kill(self) -> None:
        """Kill every worker; attempts running on them end as LOST, queued ones too."""
        with self._lock:
            workers = list(self._workers)
            backlog = list(self._backlog)
            self._backlog.clear()
        for _, fut in backlog:
            fut.set_result(Outcome(LOST, error="the attempt was cancelled"))
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()

    def shutdown(self, *, kill: bool = False) -> None:
        """Wait for running attempts (or kill them), then stop the workers and the reader."""
        if kill:
            self.kill()
        with self._lock:
            self._stopping = True
            busy = [w.fut for w in self._workers if w.fut is not None]
            busy += [fut for _, fut in self._backlog]
        for fut in busy:
            fut.result()
        self.start_all(wait=True, more=False)  # workers still starting come up first
        with self._lock:
            workers = list(self._workers)
            self._idle.clear()
        for w in workers:
            self._send(w, b"")  # the worker exits; the reader sees it go and forgets it
        self._wake()
        self._reader.join(10)
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join()
            w.conn.close()
        self._wake_r.close()
        self._wake_w.close()


class LocalExecutor:
    """Run attempts in local worker processes, up to ``max_workers`` at once.

    Workers start as Python's ``forkserver``/``spawn`` processes do: a script that runs
    a pipeline at import time must do so under ``if __name__ == "__main__":``, as any
    multiprocessing program must. ``abort()`` stops every attempt running on this
    executor, whichever pipeline started it.

    Example::

        with LocalExecutor(max_workers=4) as ex:
            opsloop.pipelines.run(churn, executor=ex)
    """

    in_process = False

    def __init__(self, max_workers: int | None = None, *, start_method: str | None = None) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise InvalidInput(f"max_workers must be an integer >= 1, got {max_workers!r}")
        self.capacity: int = max_workers or os.cpu_count() or 1
        method = start_method or _default_start_method()
        self._ctx: BaseContext = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from a server that has imported these once. The data
            # libraries only if this process uses them (then its steps likely do too).
            preload = ["opsloop.pipelines.executors"]
            preload += [m for m in ("pandas", "pyarrow.parquet") if m in sys.modules]
            self._ctx.set_forkserver_preload(preload)
        self._pool: _Pool | None = None
        self._lock = threading.Lock()
        self._children: set[Any] = set()
        self._closed = False

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalExecutor max_workers={self.capacity}>"

    def _get_pool(self) -> _Pool:
        with self._lock:
            if self._closed:
                raise InvalidInput("this executor is closed")
            if self._pool is None:
                self._pool = _Pool(self._ctx, self.capacity)
            return self._pool

    def warm(self) -> None:
        """Start every worker process now rather than on the first steps.

        Example::

            LocalExecutor(8).warm()
        """
        self._get_pool().start_all()

    def prestart(self) -> None:
        """Start the missing worker processes in the background and return at once (a
        pipeline run calls this first, so that they start while it prepares).

        Example::

            LocalExecutor(8).prestart()
        """
        self._get_pool().start_all(wait=False)

    def submit(self, task: Task) -> Future[Outcome]:
        """Start the attempt in a worker (or, with a timeout, a process of its own).

        Example::

            fut = LocalExecutor(2).submit(task)
            fut.result().status        # "ok"
        """
        data = payload(task)
        if task.timeout is not None:
            out: Future[Outcome] = Future()
            threading.Thread(
                target=self._run_child,
                args=(data, task, out),
                name=f"opsloop-step-{task.step}",
                daemon=True,
            ).start()
            return out
        for _ in range(2):
            pool = self._get_pool()
            try:
                return pool.submit(data)
            except RuntimeError:  # shut down by an abort() on another thread: afresh
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                continue
        return _done(Outcome(LOST, error="RuntimeError: cannot start worker processes"))

    def _run_child(self, data: bytes, task: Task, out: Future[Outcome]) -> None:
        recv, send = self._ctx.Pipe(duplex=False)
        proc = _process(
            self._ctx, target=run_in_child, args=(data, send), name=f"opsloop-step-{task.step}"
        )
        outcome: Outcome
        try:
            proc.start()
            with self._lock:
                self._children.add(proc)
            send.close()
            outcome = self._await_child(proc, recv, task)
        except BaseException as exc:
            outcome = Outcome(LOST, error=f"{type(exc).__name__}: {exc}")
        finally:
            if proc.pid is not None:  # it started
                if proc.is_alive():
                    proc.kill()
                proc.join()  # reap it: no zombies
            recv.close()
            with self._lock:
                self._children.discard(proc)
        out.set_result(outcome)

    @staticmethod
    def _await_child(proc: Any, recv: Any, task: Task) -> Outcome:
        if not recv.poll(START_TIMEOUT):
            return Outcome(
                LOST, error=f"RuntimeError: the step's process did not start in {START_TIMEOUT:g} s"
            )
        try:
            recv.recv_bytes()
        except EOFError:
            proc.join()
            return Outcome(
                LOST,
                error=f"RuntimeError: the step's process exited (code {proc.exitcode}) "
                "before the step started",
            )
        started = time.time()
        assert task.timeout is not None
        if not recv.poll(task.timeout):
            proc.kill()
            return Outcome(
                TIMEOUT,
                error=(
                    f"TimeoutError: step {task.step!r} took longer than its timeout of "
                    f"{task.timeout:g} s and was killed"
                ),
                started=started,
                duration=task.timeout,
            )
        try:
            outcome: Outcome = pickle.loads(recv.recv_bytes())
        except EOFError:
            proc.join()
            return Outcome(
                ERROR,
                error=f"RuntimeError: the step's process died (exit code {proc.exitcode})",
                started=started,
                duration=time.time() - started,
            )
        return outcome

    def close(self) -> None:
        """Wait for running attempts to end and stop the worker processes.

        Example::

            ex = LocalExecutor(4)
            ...
            ex.close()
        """
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown()
        self._kill_children()

    def abort(self) -> None:
        """Stop every running attempt now; the executor stays usable.

        Example::

            shared_local_executor().abort()    # after Ctrl-C
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(kill=True)
        self._kill_children()

    def _kill_children(self) -> None:
        with self._lock:
            children = list(self._children)
        for proc in children:
            if proc.is_alive():
                proc.kill()


_shared: dict[int, LocalExecutor] = {}
_shared_lock = threading.Lock()


def shared_local_executor(max_workers: int | None = None) -> LocalExecutor:
    """The process-wide ``LocalExecutor`` with ``max_workers`` workers, kept between runs
    so that a pipeline does not pay for starting processes.

    Example::

        ex = shared_local_executor(4)
    """
    n = max_workers or os.cpu_count() or 1
    with _shared_lock:
        ex = _shared.get(n)
        if ex is None:
            ex = _shared[n] = LocalExecutor(n)
        return ex


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        executors = list(_shared.values())
        _shared.clear()
    for ex in executors:
        # Idle pools close at once; an interrupted run has already aborted its attempts.
        ex.close()


def resolve(executor: str | Executor, max_workers: int | None) -> Executor:
    """The executor named by ``run(executor=...)``.

    Example::

        resolve("local", 4)      # the shared LocalExecutor with 4 workers
        resolve("inline", None)  # an InlineExecutor
        resolve("ray", None)     # the shared RayExecutor (RAY_ADDRESS, or a local Ray)
    """
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
    ):
        raise InvalidInput(f"max_workers must be an integer >= 1, got {max_workers!r}")
    if isinstance(executor, str):
        if executor == "local":
            return shared_local_executor(max_workers)
        if executor == "inline":
            return InlineExecutor()
        if executor == "ray":
            from opsloop.pipelines.ray_executor import shared_ray_executor

            return shared_ray_executor(max_workers)
        raise InvalidInput(
            f"unknown executor {executor!r}: use 'local' (processes), 'inline' (this "
            "thread) or 'ray' (a Ray cluster), or pass an Executor"
        )
    if isinstance(executor, Executor):
        return executor
    raise InvalidInput(
        f"executor must be 'local', 'inline', 'ray' or an Executor, got {executor!r}"
    )
