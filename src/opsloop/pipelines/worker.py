"""One attempt of one step, wherever it runs: in a worker process or in-process.

A worker touches only the blob store: it reads its inputs by content hash, runs the
function with stdout and stderr captured (and still echoed), and writes its outputs as
blobs. Blobs are invisible until a path in the metadata store names them, and the
process that runs the pipeline writes those paths only for a step that succeeded: so a
failed or killed attempt leaves nothing a reader can see, and workers need no database
connection at all (which keeps them cheap to start, here or on a cluster).

The same goes for what the step's body logs with the fluent API
(``opsloop.log_metric`` & co.): while the function runs, those calls are captured (see
``opsloop.tracking.fluent.capturing_step_log``) and come back in the ``Outcome``, and the
runner records them on the step's run together with its end. The step's data checks
(see ``checks``) run here too, on the live values, and their reports are stored as
blobs that the runner names.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from opsloop.pipelines.checks import ChecksFailed, StepChecks, run_checks
from opsloop.pipelines.values import dump_value, load_value
from opsloop.store.blobs import BlobStore
from opsloop.tracking.capture import StepLog, capturing_step_log

OK = "ok"
ERROR = "error"
TIMEOUT = "timeout"
LOST = "lost"  # the process running the attempt died (or its pool broke)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where the ``index``-th input goes in a step's argument template."""

    index: int


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A stored value: its blob and how to read it."""

    sha256: str
    size: int
    format: str


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One output of a step, as stored."""

    name: str
    sha256: str
    size: int
    format: str


@dataclass(slots=True)
class Task:
    """What an executor needs to run one attempt of one step."""

    step: str
    run_id: str
    attempt: int
    fn_key: str
    fn_bytes: bytes
    arguments: dict[str, Any]
    kinds: dict[str, int]
    inputs: tuple[BlobRef, ...]
    output_names: tuple[str, ...]
    multi: bool
    named: bool
    artifacts_url: str
    timeout: float | None
    # The project modules to pickle by value when sending the task (see ``values``).
    by_value: tuple[str, ...] = ()
    # When set, the worker also stores the cache entry for this key once every output
    # is stored (the runner makes it visible together with the outputs).
    cache_key: str | None = None
    # The step's data checks (see ``checks``); picklable, sent with the task.
    checks: StepChecks | None = None
    # The pipeline's metadata database: in a worker, the step's own calls to the store
    # (``opsloop.data.register``, ``opsloop.data.get``) go to the pipeline's store.
    database_url: str | None = None
    # In-process executors only: the live function and input values, and the pipeline's
    # store (never pickled).
    fn: Callable[..., Any] | None = None
    values: list[Any] | None = None
    store: Any = None

    def wire(self) -> Task:
        """This task without its live parts, to be sent to another process."""
        return replace(self, fn=None, values=None, store=None)


@dataclass(slots=True)
class Outcome:
    """How an attempt went."""

    status: str
    outputs: tuple[StoredOutput, ...] = ()
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    traceback: str | None = None
    started: float = 0.0
    duration: float = 0.0
    # The stored cache entry (its blob's sha256 and size), if the task asked for one.
    cache_entry: tuple[str, int] | None = None
    # False when another attempt would fail the same way (the step's data checks
    # failed): the runner does not retry it.
    retry: bool = True
    # The stored reports of the step's checks: (path under the run's artifacts, blob
    # sha256, size), for passed checks too.
    reports: tuple[tuple[str, str, int], ...] = ()
    # What the step's body logged with the fluent API (metrics, params, tags).
    logged: StepLog | None = None
    # In-process executors only: the live output values.
    values: tuple[Any, ...] | None = field(default=None, repr=False)


# -- capturing stdout and stderr ------------------------------------------------------


class _Capture:
    __slots__ = ("err", "out")

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()


_thread_capture = threading.local()
_process_capture: _Capture | None = None
_install_lock = threading.Lock()
_installed = 0


