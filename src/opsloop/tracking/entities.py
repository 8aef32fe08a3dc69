"""Tracking records, as plain dataclasses. The faces turn them into JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RunStatus:
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    ALL = frozenset({"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"})
    TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})


class ViewType:
    """Which lifecycle stages a search sees (MLflow's numbering)."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    @staticmethod
    def parse(value: int | str | None) -> int:
        if value is None or value == "":
            return ViewType.ACTIVE_ONLY
        if isinstance(value, int):
            if value in (1, 2, 3):
                return value
        else:
            names = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}
            v = value.strip().upper()
            if v in names:
                return names[v]
            if v.isdigit() and int(v) in (1, 2, 3):
                return int(v)
        from opsloop.errors import InvalidInput

        raise InvalidInput(f"view type {value!r} is not one of ACTIVE_ONLY, DELETED_ONLY, ALL")

    @staticmethod
    def stages(view: int) -> tuple[str, ...]:
        return {1: ("active",), 2: ("deleted",), 3: ("active", "deleted")}[view]


@dataclass(slots=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0
    run_id: str | None = None


@dataclass(slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    status: str
    start_time: int
    end_time: int | None
    user_id: str
    source: str
    lifecycle_stage: str
    artifact_uri: str
    parent_run_id: str | None


@dataclass(slots=True)
class DatasetInput:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class ModelOutput:
    model_id: str
    step: int


@dataclass(slots=True)
class Run:
    info: RunInfo
    params: dict[str, str]
    metrics: list[Metric]
    tags: dict[str, str]
    inputs: list[DatasetInput] = field(default_factory=list)
    outputs: list[ModelOutput] = field(default_factory=list)

    @property
    def metrics_dict(self) -> dict[str, float]:
        return {m.key: m.value for m in self.metrics}


@dataclass(slots=True)
class LoggedModel:
    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    creation_timestamp: int
    last_updated_timestamp: int
    model_type: str | None
    source_run_id: str | None
    status: str
    status_message: str | None
    lifecycle_stage: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[Metric] = field(default_factory=list)


@dataclass(slots=True)
class Page:
    """One page of a search: the items and the token for the next page (None at the end)."""

    items: list[Any]
    next_page_token: str | None
