"""What a schedule and a fire are, as the faces see them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Fire statuses. A fire is queued until the scheduler starts it (at once when there is
# room under max_active), running while its process runs the pipeline, then finished
# or failed; a fire that came while the pipeline was at max_active and could not wait
# is skipped, with the reason in its message.
QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
SKIPPED = "skipped"
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, SKIPPED)
ACTIVE = (QUEUED, RUNNING)

# Fire reasons: "cron", "dataset:NAME@VERSION" or "manual".
CRON = "cron"
MANUAL = "manual"
DATASET_PREFIX = "dataset:"

# What a fire does when the pipeline already has max_active fires running.
OVERLAP_QUEUE = "queue"  # wait for a slot, at most one waiting fire per schedule
OVERLAP_SKIP = "skip"  # do not run at all
OVERLAPS = (OVERLAP_QUEUE, OVERLAP_SKIP)

# The executor options a schedule may carry (as ``opsloop.pipelines.run`` takes them).
OPTIONS = {
    "executor": "local (processes), inline, ray, or a Ray address",
    "max_workers": "worker processes (a positive integer)",
    "cache": "true to use the step cache (the default), false to run every step",
    "experiment": "the experiment of the pipeline's runs (default: the pipeline's name)",
}


@dataclass(frozen=True)
class Fire:
    """One firing of a schedule: why, when, what became of it.

    Example::

        f = opsloop.pipelines.scheduling.history("nightly")[0]
        f.reason, f.status, f.run_id       # ("dataset:sensors@4", "finished", "9f2c...")
    """

    fire_id: int
    schedule: str
    reason: str
    status: str
    fire_time: int
    scheduled_time: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    host: str | None = None
    pid: int | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """A pipeline run on a cron schedule and/or on new versions of a dataset.

    ``target`` is ``module:pipeline`` (imported in ``workdir``); ``dataset_version`` is
    the newest version of ``on_dataset`` already handled; ``next_fire_time`` the next
    cron slot (ms since the epoch). ``last_fire`` is filled by listings.

    Example::

        s = opsloop.pipelines.scheduling.get("nightly")
        s.cron, s.enabled, s.next_fire_time
    """

    schedule_id: str
    name: str
    target: str
    workdir: str | None
    params: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    timezone: str
    on_dataset: str | None
    dataset_version: int
    enabled: bool
    max_active: int
    overlap: str
    next_fire_time: int | None
    description: str
    creation_time: int
    last_updated_time: int
    last_fire: Fire | None = None

    @property
    def triggers(self) -> str:
        """What fires it, for people: ``cron '0 * * * *' (UTC)``, ``dataset 'sensors'``."""
        parts = []
        if self.cron:
            parts.append(f"cron '{self.cron}' ({self.timezone})")
        if self.on_dataset:
            parts.append(f"dataset '{self.on_dataset}'")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
