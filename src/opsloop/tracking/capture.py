"""The capture of fluent logging calls made inside a pipeline step.

A step may run where there is no database (a worker process, a Ray node), so while
its function runs, ``opsloop.log_metric(s)``, ``log_param(s)`` and ``set_tag(s)`` land
in the step's ``StepLog`` instead of the store (``opsloop.tracking.fluent`` looks here
first); the worker returns the log with the attempt's outcome and the pipeline's runner
records it on the step's run, in the same transaction as the run's end. Inside the step,
``opsloop.active_run()`` gives the step's run.

This module imports nothing heavy: worker processes load it without the tracking
service or SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from opsloop.tracking.entities import Run, RunInfo, RunStatus


@dataclass(slots=True)
class StepLog:
    """What the body of a pipeline step logged through the fluent API while it ran.

    Example::

        log = StepLog(run_id, "train", now_ms())
        with capturing_step_log(log, whole_process=False):
            opsloop.log_metric("loss", 0.3, step=1)
        log.metrics          # [("loss", 0.3, 1718000000000, 1)]
    """

    run_id: str
    step: str
    start_time: int
    # (key, value, timestamp in ms, step), as the tracking service takes points.
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Dataset versions the step read or registered, (name, version): recorded as the
    # step run's inputs once its run is written (the run may not be, while it runs).
    inputs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.metrics or self.params or self.tags or self.inputs)

    def add_input(self, name: str, version: int) -> None:
        if (name, version) not in self.inputs:
            self.inputs.append((name, version))

    def run(self) -> Run:
        """The step's run as far as the step knows it (no database: only its id, name,
        status and start are filled in)."""
        info = RunInfo(
            self.run_id,
            "",
            self.step,
            RunStatus.RUNNING,
            self.start_time,
            None,
            "",
            "",
            "active",
            "",
            None,
        )
        return Run(info, dict(self.params), [], dict(self.tags))


# The step running in this thread (in-process executors), else the one running in this
# process (a worker process runs one step at a time, and its threads log to it too).
_step_thread = threading.local()
_step_process: StepLog | None = None


def current_step_log() -> StepLog | None:
    """The ``StepLog`` of the pipeline step running here, or None outside steps."""
    log: StepLog | None = getattr(_step_thread, "log", None)
    return log if log is not None else _step_process


@contextlib.contextmanager
def capturing_step_log(log: StepLog, *, whole_process: bool) -> Iterator[StepLog]:
    """Capture the fluent logging calls of this thread (or, in a worker, this whole
    process) into ``log`` instead of writing them to the store. Used by the pipeline
    worker around a step's function.

    Example::

        with capturing_step_log(StepLog(run_id, "train", now_ms()), whole_process=True) as log:
            train(df)
        outcome.logged = log
    """
    global _step_process
    if whole_process:
        saved, _step_process = _step_process, log
    else:
        saved = getattr(_step_thread, "log", None)
        _step_thread.log = log
    try:
        yield log
    finally:
        if whole_process:
            _step_process = saved
        else:
            _step_thread.log = saved
