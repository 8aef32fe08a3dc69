"""Request and response bodies of ``/api/v1``, as pydantic models.

They exist so that the OpenAPI description (``/openapi.json``, ``/docs``) says
exactly what each endpoint takes and gives. Tags and params are plain JSON objects
here (not MLflow's ``[{key, value}]`` lists); metric values that are not finite are
written as ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and read in those forms too.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from opsloop.registry.entities import ModelVersion as ModelVersionRecord
from opsloop.registry.entities import RegisteredModel as RegisteredModelRecord
from opsloop.tracking.entities import Experiment as ExperimentRecord
from opsloop.tracking.entities import Metric as MetricRecord
from opsloop.tracking.entities import Run as RunRecord

T = TypeVar("T")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class Out(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")


class Error(Out):
    """The one error shape (MLflow's): what went wrong, machine- and human-readable."""

    error_code: str = Field(examples=["RESOURCE_DOES_NOT_EXIST"])
    message: str


class Page(Out, Generic[T]):
    items: list[T]
    next_page_token: str | None = Field(
        None, description="Pass as page_token for the next page; null on the last page."
    )


# -- experiments ----------------------------------------------------------------------


class Experiment(Out):
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str]

    @classmethod
    def of(cls, e: ExperimentRecord) -> Experiment:
        return cls(
            experiment_id=e.experiment_id,
            name=e.name,
            artifact_location=e.artifact_location,
            lifecycle_stage=e.lifecycle_stage,
            creation_time=e.creation_time,
            last_update_time=e.last_update_time,
            tags=e.tags,
        )


class ExperimentCreate(Body):
    name: str
    artifact_location: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ExperimentUpdate(Body):
    name: str = Field(description="The new name.")


class TagValue(Body):
    value: str


# -- runs --------------------------------------------------------------------------------


class Metric(Out):
    key: str
    value: float
    timestamp: int
    step: int

    @classmethod
    def of(cls, m: MetricRecord) -> Metric:
        return cls(key=m.key, value=m.value, timestamp=m.timestamp, step=m.step)


class Run(Out):
    run_id: str
    experiment_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    user_id: str
    source: str
    lifecycle_stage: str
    artifact_uri: str
    parent_run_id: str | None
    params: dict[str, str]
    metrics: list[Metric] = Field(description="The latest value of each metric.")
    tags: dict[str, str]

    @classmethod
    def of(cls, r: RunRecord) -> Run:
        i = r.info
        return cls(
            run_id=i.run_id,
            experiment_id=i.experiment_id,
            name=i.run_name,
            status=i.status,
            start_time=i.start_time,
            end_time=i.end_time,
            user_id=i.user_id,
            source=i.source,
            lifecycle_stage=i.lifecycle_stage,
            artifact_uri=i.artifact_uri,
            parent_run_id=i.parent_run_id,
            params=r.params,
            metrics=[Metric.of(m) for m in r.metrics],
            tags=r.tags,
        )


class RunCreate(Body):
    experiment_id: str = "0"
    name: str | None = None
    start_time: int | None = Field(None, description="Milliseconds since the epoch; default now.")
    user_id: str = ""
    source: str = ""
    parent_run_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class RunUpdate(Body):
    status: str | None = Field(None, description="RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.")
    end_time: int | None = None
    name: str | None = None


class RunSearch(Body):
    experiment_ids: list[str]
    filter: str | None = Field(None, examples=["metrics.acc > 0.9 and params.lr = '0.01'"])
    view: str = Field("ACTIVE_ONLY", description="ACTIVE_ONLY, DELETED_ONLY or ALL.")
    max_results: int | None = None
    order_by: list[str] | None = Field(None, examples=[["metrics.acc DESC"]])
    page_token: str | None = None


class MetricIn(Body):
    key: str
    value: float
    timestamp: int | None = Field(None, description="Milliseconds since the epoch; default now.")
    step: int = 0


class ParamIn(Body):
    key: str
    value: str


class Batch(Body):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class ArtifactFile(Out):
    path: str = Field(description="Relative to the run's artifact root.")
    is_dir: bool
    size: int | None = None


# -- registry --------------------------------------------------------------------------


class ModelVersion(Out):
    name: str
    version: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str
    user_id: str
    current_stage: str
    source: str
    run_id: str | None
    run_link: str | None
    status: str
    status_message: str | None
    tags: dict[str, str]
    aliases: list[str]
    model_id: str | None
    flavor: str | None
    signature: str | None
    environment: str | None

    @classmethod
    def of(cls, mv: ModelVersionRecord) -> ModelVersion:
        return cls(
            name=mv.name,
            version=mv.version,
            creation_timestamp=mv.creation_timestamp,
            last_updated_timestamp=mv.last_updated_timestamp,
            description=mv.description,
            user_id=mv.user_id,
            current_stage=mv.current_stage,
            source=mv.source,
            run_id=mv.run_id,
            run_link=mv.run_link,
            status=mv.status,
            status_message=mv.status_message,
            tags=mv.tags,
            aliases=mv.aliases,
            model_id=mv.model_id,
            flavor=mv.flavor,
            signature=mv.signature,
            environment=mv.environment,
        )


class RegisteredModel(Out):
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str
    latest_versions: list[ModelVersion]
    tags: dict[str, str]
    aliases: dict[str, str] = Field(description="Alias → version.")

    @classmethod
    def of(cls, rm: RegisteredModelRecord) -> RegisteredModel:
        return cls(
            name=rm.name,
            creation_timestamp=rm.creation_timestamp,
            last_updated_timestamp=rm.last_updated_timestamp,
            description=rm.description,
            latest_versions=[ModelVersion.of(mv) for mv in rm.latest_versions],
            tags=rm.tags,
            aliases=rm.aliases,
        )


class ModelCreate(Body):
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ModelUpdate(Body):
    name: str | None = Field(None, description="A new name (renames the model).")
    description: str | None = None


class VersionCreate(Body):
    source: str = Field(description="The model's artifacts: an artifact URI or models:/m-<id>.")
    run_id: str | None = None
    model_id: str | None = None
    run_link: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class VersionUpdate(Body):
    description: str | None = None
    stage: str | None = Field(None, description="None, Staging, Production or Archived.")
    archive_existing_versions: bool = False


class AliasSet(Body):
    version: str


class DownloadUri(Out):
    artifact_uri: str
