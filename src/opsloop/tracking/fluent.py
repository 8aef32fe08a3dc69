"""The fluent Python API: ``with opsloop.start_run(): opsloop.log_metrics(...)``.

Metrics are batched on the client: ``log_metric`` appends to a buffer (a few hundred
nanoseconds) and a background thread writes the buffer in batches, so a training loop
that logs every step is not slowed by the store. The buffer is flushed when the run
ends, when ``flush()`` is called, and at interpreter exit. Params and tags are written
at once, since a wrong one must fail where it was logged.

Inside a pipeline step the same calls log to the step's own run: the step may run where
there is no database (a worker process, a Ray node), so while it runs they are captured
in a ``StepLog`` (checked as they are made, so a wrong one still fails where it was
logged) and the pipeline's runner records them when the step ends. See
``opsloop.tracking.capture``.
"""

from __future__ import annotations

import atexit
import getpass
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsloop.errors import InvalidInput, InvalidState
from opsloop.store import default_service
from opsloop.tracking import validation as v
from opsloop.tracking.capture import StepLog, current_step_log
from opsloop.tracking.entities import Run, RunStatus
from opsloop.tracking.service import TrackingService, artifact_path_of

FLUSH_INTERVAL = 0.5
FLUSH_SIZE = 1000


class _MetricBuffer:
    """Points waiting to be written, per run, drained by one background thread."""

    def __init__(self) -> None:
        self._points: list[tuple[str, str, float, int, int]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self._flush_lock = threading.Lock()

    def add(self, run_id: str, key: str, value: float, ts: int, step: int) -> None:
        self._points.append((run_id, key, value, ts, step))
        if len(self._points) >= FLUSH_SIZE:
            self._wake.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="opsloop-metrics", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            try:
                self.flush(raise_errors=False)
            except BaseException as exc:  # kept for the next flush() on the caller's thread
                self._errors.append(exc)

    def flush(self, *, raise_errors: bool = True) -> None:
        with self._flush_lock:
            # Swap the list: appends from other threads go to the new one.
            points, self._points = self._points, []
            if points:
                by_run: dict[str, list[tuple[str, float, int, int]]] = {}
                for run_id, key, value, ts, step in points:
                    by_run.setdefault(run_id, []).append((key, value, ts, step))
                svc = _service()
                for run_id, ms in by_run.items():
                    for i in range(0, len(ms), 1000):
                        try:
                            svc.log_batch(run_id, points=ms[i : i + 1000])
                        except BaseException as exc:
                            self._errors.append(exc)
        if raise_errors and self._errors:
            err = self._errors[0]
            self._errors.clear()
            raise err


_buffer = _MetricBuffer()


class _RunStack(threading.local):
    """The active runs of one thread (as MLflow's): a thread starts with none."""

    def __init__(self) -> None:
        self.runs: list[Run] = []


_stack = _RunStack()
_checked_keys: set[str] = set()


# -- inside a pipeline step (the capture itself lives in ``capture``) ---------------------


def _not_in_step(what: str) -> None:
    log = current_step_log()
    if log is not None:
        raise InvalidState(
            f"{what} cannot be called inside pipeline step {log.step!r}: the step already "
            "has a run of its own, which opsloop.log_metric(s), log_param(s), set_tag(s), "
            "log_artifact(s), log_text and log_model log to (opsloop.active_run() gives "
            "it); split the work into more steps"
        )


def _service() -> TrackingService:
    return default_service(TrackingService)


# How long a step waits for its run to be recorded before it writes under it.
STEP_RUN_WAIT = 60.0


def step_run(log: StepLog) -> Run:
    """The step's run as stored, for calls inside a step that write under it (artifacts,
    models). The runner writes a step's run with its next batch (within ~50 ms of the
    step's start) and a step in a worker may be quicker than that: this waits for it.

    Example::

        run = step_run(current_step_log())      # inside a step
    """
    from opsloop.errors import NotFound

    svc = _service()
    deadline = time.monotonic() + STEP_RUN_WAIT
    delay = 0.005
    while True:
        try:
            return svc.get_run(log.run_id)
        except NotFound:
            if time.monotonic() >= deadline:
                raise InvalidState(
                    f"the run {log.run_id} of step {log.step!r} was not recorded in the "
                    f"store {svc.store.settings.redacted_database_url()} within "
                    f"{STEP_RUN_WAIT:g} s; a step that logs artifacts or models must use "
                    "its pipeline's store"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _artifact_run() -> Run:
    """The run that artifacts go to: the step's own inside a pipeline step, else the
    active run."""
    log = current_step_log()
    if log is not None:
        return step_run(log)
    if not _stack.runs:
        _run_id()  # raises: no active run
    return _stack.runs[-1]


def flush() -> None:
    """Write every buffered metric now; raises the first error a background write met."""
    _buffer.flush()


atexit.register(lambda: _buffer.flush(raise_errors=False))


class ActiveRun:
    """The run ``start_run`` gives; ends the run when its ``with`` block ends."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def info(self) -> Any:
        return self.run.info

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        status = RunStatus.FINISHED if exc_type is None else RunStatus.FAILED
        if exc_type is KeyboardInterrupt:
            status = RunStatus.KILLED
        end_run(status)


def start_run(
    experiment: str | None = None,
    *,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    experiment_id: str | None = None,
    description: str | None = None,
) -> ActiveRun:
    """Start a run (and its experiment, if new) and make it the active run.

    Example::

        with opsloop.start_run(experiment="churn", run_name="baseline"):
            opsloop.log_params({"lr": 0.01})
            for step in range(100):
                opsloop.log_metric("loss", 1 / (step + 1), step=step)
    """
    _not_in_step("opsloop.start_run()")
    if _stack.runs and not nested:
        raise InvalidState(
            f"run {_stack.runs[-1].info.run_id} is already active; end it first or pass nested=True"
        )
    svc = _service()
    if experiment_id is None and experiment is None and nested and _stack.runs:
        experiment_id = _stack.runs[-1].info.experiment_id  # a child run lives with its parent
    if experiment_id is None:
        name = experiment or os.environ.get("OPSLOOP_EXPERIMENT") or "Default"
        experiment_id = "0" if name == "Default" else svc.get_or_create_experiment(name)
    run_tags = {k: str(val) for k, val in (tags or {}).items()}
    if description:
        run_tags["mlflow.note.content"] = description
    run = svc.create_run(
        experiment_id,
        user_id=_user(),
        run_name=run_name,
        tags=run_tags,
        parent_run_id=_stack.runs[-1].info.run_id if (nested and _stack.runs) else None,
        source=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
    )
    _stack.runs.append(run)
    if params:
        log_params(params)
    return ActiveRun(run)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def active_run() -> Run | None:
    """The innermost active run, or None. Inside a pipeline step: the step's run (only
    its id, name, status and start time are known there).

    Example::

        with opsloop.start_run() as run:
            assert opsloop.active_run().info.run_id == run.run_id
    """
    log = current_step_log()
    if log is not None:
        return log.run()
    return _stack.runs[-1] if _stack.runs else None


def _run_id() -> str:
    if not _stack.runs:
        raise InvalidState("no active run: call opsloop.start_run() first")
    return _stack.runs[-1].info.run_id


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the innermost active run, after writing its buffered metrics."""
    _not_in_step("opsloop.end_run()")
    if not _stack.runs:
        return
    run = _stack.runs[-1]
    try:
        _buffer.flush()
    finally:
        _stack.runs.pop()
        _service().update_run(run.info.run_id, status=status)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Log one point of a metric series to the active run (buffered); inside a
    pipeline step, to the step's run."""
    log = current_step_log()
    run_id = ""
    if log is None:
        run_id = _stack.runs[-1].info.run_id if _stack.runs else _run_id()
    if key not in _checked_keys:
        v.key("metric", key)
        _checked_keys.add(key)
    if type(value) is not float:
        value = v.metric_value(key, value)
    if timestamp is None:
        timestamp = time.time_ns() // 1_000_000
    elif type(timestamp) is not int:
        timestamp = v.integer("timestamp", timestamp, 0)
    if step is None:
        step = 0
    elif type(step) is not int:
        step = v.integer("step", step, 0)
    if log is not None:
        log.metrics.append((key, value, timestamp, step))
        return
    _buffer.add(run_id, key, value, timestamp, step)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    """Log several metrics at one step (buffered)."""
    ts = timestamp if timestamp is not None else time.time_ns() // 1_000_000
    for k, val in metrics.items():
        log_metric(k, val, step, ts)


def log_param(key: str, value: Any) -> None:
    """Log one param to the active run (inside a pipeline step, to the step's run)."""
    log = current_step_log()
    if log is not None:
        _capture_params(log, [(key, value)])
        return
    _service().log_batch(_run_id(), params_=[(key, value)])


def _capture_params(log: StepLog, items: list[tuple[str, Any]]) -> None:
    # Checked whole before any is kept, as log_batch does for a run.
    checked: dict[str, str] = {}
    for k, val in items:
        v.key("param", k)
        text = v.param_value(k, val)
        old = checked.get(k, log.params.get(k))
        if old is not None and old != text:
            raise InvalidInput(
                f"changing param values is not allowed: param {k!r} of step {log.step!r} was "
                f"already logged as {old!r}; the new value is {text!r}"
            )
        checked[k] = text
    log.params.update(checked)


# Tags a pipeline's runner sets on a step's run: its body may not set them.
_RUNNER_TAGS = ("mlflow.runName", "mlflow.parentRunId", "mlflow.user", "mlflow.source.name")


def _capture_tags(log: StepLog, items: list[tuple[str, Any]]) -> None:
    checked = {v.key("tag", k): v.tag_value(k, val) for k, val in items}
    for k in checked:
        if k.startswith("opsloop.") or k in _RUNNER_TAGS:
            raise InvalidInput(
                f"tag {k!r} of step {log.step!r} is set by the pipeline's runner; "
                "use a tag name outside 'opsloop.' and mlflow's run tags"
            )
    log.tags.update(checked)


def log_params(params: Mapping[str, Any]) -> None:
    """Log params to the active run; a param logged again with another value is refused."""
    items = list(params.items())
    log = current_step_log()
    if log is not None:
        _capture_params(log, items)
        return
    svc = _service()
    run_id = _run_id()
    for i in range(0, len(items), 100):
        svc.log_batch(run_id, params_=items[i : i + 100])


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run (inside a pipeline step, on the step's run)."""
    log = current_step_log()
    if log is not None:
        _capture_tags(log, [(key, value)])
        return
    _service().log_batch(_run_id(), tags_=[(key, value)])


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run (inside a pipeline step, on the step's run)."""
    items = list(tags.items())
    log = current_step_log()
    if log is not None:
        _capture_tags(log, items)
        return
    svc = _service()
    run_id = _run_id()
    for i in range(0, len(items), 100):
        svc.log_batch(run_id, tags_=items[i : i + 100])


def _artifact_root(run: Run) -> str:
    root = artifact_path_of(run.info.artifact_uri)
    if root is None:
        raise InvalidInput(
            f"run {run.info.run_id} keeps its artifacts at {run.info.artifact_uri}, outside opsloop's store"
        )
    return root


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> str:
    """Store a local file under the active run's artifacts; returns its artifact path."""
    from opsloop.store.artifacts import clean_path, join

    p = Path(local_path)
    if not p.is_file():
        raise InvalidInput(f"{local_path} is not a file (use log_artifacts for a folder)")
    run = _artifact_run()
    rel = join(clean_path(artifact_path or "", allow_empty=True), p.name)
    _service().store.artifacts.put_file(join(_artifact_root(run), rel), p)
    return rel


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[str]:
    """Store every file of a local folder under the active run's artifacts."""
    from opsloop.store.artifacts import clean_path, join

    run = _artifact_run()
    root = _artifact_root(run)
    prefix = join(root, clean_path(artifact_path or "", allow_empty=True))
    infos = _service().store.artifacts.put_dir(prefix, local_dir)
    return [fi.path[len(root) + 1 :] for fi in infos]


def log_text(text: str, artifact_file: str) -> str:
    from opsloop.store.artifacts import clean_path, join

    run = _artifact_run()
    rel = clean_path(artifact_file)
    _service().store.artifacts.put_bytes(join(_artifact_root(run), rel), text.encode())
    return rel


def get_run(run_id: str) -> Run:
    """A run with its params, latest metrics and tags (buffered metrics are written first)."""
    _buffer.flush()
    return _service().get_run(run_id)


def search_runs(
    experiment_names: list[str] | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
    max_results: int = 1000,
    experiment_ids: list[str] | None = None,
) -> list[Run]:
    """Runs matching an MLflow-style filter, e.g. ``"metrics.acc > 0.9 and params.lr = '0.01'"``."""
    _buffer.flush()
    svc = _service()
    ids = list(experiment_ids or [])
    for name in experiment_names or []:
        ids.append(svc.get_experiment_by_name(name).experiment_id)
    if not ids:
        ids = ["0"]
    out: list[Run] = []
    token: str | None = None
    while len(out) < max_results:
        page = svc.search_runs(
            ids, filter_string, None, min(1000, max_results - len(out)), order_by, token
        )
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    return out
