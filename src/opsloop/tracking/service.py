"""Tracking logic on the store: experiments, runs and what is logged to them.

Every write validates its whole input first and then changes the store in one
transaction, so a rejected request leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from opsloop.core import paging
from opsloop.core.ids import new_run_id, now_ms
from opsloop.errors import Conflict, InvalidInput, InvalidState, NotFound
from opsloop.store import Store
from opsloop.store.sql import upsert
from opsloop.store.tables import (
    datasets,
    experiment_tags,
    experiments,
    logged_models,
    metric_chunks,
    params,
    run_inputs,
    run_outputs,
    runs,
    tags,
)
from opsloop.tracking import series
from opsloop.tracking import validation as v
from opsloop.tracking.entities import (
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    ModelOutput,
    Page,
    Run,
    RunInfo,
    RunStatus,
    ViewType,
)

ARTIFACT_SCHEME = "mlflow-artifacts:/"
MAX_SEARCH_RESULTS = 50_000
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"
TAG_USER = "mlflow.user"
TAG_SOURCE = "mlflow.source.name"

_ADJECTIVES = [
    "able",
    "bold",
    "brave",
    "calm",
    "clever",
    "eager",
    "fair",
    "gentle",
    "grand",
    "happy",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "nimble",
    "proud",
    "quick",
    "quiet",
    "sharp",
    "shy",
    "smart",
    "swift",
    "warm",
    "wise",
]
_NOUNS = [
    "ant",
    "bat",
    "bear",
    "bee",
    "cat",
    "crab",
    "crow",
    "deer",
    "dog",
    "duck",
    "eel",
    "elk",
    "fox",
    "frog",
    "goat",
    "hare",
    "hawk",
    "lark",
    "lion",
    "mole",
    "moth",
    "owl",
    "ram",
    "seal",
    "swan",
    "toad",
    "wolf",
    "wren",
]


def random_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def artifact_path_of(uri: str) -> str | None:
    """The artifact store path for an ``mlflow-artifacts:/`` URI (None for foreign URIs)."""
    if uri.startswith(ARTIFACT_SCHEME):
        return uri[len(ARTIFACT_SCHEME) :].lstrip("/")
    return None


class _SQL:
    """Dialect-specific statements for the hot path (executemany on the driver)."""

    def __init__(self, dialect: str) -> None:
        ph = "?" if dialect == "sqlite" else "%s"
        vals6 = ", ".join([ph] * 6)
        vals9 = ", ".join([ph] * 9)
        self.insert_chunks = (
            "INSERT INTO metric_chunks "
            "(run_uuid, key, chunk, n, min_step, max_step, steps, stamps, vals) "
            f"VALUES ({vals9}) ON CONFLICT DO NOTHING"
        )
        self.upsert_latest = (
            "INSERT INTO latest_metrics (run_uuid, key, step, timestamp, value, is_nan) "
            f"VALUES ({vals6}) ON CONFLICT (run_uuid, key) DO UPDATE SET "
            "step = excluded.step, timestamp = excluded.timestamp, "
            "value = excluded.value, is_nan = excluded.is_nan "
            "WHERE excluded.step > latest_metrics.step "
            "OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) "
            "OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp "
            "AND excluded.value > latest_metrics.value)"
        )
        self.insert_params = (
            f"INSERT INTO params (run_uuid, key, value) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT DO NOTHING"
        )
        self.upsert_tags = (
            f"INSERT INTO tags (run_uuid, key, value) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value"
        )


class TrackingService:
    """Experiments and runs on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self._sql = _SQL(self.db.dialect)

    # -- experiments ------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        name = v.experiment_name(name)
        clean_tags = {
            v.key("tag", k): v.tag_value(k, val, experiment=True) for k, val in (tags or {}).items()
        }
        now = now_ms()
        try:
            with self.db.write() as conn:
                if conn.execute(
                    sa.select(experiments.c.experiment_id).where(experiments.c.name == name)
                ).first():
                    raise Conflict(f"experiment {name!r} already exists")
                res = conn.execute(
                    experiments.insert().values(
                        name=name,
                        artifact_location=artifact_location or "",
                        lifecycle_stage="active",
                        creation_time=now,
                        last_update_time=now,
                    )
                )
                exp_id = int(res.inserted_primary_key[0])  # type: ignore[index]
                if not artifact_location:
                    conn.execute(
                        experiments.update()
                        .where(experiments.c.experiment_id == exp_id)
                        .values(artifact_location=f"{ARTIFACT_SCHEME}{exp_id}")
                    )
                for k, val in clean_tags.items():
                    conn.execute(
                        experiment_tags.insert().values(experiment_id=exp_id, key=k, value=val)
                    )
        except SAIntegrityError:
            raise Conflict(f"experiment {name!r} already exists") from None
        return str(exp_id)

    def _experiment(self, conn: Connection, where: Any, what: str) -> Experiment:
        row = conn.execute(sa.select(experiments).where(where)).first()
        if row is None:
            raise NotFound(f"no experiment {what}")
        tag_rows = conn.execute(
            sa.select(experiment_tags.c.key, experiment_tags.c.value).where(
                experiment_tags.c.experiment_id == row.experiment_id
            )
        ).all()
        return Experiment(
            str(row.experiment_id),
            row.name,
            row.artifact_location,
            row.lifecycle_stage,
            int(row.creation_time),
            int(row.last_update_time),
            {t.key: t.value for t in tag_rows},
        )

    def get_experiment(self, experiment_id: str | int) -> Experiment:
        eid = v.experiment_id(experiment_id)
        with self.db.read() as conn:
            return self._experiment(
                conn, experiments.c.experiment_id == eid, f"with id {experiment_id}"
            )

    def get_experiment_by_name(self, name: str) -> Experiment:
        with self.db.read() as conn:
            return self._experiment(conn, experiments.c.name == name, f"named {name!r}")

    def get_or_create_experiment(self, name: str) -> str:
        try:
            exp = self.get_experiment_by_name(name)
        except NotFound:
            try:
                return self.create_experiment(name)
            except Conflict:
                exp = self.get_experiment_by_name(name)
        if exp.lifecycle_stage != "active":
            raise InvalidState(f"experiment {name!r} is deleted; restore it or pick another name")
        return exp.experiment_id

    def search_experiments(
        self,
        view_type: int | str | None = None,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        from opsloop.tracking import search

        view = ViewType.parse(view_type)
        limit = v.max_results(max_results, 1000, MAX_SEARCH_RESULTS)
        offset = paging.decode(page_token)
        q = sa.select(experiments).where(experiments.c.lifecycle_stage.in_(ViewType.stages(view)))
        clause = search.experiment_filter(filter_string)
        if clause is not None:
            q = q.where(clause)
        q = q.order_by(*search.experiment_order(order_by)).offset(offset).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            ids = [r.experiment_id for r in rows[:limit]]
            tag_map: dict[int, dict[str, str]] = {i: {} for i in ids}
            if ids:
                for t in conn.execute(
                    sa.select(experiment_tags).where(experiment_tags.c.experiment_id.in_(ids))
                ):
                    tag_map[t.experiment_id][t.key] = t.value
        items = [
            Experiment(
                str(r.experiment_id),
                r.name,
                r.artifact_location,
                r.lifecycle_stage,
                int(r.creation_time),
                int(r.last_update_time),
                tag_map[r.experiment_id],
            )
            for r in rows[:limit]
        ]
        token = paging.encode(offset + limit) if len(rows) > limit else None
        return Page(items, token)

    def rename_experiment(self, experiment_id: str | int, new_name: str) -> None:
        eid = v.experiment_id(experiment_id)
        new_name = v.experiment_name(new_name)
        try:
            with self.db.write() as conn:
                exp = self._experiment(
                    conn, experiments.c.experiment_id == eid, f"with id {experiment_id}"
                )
                if exp.lifecycle_stage != "active":
                    raise InvalidState(
                        f"experiment {experiment_id} is deleted; restore it before renaming"
                    )
                clash = conn.execute(
                    sa.select(experiments.c.experiment_id).where(experiments.c.name == new_name)
                ).first()
                if clash and clash.experiment_id != eid:
                    raise Conflict(f"experiment {new_name!r} already exists")
                conn.execute(
                    experiments.update()
                    .where(experiments.c.experiment_id == eid)
                    .values(name=new_name, last_update_time=now_ms())
                )
        except SAIntegrityError:
            raise Conflict(f"experiment {new_name!r} already exists") from None

    def _set_experiment_stage(self, experiment_id: str | int, stage: str) -> None:
        eid = v.experiment_id(experiment_id)
        with self.db.write() as conn:
            self._experiment(conn, experiments.c.experiment_id == eid, f"with id {experiment_id}")
            if eid == 0 and stage == "deleted":
                raise InvalidState("the Default experiment (id 0) cannot be deleted")
            now = now_ms()
            conn.execute(
                experiments.update()
                .where(experiments.c.experiment_id == eid)
                .values(lifecycle_stage=stage, last_update_time=now)
            )
            conn.execute(
                runs.update()
                .where(runs.c.experiment_id == eid)
                .values(lifecycle_stage=stage, deleted_time=now if stage == "deleted" else None)
            )

    def delete_experiment(self, experiment_id: str | int) -> None:
        self._set_experiment_stage(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str | int) -> None:
        self._set_experiment_stage(experiment_id, "active")

    def set_experiment_tag(self, experiment_id: str | int, key: str, value: str) -> None:
        eid = v.experiment_id(experiment_id)
        key = v.key("tag", key)
        value = v.tag_value(key, value, experiment=True)
        with self.db.write() as conn:
            exp = self._experiment(
                conn, experiments.c.experiment_id == eid, f"with id {experiment_id}"
            )
            if exp.lifecycle_stage != "active":
                raise InvalidState(f"experiment {experiment_id} is deleted; restore it first")
            upsert(
                conn,
                experiment_tags,
                {"experiment_id": eid, "key": key, "value": value},
                ["experiment_id", "key"],
                ["value"],
            )

    def delete_experiment_tag(self, experiment_id: str | int, key: str) -> None:
        eid = v.experiment_id(experiment_id)
        with self.db.write() as conn:
            self._experiment(conn, experiments.c.experiment_id == eid, f"with id {experiment_id}")
            res = conn.execute(
                experiment_tags.delete().where(
                    (experiment_tags.c.experiment_id == eid) & (experiment_tags.c.key == key)
                )
            )
            if not res.rowcount:
                raise NotFound(f"experiment {experiment_id} has no tag {key!r}")

    # -- runs -------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str | int,
        *,
        user_id: str = "",
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        source: str = "",
    ) -> Run:
        eid = v.experiment_id(experiment_id)
        tags = {v.key("tag", k): v.tag_value(k, val) for k, val in (tags or {}).items()}
        if run_name is not None and not isinstance(run_name, str):
            raise InvalidInput(f"run name must be a string, got {run_name!r}")
        name = run_name or tags.get(TAG_RUN_NAME) or random_run_name()
        if len(name) > 250:
            raise InvalidInput(f"run name is {len(name)} characters long; the limit is 250")
        tags[TAG_RUN_NAME] = name
        parent = parent_run_id or tags.get(TAG_PARENT)
        if parent:
            v.run_id(parent)
            tags[TAG_PARENT] = parent
        user = user_id or tags.get(TAG_USER, "")
        if user:
            tags.setdefault(TAG_USER, user)
        src = source or tags.get(TAG_SOURCE, "")
        if src:
            tags.setdefault(TAG_SOURCE, src)
        run_id = new_run_id()
        start = start_time if start_time is not None else now_ms()
        with self.db.write() as conn:
            exp = self._experiment(
                conn, experiments.c.experiment_id == eid, f"with id {experiment_id}"
            )
            if exp.lifecycle_stage != "active":
                raise InvalidState(
                    f"experiment {experiment_id} is deleted; runs cannot be created in it"
                )
            if (
                parent
                and not conn.execute(
                    sa.select(runs.c.run_uuid).where(runs.c.run_uuid == parent)
                ).first()
            ):
                raise NotFound(f"parent run {parent} does not exist")
            artifact_uri = f"{exp.artifact_location.rstrip('/')}/{run_id}/artifacts"
            conn.execute(
                runs.insert().values(
                    run_uuid=run_id,
                    experiment_id=eid,
                    name=name,
                    status=RunStatus.RUNNING,
                    start_time=start,
                    end_time=None,
                    user_id=user,
                    source=src,
                    lifecycle_stage="active",
                    artifact_uri=artifact_uri,
                    parent_run_id=parent,
                )
            )
            if tags:
                conn.exec_driver_sql(
                    self._sql.upsert_tags, [(run_id, k, val) for k, val in tags.items()]
                )
        info = RunInfo(
            run_id,
            str(eid),
            name,
            RunStatus.RUNNING,
            start,
            None,
            user,
            src,
            "active",
            artifact_uri,
            parent,
        )
        return Run(info, {}, [], tags)

    def _run_row(self, conn: Connection, run_id: str) -> Any:
        row = conn.execute(sa.select(runs).where(runs.c.run_uuid == run_id)).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return row

    def _active_run(self, conn: Connection, run_id: str) -> Any:
        row = conn.execute(
            sa.select(runs.c.lifecycle_stage).where(runs.c.run_uuid == run_id)
        ).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        if row.lifecycle_stage != "active":
            raise InvalidState(
                f"run {run_id} is deleted: it must be in the 'active' state to be changed; restore it first"
            )
        return row

    def get_run(self, run_id: str) -> Run:
        v.run_id(run_id)
        with self.db.read() as conn:
            row = self._run_row(conn, run_id)
            return self._load_runs(conn, [row])[0]

    def _load_runs(self, conn: Connection, rows: Sequence[Any]) -> list[Run]:
        ids = [r.run_uuid for r in rows]
        if not ids:
            return []
        p_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        t_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        m_map: dict[str, list[Metric]] = {i: [] for i in ids}
        i_map: dict[str, list[DatasetInput]] = {i: [] for i in ids}
        o_map: dict[str, list[ModelOutput]] = {i: [] for i in ids}
        # The hot part of every search answer: plain DB-API tuples, not SQLAlchemy rows
        # (measured 2.5x faster for 1,000 runs with 10 params and 10 metrics each).
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        ph = "?" if self.db.dialect == "sqlite" else "%s"
        for chunk_start in range(0, len(ids), 900):
            chunk = ids[chunk_start : chunk_start + 900]
            marks = ",".join([ph] * len(chunk))
            cur.execute(
                f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", chunk
            )
            for rid, k, val in cur.fetchall():
                p_map[rid][k] = val
            cur.execute(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk)
            for rid, k, val in cur.fetchall():
                t_map[rid][k] = val
            cur.execute(
                "SELECT run_uuid, key, value, timestamp, step, is_nan FROM latest_metrics "
                f"WHERE run_uuid IN ({marks})",
                chunk,
            )
            for rid, k, val, ts, step, is_nan in cur.fetchall():
                m_map[rid].append(Metric(k, math.nan if is_nan or val is None else val, ts, step))
            for r4 in conn.execute(
                sa.select(run_inputs.c.run_uuid, run_inputs.c.tags, datasets)
                .join(datasets, datasets.c.dataset_uuid == run_inputs.c.dataset_uuid)
                .where(run_inputs.c.run_uuid.in_(chunk))
            ):
                i_map[r4.run_uuid].append(
                    DatasetInput(
                        r4.name,
                        r4.digest,
                        r4.source_type,
                        r4.source,
                        r4.schema,
                        r4.profile,
                        json.loads(r4.tags),
                    )
                )
            for r5 in conn.execute(sa.select(run_outputs).where(run_outputs.c.run_uuid.in_(chunk))):
                o_map[r5.run_uuid].append(ModelOutput(r5.model_id, int(r5.step)))
        out = []
        for r in rows:
            out.append(
                Run(
                    self._load_info(r),
                    p_map[r.run_uuid],
                    m_map[r.run_uuid],
                    t_map[r.run_uuid],
                    i_map[r.run_uuid],
                    o_map[r.run_uuid],
                )
            )
        return out

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        v.run_id(run_id)
        if status is not None and status not in RunStatus.ALL:
            raise InvalidInput(f"run status {status!r} is not one of {sorted(RunStatus.ALL)}")
        if run_name is not None and len(run_name) > 250:
            raise InvalidInput(f"run name is {len(run_name)} characters long; the limit is 250")
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            values: dict[str, Any] = {}
            if status is not None:
                values["status"] = status
                if end_time is None and status in RunStatus.TERMINAL:
                    end_time = now_ms()
            if end_time is not None:
                values["end_time"] = v.integer("end_time", end_time, 0)
            if run_name:
                values["name"] = run_name
                upsert(
                    conn,
                    tags,
                    {"run_uuid": run_id, "key": TAG_RUN_NAME, "value": run_name},
                    ["run_uuid", "key"],
                    ["value"],
                )
            if values:
                conn.execute(runs.update().where(runs.c.run_uuid == run_id).values(**values))
            row = self._run_row(conn, run_id)
        return self._load_info(row)

    @staticmethod
    def _load_info(r: Any) -> RunInfo:
        return RunInfo(
            r.run_uuid,
            str(r.experiment_id),
            r.name,
            r.status,
            int(r.start_time),
            None if r.end_time is None else int(r.end_time),
            r.user_id,
            r.source,
            r.lifecycle_stage,
            r.artifact_uri,
            r.parent_run_id,
        )

    def delete_run(self, run_id: str) -> None:
        v.run_id(run_id)
        with self.db.write() as conn:
            self._run_row(conn, run_id)
            conn.execute(
                runs.update()
                .where(runs.c.run_uuid == run_id)
                .values(lifecycle_stage="deleted", deleted_time=now_ms())
            )

    def restore_run(self, run_id: str) -> None:
        v.run_id(run_id)
        with self.db.write() as conn:
            self._run_row(conn, run_id)
            conn.execute(
                runs.update()
                .where(runs.c.run_uuid == run_id)
                .values(lifecycle_stage="active", deleted_time=None)
            )

    # -- logging ----------------------------------------------------------------

    def log_batch(
        self,
        run_id: str,
        metrics_: Iterable[Metric] = (),
        params_: Iterable[tuple[str, Any]] | dict[str, Any] = (),
        tags_: Iterable[tuple[str, Any]] | dict[str, Any] = (),
        *,
        points: Sequence[tuple[str, float, int, int]] = (),
        limits: bool = True,
    ) -> None:
        """Log metrics, params and tags to a run, all or nothing.

        Metrics come as ``Metric`` records or, on the hot paths, as ``points``: tuples
        ``(key, value, timestamp, step)`` whose types the caller has checked. A param
        already logged with another value is refused (as MLflow does), and so is the
        whole batch with it.
        """
        v.run_id(run_id)
        metric_list: list[Any] = list(points)
        for m in metrics_:
            value, ts, step = m.value, m.timestamp, m.step
            if type(value) is not float:
                value = v.metric_value(m.key, value)
            if type(ts) is not int or type(step) is not int:
                ts = v.integer("metric timestamp", ts, 0)
                step = v.integer("metric step", step, 0)
            metric_list.append((m.key, value, ts, step))
        param_items = list(params_.items()) if isinstance(params_, dict) else list(params_)
        tag_items = list(tags_.items()) if isinstance(tags_, dict) else list(tags_)
        if limits:
            if len(metric_list) > v.MAX_BATCH_METRICS:
                raise InvalidInput(
                    f"a batch may hold at most {v.MAX_BATCH_METRICS} metrics, got {len(metric_list)}"
                )
            if len(param_items) > v.MAX_BATCH_PARAMS:
                raise InvalidInput(
                    f"a batch may hold at most {v.MAX_BATCH_PARAMS} params, got {len(param_items)}"
                )
            if len(tag_items) > v.MAX_BATCH_TAGS:
                raise InvalidInput(
                    f"a batch may hold at most {v.MAX_BATCH_TAGS} tags, got {len(tag_items)}"
                )
        seen_keys = {p[0] for p in metric_list}
        for key in seen_keys:
            v.key("metric", key)
        chunk_rows, latest_rows = series.pack(run_id, metric_list)
        param_map: dict[str, str] = {}
        for k, val in param_items:
            v.key("param", k)
            sval = v.param_value(k, val)
            if k in param_map and param_map[k] != sval:
                raise InvalidInput(f"param {k!r} appears twice in the batch with different values")
            param_map[k] = sval
        tag_map: dict[str, str] = {}
        for k, val in tag_items:
            v.key("tag", k)
            tag_map[k] = v.tag_value(k, val)

        with self.db.write() as conn:
            self._active_run(conn, run_id)
            if param_map:
                existing = conn.execute(
                    sa.select(params.c.key, params.c.value).where(
                        (params.c.run_uuid == run_id) & params.c.key.in_(list(param_map))
                    )
                ).all()
                changed = [
                    (r.key, r.value, param_map[r.key])
                    for r in existing
                    if r.value != param_map[r.key]
                ]
                if changed:
                    k, old, new = changed[0]
                    raise InvalidInput(
                        f"changing param values is not allowed: param {k!r} of run {run_id} was "
                        f"already logged as {old!r}; the new value is {new!r}"
                    )
                conn.exec_driver_sql(
                    self._sql.insert_params, [(run_id, k, val) for k, val in param_map.items()]
                )
            if tag_map:
                conn.exec_driver_sql(
                    self._sql.upsert_tags, [(run_id, k, val) for k, val in tag_map.items()]
                )
                if TAG_RUN_NAME in tag_map:
                    conn.execute(
                        runs.update()
                        .where(runs.c.run_uuid == run_id)
                        .values(name=tag_map[TAG_RUN_NAME])
                    )
            if chunk_rows:
                conn.exec_driver_sql(self._sql.insert_chunks, chunk_rows)
                conn.exec_driver_sql(self._sql.upsert_latest, latest_rows)

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int = 0
    ) -> None:
        val = v.metric_value(key, value)
        ts = v.integer("timestamp", timestamp, now_ms())
        st = v.integer("step", step, 0)
        self.log_batch(run_id, [Metric(key, val, ts, st)])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params_=[(key, value)])

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags_=[(key, value)])

    def delete_tag(self, run_id: str, key: str) -> None:
        v.run_id(run_id)
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            res = conn.execute(
                tags.delete().where((tags.c.run_uuid == run_id) & (tags.c.key == key))
            )
            if not res.rowcount:
                raise NotFound(f"no tag {key!r} on run {run_id}")

    def get_metric_history(
        self, run_id: str, key: str, max_results: int | None = None, page_token: str | None = None
    ) -> Page:
        """Every point of a series, ordered by step, timestamp and value."""
        v.run_id(run_id)
        offset = paging.decode(page_token)
        limit = v.max_results(max_results, 1_000_000_000, 1_000_000_000)
        with self.db.read() as conn:
            self._run_row(conn, run_id)
            chunks = conn.execute(
                sa.select(
                    metric_chunks.c.steps, metric_chunks.c.stamps, metric_chunks.c.vals
                ).where((metric_chunks.c.run_uuid == run_id) & (metric_chunks.c.key == key))
            ).all()
        points = series.unpack(key, chunks, run_id)
        items = points[offset : offset + limit]
        token = paging.encode(offset + limit) if len(points) > offset + limit else None
        return Page(items, token)

    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        v.run_id(run_id)
        for d in inputs:
            if not d.name or not d.digest:
                raise InvalidInput("a dataset input needs a name and a digest")
            if len(d.name) > 500 or len(d.digest) > 64:
                raise InvalidInput(f"dataset name or digest too long: {d.name[:40]!r}")
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            eid = conn.execute(
                sa.select(runs.c.experiment_id).where(runs.c.run_uuid == run_id)
            ).scalar_one()
            for d in inputs:
                found = conn.execute(
                    sa.select(datasets.c.dataset_uuid).where(
                        (datasets.c.experiment_id == eid)
                        & (datasets.c.name == d.name)
                        & (datasets.c.digest == d.digest)
                    )
                ).first()
                if found:
                    ds_id = found.dataset_uuid
                else:
                    ds_id = uuid.uuid4().hex
                    conn.execute(
                        datasets.insert().values(
                            dataset_uuid=ds_id,
                            experiment_id=eid,
                            name=d.name,
                            digest=d.digest,
                            source_type=d.source_type or "",
                            source=d.source or "",
                            schema=d.schema,
                            profile=d.profile,
                        )
                    )
                upsert(
                    conn,
                    run_inputs,
                    {"run_uuid": run_id, "dataset_uuid": ds_id, "tags": json.dumps(d.tags)},
                    ["run_uuid", "dataset_uuid"],
                    ["tags"],
                )

    def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None:
        v.run_id(run_id)
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            for o in outputs:
                if not conn.execute(
                    sa.select(logged_models.c.model_id).where(
                        logged_models.c.model_id == o.model_id
                    )
                ).first():
                    raise NotFound(f"logged model {o.model_id!r} does not exist")
                upsert(
                    conn,
                    run_outputs,
                    {"run_uuid": run_id, "model_id": o.model_id, "step": o.step},
                    ["run_uuid", "model_id"],
                    ["step"],
                )

    # -- search -----------------------------------------------------------------

    def search_runs(
        self,
        experiment_ids: Sequence[str | int],
        filter_string: str | None = None,
        run_view_type: int | str | None = None,
        max_results: int | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        from opsloop.tracking import search

        eids = [v.experiment_id(e) for e in experiment_ids]
        view = ViewType.parse(run_view_type)
        limit = v.max_results(max_results, 1000, MAX_SEARCH_RESULTS)
        offset = paging.decode(page_token)
        clause = search.run_filter(filter_string)
        order = search.run_order(order_by)
        if not eids:
            return Page([], None)
        q = sa.select(runs).where(
            runs.c.experiment_id.in_(eids) & runs.c.lifecycle_stage.in_(ViewType.stages(view))
        )
        if clause is not None:
            q = q.where(clause)
        q = q.order_by(*order).offset(offset).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            items = self._load_runs(conn, rows[:limit])
        token = paging.encode(offset + limit) if len(rows) > limit else None
        return Page(items, token)

    # -- logged models (MLflow 3) ---------------------------------------------------

    def create_logged_model(
        self,
        experiment_id: str | int,
        name: str | None = None,
        *,
        source_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        model_type: str | None = None,
    ) -> LoggedModel:
        eid = v.experiment_id(experiment_id)
        name = name or random_run_name()
        v.key("model", name)
        model_id = f"m-{uuid.uuid4().hex}"
        now = now_ms()
        tags = {v.key("tag", k): v.tag_value(k, val) for k, val in (tags or {}).items()}
        params = {v.key("param", k): v.param_value(k, val) for k, val in (params or {}).items()}
        with self.db.write() as conn:
            exp = self._experiment(
                conn, experiments.c.experiment_id == eid, f"with id {experiment_id}"
            )
            if source_run_id:
                self._run_row(conn, source_run_id)
            location = f"{exp.artifact_location.rstrip('/')}/models/{model_id}/artifacts"
            conn.execute(
                logged_models.insert().values(
                    model_id=model_id,
                    experiment_id=eid,
                    name=name,
                    artifact_location=location,
                    creation_timestamp=now,
                    last_updated_timestamp=now,
                    model_type=model_type,
                    source_run_id=source_run_id,
                    status="PENDING",
                    status_message=None,
                    lifecycle_stage="active",
                    tags=json.dumps(tags),
                    params=json.dumps(params),
                )
            )
        return self.get_logged_model(model_id)

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(logged_models).where(logged_models.c.model_id == model_id)
            ).first()
        if row is None or (row.lifecycle_stage != "active" and not allow_deleted):
            raise NotFound(f"logged model {model_id!r} does not exist")
        return _logged_model(row)

    def _update_logged_model(self, model_id: str, fn: Any) -> LoggedModel:
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(logged_models).where(logged_models.c.model_id == model_id)
            ).first()
            if row is None or row.lifecycle_stage != "active":
                raise NotFound(f"logged model {model_id!r} does not exist")
            values = fn(row)
            values["last_updated_timestamp"] = now_ms()
            conn.execute(
                logged_models.update().where(logged_models.c.model_id == model_id).values(**values)
            )
        return self.get_logged_model(model_id, allow_deleted=True)

    def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        if status not in (
            "READY",
            "FAILED",
            "PENDING",
            "LOGGED_MODEL_READY",
            "LOGGED_MODEL_UPLOAD_FAILED",
            "LOGGED_MODEL_PENDING",
        ):
            raise InvalidInput(f"logged model status {status!r} is not READY, FAILED or PENDING")
        status = status.replace("LOGGED_MODEL_", "").replace("UPLOAD_FAILED", "FAILED")
        return self._update_logged_model(model_id, lambda _r: {"status": status})

    def set_logged_model_tags(self, model_id: str, new_tags: dict[str, str]) -> LoggedModel:
        clean = {v.key("tag", k): v.tag_value(k, val) for k, val in new_tags.items()}
        return self._update_logged_model(
            model_id, lambda r: {"tags": json.dumps({**json.loads(r.tags), **clean})}
        )

    def delete_logged_model_tag(self, model_id: str, key: str) -> LoggedModel:
        def drop(r: Any) -> dict[str, Any]:
            t = json.loads(r.tags)
            if key not in t:
                raise NotFound(f"logged model {model_id} has no tag {key!r}")
            t.pop(key)
            return {"tags": json.dumps(t)}

        return self._update_logged_model(model_id, drop)

    def log_logged_model_params(self, model_id: str, new_params: dict[str, str]) -> LoggedModel:
        clean = {v.key("param", k): v.param_value(k, val) for k, val in new_params.items()}
        return self._update_logged_model(
            model_id, lambda r: {"params": json.dumps({**json.loads(r.params), **clean})}
        )

    def delete_logged_model(self, model_id: str) -> None:
        self._update_logged_model(model_id, lambda _r: {"lifecycle_stage": "deleted"})

    def search_logged_models(
        self,
        experiment_ids: Sequence[str | int],
        max_results: int | None = None,
        page_token: str | None = None,
        source_run_id: str | None = None,
        name: str | None = None,
    ) -> Page:
        eids = [v.experiment_id(e) for e in experiment_ids]
        limit = v.max_results(max_results, 100, MAX_SEARCH_RESULTS)
        offset = paging.decode(page_token)
        q = sa.select(logged_models).where(
            logged_models.c.experiment_id.in_(eids) & (logged_models.c.lifecycle_stage == "active")
        )
        if source_run_id:
            q = q.where(logged_models.c.source_run_id == source_run_id)
        if name:
            q = q.where(logged_models.c.name == name)
        q = (
            q.order_by(logged_models.c.creation_timestamp.desc(), logged_models.c.model_id)
            .offset(offset)
            .limit(limit + 1)
        )
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        token = paging.encode(offset + limit) if len(rows) > limit else None
        return Page([_logged_model(r) for r in rows[:limit]], token)


def _logged_model(row: Any) -> LoggedModel:
    return LoggedModel(
        row.model_id,
        str(row.experiment_id),
        row.name,
        row.artifact_location,
        int(row.creation_timestamp),
        int(row.last_updated_timestamp),
        row.model_type,
        row.source_run_id,
        row.status,
        row.status_message,
        row.lifecycle_stage,
        json.loads(row.tags),
        json.loads(row.params),
    )
