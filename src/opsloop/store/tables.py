"""The metadata schema (SQLAlchemy Core). Migrations in ``migrations/`` create it.

Times are integers in milliseconds since the epoch, as in MLflow's protocol. Latest
metric values keep NaN through ``is_nan`` (SQLite has no NaN: it reads back NULL),
and ±inf as real infinities (both SQLite and PostgreSQL store them); series points
keep both inside their packed chunks.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Limits, as MLflow's (mlflow/utils/validation.py), so its clients meet the same rules.
MAX_NAME_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 5000

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_NAME_LENGTH), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(32), nullable=False, default="active"),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("experiment_id", "key"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_uuid", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(MAX_NAME_LENGTH), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("user_id", String(MAX_NAME_LENGTH), nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("lifecycle_stage", String(32), nullable=False, default="active"),
    Column("artifact_uri", Text, nullable=False),
    Column("parent_run_id", String(32), nullable=True),
    Column("deleted_time", BigInteger, nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    Index("ix_runs_parent", "parent_run_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
    Index("ix_params_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

tags = Table(
    "tags",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
    Index("ix_tags_key", "key"),
    sqlite_with_rowid=False,
)

# Metric series, one row per (run, key) per logged batch: the batch's steps,
# timestamps and values packed as little-endian int64 / int64 / float64 arrays (see
# opsloop.tracking.series). ``chunk`` is the SHA-256 of the content, so a retried
# batch is stored once.
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("run_uuid", String(32), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("chunk", String(64), nullable=False),
    Column("n", Integer, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("stamps", LargeBinary, nullable=False),
    Column("vals", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key", "chunk"),
    sqlite_with_rowid=False,
)

# The latest point of each series (max step, then timestamp, then value), which is
# what run search filters and orders on.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_uuid", String(32), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
    Index("ix_latest_metrics_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

# Run inputs: dataset versions (and, later, models) a run consumed.
datasets = Table(
    "datasets",
    metadata,
    Column("dataset_uuid", String(32), primary_key=True),
    Column("experiment_id", Integer, nullable=False),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(64), nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    Index("ix_datasets_exp_name_digest", "experiment_id", "name", "digest", unique=True),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("dataset_uuid", String(32), ForeignKey("datasets.dataset_uuid"), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
    PrimaryKeyConstraint("run_uuid", "dataset_uuid"),
)

# Logged models (MLflow 3's LoggedModel): a model's artifacts, linked to the run that
# made it; registry versions point at them.
logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("experiment_id", Integer, nullable=False),
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("creation_timestamp", BigInteger, nullable=False),
    Column("last_updated_timestamp", BigInteger, nullable=False),
    Column("model_type", String(MAX_NAME_LENGTH), nullable=True),
    Column("source_run_id", String(32), nullable=True),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=True),
    Column("lifecycle_stage", String(32), nullable=False, default="active"),
    Column("tags", Text, nullable=False, default="{}"),
    Column("params", Text, nullable=False, default="{}"),
    Index("ix_logged_models_run", "source_run_id"),
)

# Run outputs: models (by logged-model id) a run produced, at a step.
run_outputs = Table(
    "run_outputs",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("model_id", String(64), ForeignKey("logged_models.model_id"), nullable=False),
    Column("step", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("run_uuid", "model_id"),
)

# Artifacts: a logical path (``<experiment>/<run>/artifacts/model/MLmodel``) names a
# content-addressed blob. A path is visible only once its blob is complete.
artifact_files = Table(
    "artifact_files",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("name", "key"),
    ForeignKeyConstraint(["name"], ["registered_models.name"], onupdate="CASCADE"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("user_id", String(MAX_NAME_LENGTH), nullable=False, default=""),
    Column("current_stage", String(20), nullable=False, default="None"),
    Column("source", Text, nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("run_link", Text, nullable=True),
    Column("model_id", String(64), nullable=True),
    Column("status", String(20), nullable=False, default="READY"),
    Column("status_message", Text, nullable=True),
    Column("storage_location", Text, nullable=True),
    Column("flavor", String(64), nullable=True),
    Column("signature", Text, nullable=True),
    Column("environment", Text, nullable=True),
    PrimaryKeyConstraint("name", "version"),
    ForeignKeyConstraint(["name"], ["registered_models.name"], onupdate="CASCADE"),
    Index("ix_model_versions_run", "run_id"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(MAX_NAME_LENGTH), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("name", "version", "key"),
    ForeignKeyConstraint(
        ["name", "version"], ["model_versions.name", "model_versions.version"], onupdate="CASCADE"
    ),
)

registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("alias", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
    ForeignKeyConstraint(["name"], ["registered_models.name"], onupdate="CASCADE"),
)

# Datasets (opsloop.data): a name, and its versions numbered 1, 2, 3 in order of
# registration. A version is canonical Parquet in the artifact store at
# ``artifact_path``, named by ``digest`` (the SHA-256 of those bytes), so the same
# content under one name is one version. ``schema``, ``profile`` and
# ``validation_report`` are JSON (see opsloop.data.profile). The name's row is what
# writers lock while they number a new version.
dataset_names = Table(
    "dataset_names",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("artifact_path", String(1024), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_columns", Integer, nullable=False),
    Column("schema", Text, nullable=False),
    Column("profile", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("source_type", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("produced_by_step", String(MAX_NAME_LENGTH), nullable=True),
    Column("validation_report", Text, nullable=True),
    PrimaryKeyConstraint("name", "version"),
    ForeignKeyConstraint(["name"], ["dataset_names.name"], onupdate="CASCADE"),
    Index("ix_dataset_versions_name_digest", "name", "digest", unique=True),
    Index("ix_dataset_versions_digest", "digest"),
    Index("ix_dataset_versions_run", "run_id"),
)

# Pipeline schedules (opsloop.pipelines.scheduling): a pipeline (an import reference
# ``module:pipeline`` run in ``workdir``) with its params, fired on a cron expression
# and/or when a new version of ``on_dataset`` is registered. ``params`` and ``options``
# are JSON; ``next_fire_time`` is the next cron slot (ms, UTC) and ``dataset_version``
# the newest version of ``on_dataset`` already handled.
pipeline_schedules = Table(
    "pipeline_schedules",
    metadata,
    Column("schedule_id", String(32), primary_key=True),
    Column("name", String(MAX_NAME_LENGTH), nullable=False, unique=True),
    Column("target", Text, nullable=False),
    Column("workdir", Text, nullable=True),
    Column("params", Text, nullable=False, default="{}"),
    Column("options", Text, nullable=False, default="{}"),
    Column("cron", String(MAX_NAME_LENGTH), nullable=True),
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("on_dataset", String(MAX_NAME_LENGTH), nullable=True),
    Column("dataset_version", Integer, nullable=False, default=0),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("max_active", Integer, nullable=False, default=1),
    Column("overlap", String(16), nullable=False, default="queue"),
    Column("next_fire_time", BigInteger, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
)

# Each time a schedule fired (cron, dataset:NAME@V or manual): queued, running,
# finished, failed or skipped, with the pipeline run it made. ``host``/``pid`` are the
# process running it and ``heartbeat_time`` its last sign of life, so that a fire whose
# process died is found and marked failed.
pipeline_schedule_fires = Table(
    "pipeline_schedule_fires",
    metadata,
    Column("fire_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "schedule_id",
        String(32),
        ForeignKey("pipeline_schedules.schedule_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("reason", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("fire_time", BigInteger, nullable=False),
    Column("scheduled_time", BigInteger, nullable=True),
    Column("start_time", BigInteger, nullable=True),
    Column("end_time", BigInteger, nullable=True),
    Column("params", Text, nullable=False, default="{}"),
    Column("run_id", String(32), nullable=True),
    Column("host", String(255), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("heartbeat_time", BigInteger, nullable=True),
    Column("message", Text, nullable=True),
    Index("ix_pipeline_schedule_fires_schedule", "schedule_id", "fire_id"),
    Index("ix_pipeline_schedule_fires_status", "status"),
)

# Leases: which process may act for a singleton job (the scheduler) until when. A
# holder renews its lease while it works; another process takes it over only once it
# has expired, so two servers on one database never both schedule.
scheduler_leases = Table(
    "scheduler_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(MAX_NAME_LENGTH), nullable=False),
    Column("acquired_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger, nullable=False),
)

# Deployments (opsloop.serving): a name serving a registered model. ``alias`` set means
# the stable version follows ``model@alias`` (``stable_version`` is then the alias's
# version when last seen); otherwise ``stable_version`` is pinned. A canary takes
# ``canary_share`` percent of the traffic; a shadow gets a copy of every request.
# ``settings`` is JSON (batching, workers, prediction logging). ``revision`` counts
# changes: writers lock the row and bump it, and a caller may ask for a change only
# at the revision it read.
deployments = Table(
    "deployments",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("model", String(MAX_NAME_LENGTH), nullable=False),
    Column("alias", String(MAX_NAME_LENGTH), nullable=True),
    Column("stable_version", Integer, nullable=False),
    Column("canary_version", Integer, nullable=True),
    Column("canary_share", Float, nullable=True),
    Column("shadow_version", Integer, nullable=True),
    Column("settings", Text, nullable=False, default="{}"),
    Column("description", Text, nullable=False, default=""),
    Column("revision", Integer, nullable=False, default=1),
    Column("created_by", String(MAX_NAME_LENGTH), nullable=False, default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Index("ix_deployments_model", "model"),
)

# Every change of a deployment (create, update, set_canary, promote, rollback,
# alias_moved): when, who, why, and the traffic state after it; ``changes`` is JSON
# of each changed field's old and new value.
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment",
        String(MAX_NAME_LENGTH),
        ForeignKey("deployments.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("revision", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("event_time", BigInteger, nullable=False),
    Column("who", String(MAX_NAME_LENGTH), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("stable_version", Integer, nullable=False),
    Column("canary_version", Integer, nullable=True),
    Column("canary_share", Float, nullable=True),
    Column("shadow_version", Integer, nullable=True),
    Column("changes", Text, nullable=False, default="{}"),
    Index("ix_deployment_events_deployment", "deployment", "event_id"),
)

# The prediction log: Parquet segments in the artifact store (blob ``sha256``, visible
# at ``artifact_path``), one per deployment, model version and role (served or shadow)
# per flush, with the time span of their rows (ms) so that a window reads only the
# segments it overlaps. No foreign key: a server may log for a model it serves without
# a deployment record.
prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column("segment_id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=True),
    Column("shadow", Boolean, nullable=False, default=False),
    Column("min_time", BigInteger, nullable=False),
    Column("max_time", BigInteger, nullable=False),
    Column("num_rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("artifact_path", String(1024), nullable=False),
    Column("schema", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Index("ix_prediction_segments_min", "deployment", "min_time"),
    Index("ix_prediction_segments_max", "deployment", "max_time"),
)

# Ground truth that came later: Parquet segments of (request_id, row, label, label
# time), joined to predictions by request id when read (the latest label wins).
# ``min_time``/``max_time`` are when the labels arrived: a label cannot arrive before
# its prediction, so a window starting at T reads only segments with max_time >= T.
prediction_label_segments = Table(
    "prediction_label_segments",
    metadata,
    Column("segment_id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(MAX_NAME_LENGTH), nullable=False),
    Column("min_time", BigInteger, nullable=False),
    Column("max_time", BigInteger, nullable=False),
    Column("num_rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("artifact_path", String(1024), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Index("ix_prediction_label_segments_max", "deployment", "max_time"),
)

# Events: what a part raises for others to act on — a monitor's alert, a detector's
# anomaly, a forecast breach — one row each, queried by kind, subject and time. The
# automation part turns them into incidents and actions. ``payload`` is JSON.
events = Table(
    "events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("event_time", BigInteger, nullable=False),
    Column("kind", String(100), nullable=False),
    Column("source", String(MAX_NAME_LENGTH), nullable=False),
    Column("subject", String(MAX_NAME_LENGTH), nullable=True),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", Text, nullable=False, default="{}"),
    Index("ix_events_time", "event_time"),
    Index("ix_events_kind", "kind", "event_time"),
    Index("ix_events_subject", "subject", "event_time"),
)

# Each part's own tables live in a module of its own (one owner each), on this metadata.
from opsloop.store import tables_logs as tables_logs  # noqa: E402
from opsloop.store import tables_monitoring as tables_monitoring  # noqa: E402
from opsloop.store import tables_signals as tables_signals  # noqa: E402