class _Router(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr while steps run.

    A write goes to the capture of the step that made it - the one running in this
    thread, or (in a worker process) the one running in this process - and to the
    original stream, so that output is still echoed.
    """

    def __init__(self, original: TextIO, which: str) -> None:
        self.original = original
        self.which = which

    def write(self, s: str) -> int:
        capture: _Capture | None = getattr(_thread_capture, "capture", None) or _process_capture
        if capture is not None:
            (capture.out if self.which == "out" else capture.err).write(s)
        return self.original.write(s)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def _install() -> None:
    global _installed
    with _install_lock:
        # Look at the streams, not the count: someone (a test runner, an abandoned
        # step's thread) may have swapped them since the last install.
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "err")
        _installed += 1


def _uninstall() -> None:
    global _installed
    with _install_lock:
        _installed -= 1
        if _installed == 0:
            # Put the originals back only if nobody replaced our routers meanwhile.
            if isinstance(sys.stdout, _Router):
                sys.stdout = sys.stdout.original
            if isinstance(sys.stderr, _Router):
                sys.stderr = sys.stderr.original


@contextlib.contextmanager
def capturing(*, whole_process: bool) -> Iterator[_Capture]:
    """Capture what this thread (or, in a worker, this process) writes to stdout/stderr.

    Example::

        with capturing(whole_process=False) as cap:
            print("hello")
        cap.out.getvalue()     # "hello\\n"
    """
    global _process_capture
    capture = _Capture()
    _install()
    try:
        if whole_process:
            _process_capture = capture
        else:
            _thread_capture.capture = capture
        yield capture
    finally:
        if whole_process:
            _process_capture = None
        else:
            _thread_capture.capture = None
        _uninstall()


# -- running an attempt -----------------------------------------------------------------


_functions: OrderedDict[str, Callable[..., Any]] = OrderedDict()
_blob_stores: dict[str, BlobStore] = {}


def _function(task: Task) -> Callable[..., Any]:
    if task.fn is not None:
        return task.fn
    fn = _functions.get(task.fn_key)
    if fn is None:
        fn = pickle.loads(task.fn_bytes)
        _functions[task.fn_key] = fn
        while len(_functions) > 256:
            _functions.popitem(last=False)
    else:
        _functions.move_to_end(task.fn_key)
    return fn


def blob_store(url: str) -> BlobStore:
    """This process's blob store for ``url`` (opened once).

    Example::

        blob_store("/home/ana/.opsloop/artifacts").get_bytes(sha)
    """
    store = _blob_stores.get(url)
    if store is None:
        store = _blob_stores[url] = BlobStore(url)
    return store


def _fill(template: Any, values: list[Any]) -> Any:
    if isinstance(template, Slot):
        return values[template.index]
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, tuple):
        items = [_fill(v, values) for v in template]
        return type(template)(*items) if hasattr(template, "_fields") else tuple(items)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def call_args(
    arguments: Mapping[str, Any], kinds: Mapping[str, int], values: list[Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for the step's function, inputs filled in.

    Example::

        >>> call_args({"df": Slot(0), "lr": 0.1}, {"df": 1, "lr": 1}, ["frame"])
        ([], {'df': 'frame', 'lr': 0.1})
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, template in arguments.items():
        value = _fill(template, values)
        kind = kinds[name]
        if kind == 0:  # POSITIONAL_ONLY
            args.append(value)
        elif kind == 2:  # VAR_POSITIONAL
            args.extend(value)
        elif kind == 4:  # VAR_KEYWORD
            kwargs.update(value)
        else:
            kwargs[name] = value
    return args, kwargs


class StepError(Exception):
    """A step's result does not fit what the step declares."""


def _split(task: Task, result: Any) -> tuple[Any, ...]:
    if not task.multi:
        return (result,)
    names = task.output_names
    if task.named and isinstance(result, Mapping):
        if set(result) != set(names):
            raise StepError(
                f"step {task.step!r} returned a dict with keys {sorted(map(str, result))}; "
                f"it declares the outputs {list(names)}"
            )
        return tuple(result[n] for n in names)
    if isinstance(result, (tuple, list)) and len(result) == len(names):
        return tuple(result)
    got = type(result).__name__
    if isinstance(result, (tuple, list)):
        got += f" of {len(result)} values"
    raise StepError(
        f"step {task.step!r} declares {len(names)} outputs {list(names)} but returned a {got}"
    )


def argument(task: Task, values: list[Any], name: str) -> Any:
    """The value of the step's argument ``name``, inputs filled in (an argument that
    only ``**kwargs`` takes is looked up there).

    Example::

        >>> argument(task, ["frame"], "df")      # task.arguments == {"df": Slot(0)}
        'frame'
    """
    kind = task.kinds.get(name)
    if kind is not None and kind not in (2, 4):
        return _fill(task.arguments[name], values)
    for arg, k in task.kinds.items():
        if k == 4:
            extra = _fill(task.arguments[arg], values)
            if name in extra:
                return extra[name]
    raise StepError(f"step {task.step!r} checks the argument {name!r}, which it was not given")


@contextlib.contextmanager
def _pipeline_store(task: Task, in_worker: bool) -> Iterator[None]:
    """Make the pipeline's store the default one while the step runs, so that what the
    step does through the fluent API (datasets, artifacts, models) lands there: in a
    worker process through the environment (a worker may outlive a change of the
    caller's settings, and a Ray node has none of them), in this process as this
    thread's store (``opsloop.store.using_store``)."""
    if not in_worker:
        if task.store is None:
            yield
            return
        from opsloop.store import using_store

        with using_store(task.store):
            yield
        return
    if not task.database_url:
        yield
        return
    wanted = {"OPSLOOP_DATABASE_URL": task.database_url, "OPSLOOP_ARTIFACTS": task.artifacts_url}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(task: Task, *, in_worker: bool) -> Outcome:
    """Run one attempt of ``task``; never raises for a failure of the step itself.

    Example::

        outcome = execute(task, in_worker=False)
        outcome.status, outcome.outputs          # "ok", (StoredOutput(...),)
    """
    started = time.time()
    t0 = time.perf_counter()
    blobs = blob_store(task.artifacts_url)
    parts: tuple[Any, ...] = ()
    stored: list[StoredOutput] = []
    reports: list[tuple[str, str, int]] = []
    entry: tuple[str, int] | None = None
    error: str | None = None
    tb: str | None = None
    retry = True
    checks = task.checks
    log = StepLog(task.run_id, task.step, int(started * 1000))
    with (
        _pipeline_store(task, in_worker),
        capturing(whole_process=in_worker) as cap,
        capturing_step_log(log, whole_process=in_worker),
    ):
        try:
            fn = _function(task)
            values = task.values
            if values is None:
                values = [load_value(blobs.get_bytes(r.sha256), r.format) for r in task.inputs]
            args, kwargs = call_args(task.arguments, task.kinds, values)
            if checks and checks.inputs:
                checked = [(name, argument(task, values, name)) for name, _ in checks.inputs]
                done, failed = run_checks(
                    task.step, "input", checked, checks.inputs, blobs.put_bytes
                )
                reports.extend(done)
                if failed:
                    raise ChecksFailed(failed)
            parts = _split(task, fn(*args, **kwargs))
            if checks and checks.outputs:
                by_name = dict(zip(task.output_names, parts, strict=True))
                checked = [(name, by_name[name]) for name, _ in checks.outputs]
                done, failed = run_checks(
                    task.step, "output", checked, checks.outputs, blobs.put_bytes
                )
                reports.extend(done)
                if failed:
                    raise ChecksFailed(failed)
            for name, value in zip(task.output_names, parts, strict=True):
                try:
                    data, fmt = dump_value(value)
                except Exception as exc:
                    raise StepError(
                        f"step {task.step!r} returned a value for output {name!r} that cannot "
                        f"be stored ({type(value).__name__}): {exc}"
                    ) from exc
                sha, size = blobs.put_bytes(data)
                stored.append(StoredOutput(name, sha, size, fmt))
            if task.cache_key:
                from opsloop.pipelines.cache import encode

                entry = blobs.put_bytes(
                    encode(task.cache_key, task.run_id, task.step, stored, int(time.time() * 1000))
                )
        except ChecksFailed as exc:
            # The data, not the code, is at fault: a traceback would only show opsloop.
            error = f"{type(exc).__name__}: {exc}"
            tb = error + "\n"
            retry = False
            sys.stderr.write(tb)
        except (Exception, SystemExit) as exc:
            error = f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc()
            # Into the step's stderr too, where a reader of its logs looks first.
            sys.stderr.write(tb)
    duration = time.perf_counter() - t0
    if error is not None:
        return Outcome(
            ERROR,
            stdout=cap.out.getvalue(),
            stderr=cap.err.getvalue(),
            error=error,
            traceback=tb,
            started=started,
            duration=duration,
            retry=retry,
            reports=tuple(reports),
            logged=None if log.empty else log,
        )
    return Outcome(
        OK,
        tuple(stored),
        cap.out.getvalue(),
        cap.err.getvalue(),
        started=started,
        duration=duration,
        cache_entry=entry,
        values=None if in_worker else parts,
        reports=tuple(reports),
        logged=None if log.empty else log,
    )


# -- entry points of worker processes ----------------------------------------------------


def _unpickle(payload: bytes) -> Task | Outcome:
    try:
        task: Task = pickle.loads(payload)
    except Exception as exc:  # e.g. a library the step needs is not installed here
        return Outcome(
            ERROR,
            error=f"cannot load the step in the worker process: {type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            started=time.time(),
        )
    return task


def run_payload(payload: bytes) -> Outcome:
    """Run a pickled task in a pool worker."""
    task = _unpickle(payload)
    if isinstance(task, Outcome):
        return task
    return execute(task, in_worker=True)


def run_in_child(payload: bytes, conn: Any) -> None:
    """Run a pickled task in a process of its own, which the parent may kill.

    Sends ``b"started"`` once the task is unpickled (the step's timeout counts from
    there), then the pickled ``Outcome``.
    """
    try:
        task = _unpickle(payload)
        conn.send_bytes(b"started")
        outcome = task if isinstance(task, Outcome) else execute(task, in_worker=True)
        conn.send_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip interpreter teardown: nothing here needs it, and it is slow.
        os._exit(0)
