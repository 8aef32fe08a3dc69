"""opsloop records as MLflow's protobuf JSON, built as plain dicts.

The shapes are those ``mlflow server`` emits (``message_to_json``): snake_case field
names, int64 fields as JSON numbers, enums by name, doubles that are not finite as
strings, unset fields left out. Built by hand rather than through protobuf because
the search and history endpoints return many thousands of these.
"""

from __future__ import annotations

import math
from typing import Any

from opsloop.registry.entities import ModelVersion, RegisteredModel
from opsloop.server.responses import number
from opsloop.tracking.entities import (
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    Run,
    RunInfo,
)

RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
VIEW_TYPE = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
LOGGED_MODEL_STATUS = {
    0: "LOGGED_MODEL_STATUS_UNSPECIFIED",
    1: "LOGGED_MODEL_PENDING",
    2: "LOGGED_MODEL_READY",
    3: "LOGGED_MODEL_UPLOAD_FAILED",
}
_LOGGED_MODEL_STATUS_OUT = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}


def key_values(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in d.items()]


def metrics(items: list[Metric]) -> list[dict[str, Any]]:
    """Many metrics at once: the loop of the get-history and search hot paths."""
    out: list[dict[str, Any]] = []
    append = out.append
    inf = math.inf
    for m in items:
        v = m.value
        append(
            {
                "key": m.key,
                # NaN fails both comparisons, ±inf one: those take the string forms.
                "value": v if -inf < v < inf else number(v),
                "timestamp": m.timestamp,
                "step": m.step,
            }
        )
    return out


def experiment(e: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": e.experiment_id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
    }
    if e.tags:
        out["tags"] = key_values(e.tags)
    return out


def run_info(i: RunInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": i.run_id,
        "run_uuid": i.run_id,
        "run_name": i.run_name,
        "experiment_id": i.experiment_id,
        "user_id": i.user_id,
        "status": i.status,
        "start_time": i.start_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle_stage,
    }
    if i.end_time is not None:
        out["end_time"] = i.end_time
    return out


def dataset_input(d: DatasetInput) -> dict[str, Any]:
    ds: dict[str, Any] = {
        "name": d.name,
        "digest": d.digest,
        "source_type": d.source_type,
        "source": d.source,
    }
    if d.schema is not None:
        ds["schema"] = d.schema
    if d.profile is not None:
        ds["profile"] = d.profile
    out: dict[str, Any] = {"dataset": ds}
    if d.tags:
        out["tags"] = d.tags
    return out


def run(r: Run, inf: float = math.inf) -> dict[str, Any]:
    """One run; its loops inlined because search returns thousands (dict building is the cost)."""
    info = run_info(r.info)
    data: dict[str, Any] = {}
    if r.metrics:
        data["metrics"] = [
            {
                "key": m.key,
                "value": m.value if -inf < m.value < inf else number(m.value),
                "timestamp": m.timestamp,
                "step": m.step,
            }
            for m in r.metrics
        ]
    if r.params:
        data["params"] = [{"key": k, "value": v} for k, v in r.params.items()]
    if r.tags:
        data["tags"] = [{"key": k, "value": v} for k, v in r.tags.items()]
    # MLflow's server always sends inputs and outputs, empty or not.
    return {
        "info": info,
        "data": data,
        "inputs": {"dataset_inputs": [dataset_input(d) for d in r.inputs]} if r.inputs else {},
        "outputs": {"model_outputs": [{"model_id": o.model_id, "step": o.step} for o in r.outputs]}
        if r.outputs
        else {},
    }


def logged_model(m: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": m.model_id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "creation_timestamp_ms": m.creation_timestamp,
        "last_updated_timestamp_ms": m.last_updated_timestamp,
        "artifact_uri": m.artifact_location,
        "status": _LOGGED_MODEL_STATUS_OUT.get(m.status, "LOGGED_MODEL_STATUS_UNSPECIFIED"),
    }
    if m.model_type:
        info["model_type"] = m.model_type
    if m.source_run_id:
        info["source_run_id"] = m.source_run_id
    if m.status_message:
        info["status_message"] = m.status_message
    if m.tags:
        info["tags"] = key_values(m.tags)
    data: dict[str, Any] = {}
    if m.params:
        data["params"] = key_values(m.params)
    if m.metrics:
        data["metrics"] = metrics(m.metrics)
    return {"info": info, "data": data}


def model_version(mv: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": mv.name,
        "version": mv.version,
        "creation_timestamp": mv.creation_timestamp,
        "last_updated_timestamp": mv.last_updated_timestamp,
        "current_stage": mv.current_stage,
        "description": mv.description,
        "source": mv.source,
        "run_link": mv.run_link or "",
        "status": mv.status,
    }
    if mv.user_id:
        out["user_id"] = mv.user_id
    if mv.run_id:
        out["run_id"] = mv.run_id
    if mv.status_message:
        out["status_message"] = mv.status_message
    if mv.tags:
        out["tags"] = key_values(mv.tags)
    if mv.aliases:
        out["aliases"] = list(mv.aliases)
    if mv.model_id:
        out["model_id"] = mv.model_id
    return out


def registered_model(rm: RegisteredModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": rm.name,
        "creation_timestamp": rm.creation_timestamp,
        "last_updated_timestamp": rm.last_updated_timestamp,
    }
    # A model created without a description has none (the client reads it as None).
    if rm.description:
        out["description"] = rm.description
    if rm.latest_versions:
        out["latest_versions"] = [model_version(mv) for mv in rm.latest_versions]
    if rm.tags:
        out["tags"] = key_values(rm.tags)
    if rm.aliases:
        out["aliases"] = [{"alias": a, "version": v} for a, v in rm.aliases.items()]
    return out
