"""What a pipeline run gives back: its run, each step's fate, and the outputs.

Outputs stay in the artifact store; ``PipelineResult.output`` reads one when asked (or
hands back the live value, when the steps ran in this process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsloop.errors import InvalidInput, NotFound, OpsloopError
from opsloop.pipelines.values import load_value
from opsloop.pipelines.worker import StoredOutput
from opsloop.store import Store

if TYPE_CHECKING:
    from opsloop.data.validation import ValidationReport

FINISHED = "FINISHED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"  # not run: a step it depends on failed (no run is created for it)
KILLED = "KILLED"


@dataclass(frozen=True)
class StepResult:
    """One step of a pipeline run.

    ``run_id`` is None for a step that was skipped; ``duration`` is the time its
    attempts took to run, in seconds (0 for a cache hit).

    Example::

        s = result.steps["train"]
        s.status, s.cache_hit, s.attempts, s.duration    # "FINISHED", False, 1, 12.4
    """

    name: str
    status: str
    run_id: str | None
    cache_hit: bool
    duration: float
    attempts: int
    error: str | None = None
    outputs: tuple[StoredOutput, ...] = ()
    cache_key: str | None = None


@dataclass
class PipelineResult:
    """The outcome of a pipeline run.

    Example::

        result = churn(path="churn.csv")
        result.status                       # "FINISHED"
        result.steps["train"].cache_hit     # True on an unchanged re-run
        model = result.output("train")
        train_df, test_df = result.output("split")
    """

    name: str
    run_id: str
    experiment_id: str
    status: str
    steps: dict[str, StepResult]
    duration: float
    _store: Store = field(repr=False)
    _live: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Whether every step finished.

        Example::

            if not result.ok:
                print(result.summary())
        """
        return self.status == FINISHED

    @property
    def failed_steps(self) -> list[str]:
        """The steps that failed, in run order.

        Example::

            result.failed_steps      # ["train"]
        """
        return [s.name for s in self.steps.values() if s.status == FAILED]

    @property
    def skipped_steps(self) -> list[str]:
        """The steps not run because a step they depend on failed.

        Example::

            result.skipped_steps     # ["evaluate", "report"]
        """
        return [s.name for s in self.steps.values() if s.status == SKIPPED]

    def raise_for_status(self) -> PipelineResult:
        """Raise ``PipelineFailed`` unless every step finished; returns self.

        Example::

            result = opsloop.pipelines.run(churn, raise_on_failure=False)
            result.raise_for_status()
        """
        if not self.ok:
            raise PipelineFailed(self)
        return self

    def output(self, step: str, name: int | str | None = None) -> Any:
        """The value of a step's output.

        For a step with several outputs, ``name`` picks one (by position or name);
        without it, all of them come back as a tuple.

        Example::

            model = result.output("train")
            test_df = result.output("split", "test")
        """
        info = self.steps.get(step)
        if info is None:
            raise NotFound(
                f"pipeline {self.name!r} has no step {step!r}; its steps: {list(self.steps)}"
            )
        if info.status != FINISHED:
            raise InvalidInput(
                f"step {step!r} has no outputs: it is {info.status}"
                + (f" ({info.error})" if info.error else "")
            )
        names = [o.name for o in info.outputs]
        if name is None:
            if len(names) == 1:
                return self._value(step, 0)
            return tuple(self._value(step, i) for i in range(len(names)))
        if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(names):
            return self._value(step, name)
        if isinstance(name, str) and name in names:
            return self._value(step, names.index(name))
        raise NotFound(f"step {step!r} has no output {name!r}; its outputs: {names}")

    def _value(self, step: str, index: int) -> Any:
        live = self._live.get(step)
        if live is not None:
            return live[index]
        out = self.steps[step].outputs[index]
        return load_value(self._store.blobs.get_bytes(out.sha256), out.format)

    def check_reports(self, step: str) -> dict[str, ValidationReport]:
        """The reports of a step's data checks, by what was checked: ``"inputs/<arg>"``
        and ``"outputs/<name>"`` (read from its run's ``checks/`` artifacts). Empty for
        a step without checks, and for a cache hit (its checks did not run).

        Example::

            result.check_reports("clean")["inputs/df"].summary()
        """
        from opsloop.data.validation import ValidationReport
        from opsloop.tracking.service import TrackingService, artifact_path_of

        info = self.steps.get(step)
        if info is None:
            raise NotFound(
                f"pipeline {self.name!r} has no step {step!r}; its steps: {list(self.steps)}"
            )
        if info.run_id is None:
            return {}
        root = artifact_path_of(TrackingService(self._store).get_run(info.run_id).info.artifact_uri)
        if root is None:
            return {}
        prefix = f"{root}/checks/"
        out = {}
        for fi in self._store.artifacts.walk(prefix.rstrip("/")):
            if fi.path.startswith(prefix) and fi.path.endswith(".json"):
                doc = json.loads(self._store.artifacts.get_bytes(fi.path))
                out[fi.path[len(prefix) : -len(".json")]] = ValidationReport.from_dict(doc)
        return out

    def summary(self) -> str:
        """One line per step, for printing.

        Example::

            print(result.summary())
        """
        lines = [f"pipeline {self.name} {self.status} in {self.duration:.2f} s (run {self.run_id})"]
        for s in self.steps.values():
            how = "cached" if s.cache_hit else f"{s.duration:.3f} s"
            extra = f" after {s.attempts} attempts" if s.attempts > 1 else ""
            err = f": {s.error}" if s.error else ""
            lines.append(f"  {s.name:<24} {s.status:<9} {how}{extra}{err}")
        return "\n".join(lines)


class PipelineFailed(OpsloopError):
    """A pipeline run ended with a failed (or killed) step; ``.result`` tells which.

    (Part of opsloop's error tree under ``OpsloopError``: exit code 1, HTTP 500.)

    Example::

        try:
            churn(path="churn.csv")
        except PipelineFailed as exc:
            print(exc.result.failed_steps)
    """

    def __init__(self, result: PipelineResult) -> None:
        self.result = result
        failed = [s for s in result.steps.values() if s.status in (FAILED, KILLED)]
        parts = [
            f"step {s.name!r} {s.status.lower()}"
            + (f" after {s.attempts} attempts" if s.attempts > 1 else "")
            + (f": {s.error}" if s.error else "")
            for s in failed
        ]
        skipped = result.skipped_steps
        message = (
            f"pipeline {result.name!r} {result.status.lower()}: "
            + ("; ".join(parts) or "interrupted")
            + (
                f"; {len(skipped)} step(s) downstream not run ({', '.join(skipped[:5])}"
                + (", ..." if len(skipped) > 5 else "")
                + ")"
                if skipped
                else ""
            )
            + f". The traceback is in the artifact logs/traceback.txt of the failed step's "
            f"run (pipeline run {result.run_id}); run the pipeline again to resume: "
            "finished steps come from the cache"
        )
        super().__init__(message)
