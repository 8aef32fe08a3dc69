"""Registry logic on the store: registered models, versions, tags and aliases.

An alias is one row (model, alias) → version, so moving it is one atomic update: a
reader sees the old version or the new one, never neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from opsloop.core import paging
from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, NotFound, OpsloopError
from opsloop.registry.entities import ModelVersion, RegisteredModel
from opsloop.store import Store
from opsloop.store.sql import upsert
from opsloop.store.tables import (
    logged_models,
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
)
from opsloop.tracking import validation as v
from opsloop.tracking.entities import Page

STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
_ALIAS_RE = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")
MAX_SEARCH = 10_000


def model_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"registered model name must be a non-empty string, got {name!r}")
    if len(name) > 250:
        raise InvalidInput(
            f"registered model name is {len(name)} characters long; the limit is 250"
        )
    bad = [c for c in ("/", ":", "%", "\x00", "\n", "\r") if c in name]
    if bad:
        raise InvalidInput(f"registered model name {name!r} may not contain {bad[0]!r}")
    return name


def alias_name(alias: Any) -> str:
    if not isinstance(alias, str) or not alias:
        raise InvalidInput(f"alias must be a non-empty string, got {alias!r}")
    if len(alias) > 255:
        raise InvalidInput(f"alias is {len(alias)} characters long; the limit is 255")
    if not _ALIAS_RE.match(alias):
        raise InvalidInput(f"alias {alias!r} may only contain letters, digits, '_' and '-'")
    if alias.lower() == "latest" or _VERSION_ALIAS_RE.match(alias):
        raise InvalidInput(f"alias {alias!r} is reserved: 'latest' and 'v<number>' name versions")
    return alias


def version_number(version: Any) -> int:
    try:
        n = int(str(version))
    except ValueError:
        raise InvalidInput(f"model version {version!r} is not an integer") from None
    if n < 1:
        raise InvalidInput(f"model version must be 1 or more, got {version!r}")
    return n


class RegistryService:
    """Registered models and their versions on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- registered models --------------------------------------------------------

    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(registered_models).where(registered_models.c.name == name)
        ).first()
        if row is None:
            raise NotFound(f"registered model {name!r} does not exist")
        return row

    def create_registered_model(
        self, name: str, tags: dict[str, str] | None = None, description: str | None = None
    ) -> RegisteredModel:
        name = model_name(name)
        clean = {v.key("tag", k): v.tag_value(k, val) for k, val in (tags or {}).items()}
        now = now_ms()
        try:
            with self.db.write() as conn:
                if conn.execute(
                    sa.select(registered_models.c.name).where(registered_models.c.name == name)
                ).first():
                    raise Conflict(f"registered model {name!r} already exists")
                conn.execute(
                    registered_models.insert().values(
                        name=name,
                        creation_time=now,
                        last_updated_time=now,
                        description=description or "",
                    )
                )
                for k, val in clean.items():
                    conn.execute(registered_model_tags.insert().values(name=name, key=k, value=val))
        except SAIntegrityError:
            raise Conflict(f"registered model {name!r} already exists") from None
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self.db.read() as conn:
            row = self._model_row(conn, name)
            return self._load_models(conn, [row])[0]

    def _load_models(self, conn: Connection, rows: Sequence[Any]) -> list[RegisteredModel]:
        names = [r.name for r in rows]
        if not names:
            return []
        tag_map: dict[str, dict[str, str]] = {n: {} for n in names}
        alias_map: dict[str, dict[str, str]] = {n: {} for n in names}
        for t in conn.execute(
            sa.select(registered_model_tags).where(registered_model_tags.c.name.in_(names))
        ):
            tag_map[t.name][t.key] = t.value
        for a in conn.execute(
            sa.select(registered_model_aliases).where(registered_model_aliases.c.name.in_(names))
        ):
            alias_map[a.name][a.alias] = str(a.version)
        latest_q = (
            sa.select(
                model_versions.c.name,
                model_versions.c.current_stage,
                sa.func.max(model_versions.c.version),
            )
            .where(model_versions.c.name.in_(names))
            .group_by(model_versions.c.name, model_versions.c.current_stage)
        )
        latest_keys = [(r[0], r[2]) for r in conn.execute(latest_q)]
        latest: dict[str, list[ModelVersion]] = {n: [] for n in names}
        if latest_keys:
            cond = sa.or_(
                *[
                    (model_versions.c.name == n) & (model_versions.c.version == ver)
                    for n, ver in latest_keys
                ]
            )
            for mv in self._load_versions(
                conn, conn.execute(sa.select(model_versions).where(cond)).all()
            ):
                latest[mv.name].append(mv)
        return [
            RegisteredModel(
                r.name,
                int(r.creation_time),
                int(r.last_updated_time),
                r.description,
                sorted(latest[r.name], key=lambda m: int(m.version)),
                tag_map[r.name],
                alias_map[r.name],
            )
            for r in rows
        ]

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        new_name = model_name(new_name)
        try:
            with self.db.write() as conn:
                self._model_row(conn, name)
                if (
                    new_name != name
                    and conn.execute(
                        sa.select(registered_models.c.name).where(
                            registered_models.c.name == new_name
                        )
                    ).first()
                ):
                    raise Conflict(f"registered model {new_name!r} already exists")
                # Foreign keys cascade the new name to versions, tags and aliases.
                conn.execute(
                    registered_models.update()
                    .where(registered_models.c.name == name)
                    .values(name=new_name, last_updated_time=now_ms())
                )
        except SAIntegrityError:
            raise Conflict(f"registered model {new_name!r} already exists") from None
        return self.get_registered_model(new_name)

    def update_registered_model(self, name: str, description: str | None) -> RegisteredModel:
        with self.db.write() as conn:
            self._model_row(conn, name)
            conn.execute(
                registered_models.update()
                .where(registered_models.c.name == name)
                .values(description=description or "", last_updated_time=now_ms())
            )
        return self.get_registered_model(name)

    def delete_registered_model(self, name: str) -> None:
        with self.db.write() as conn:
            self._model_row(conn, name)
            conn.execute(model_version_tags.delete().where(model_version_tags.c.name == name))
            conn.execute(
                registered_model_aliases.delete().where(registered_model_aliases.c.name == name)
            )
            conn.execute(model_versions.delete().where(model_versions.c.name == name))
            conn.execute(registered_model_tags.delete().where(registered_model_tags.c.name == name))
            conn.execute(registered_models.delete().where(registered_models.c.name == name))

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        from opsloop.tracking import search

        limit = v.max_results(max_results, 100, MAX_SEARCH)
        offset = paging.decode(page_token)
        q = sa.select(registered_models)
        clause = search.registered_model_filter(filter_string)
        if clause is not None:
            q = q.where(clause)
        q = q.order_by(*search.registered_model_order(order_by)).offset(offset).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            items = self._load_models(conn, rows[:limit])
        return Page(items, paging.encode(offset + limit) if len(rows) > limit else None)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        key = v.key("tag", key)
        value = v.tag_value(key, value)
        with self.db.write() as conn:
            self._model_row(conn, name)
            upsert(
                conn,
                registered_model_tags,
                {"name": name, "key": key, "value": value},
                ["name", "key"],
                ["value"],
            )

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        with self.db.write() as conn:
            self._model_row(conn, name)
            res = conn.execute(
                registered_model_tags.delete().where(
                    (registered_model_tags.c.name == name) & (registered_model_tags.c.key == key)
                )
            )
            if not res.rowcount:
                raise NotFound(f"registered model {name!r} has no tag {key!r}")

    # -- versions -------------------------------------------------------------------

    def _version_row(self, conn: Connection, name: str, version: str | int) -> Any:
        n = version_number(version)
        row = conn.execute(
            sa.select(model_versions).where(
                (model_versions.c.name == name) & (model_versions.c.version == n)
            )
        ).first()
        if row is None:
            self._model_row(conn, name)
            raise NotFound(f"registered model {name!r} has no version {version}")
        return row

    def _load_versions(self, conn: Connection, rows: Sequence[Any]) -> list[ModelVersion]:
        if not rows:
            return []
        keys = {(r.name, int(r.version)) for r in rows}
        names = sorted({k[0] for k in keys})
        tag_map: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        alias_map: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        for t in conn.execute(
            sa.select(model_version_tags).where(model_version_tags.c.name.in_(names))
        ):
            k = (t.name, int(t.version))
            if k in tag_map:
                tag_map[k][t.key] = t.value
        for a in conn.execute(
            sa.select(registered_model_aliases).where(registered_model_aliases.c.name.in_(names))
        ):
            k = (a.name, int(a.version))
            if k in alias_map:
                alias_map[k].append(a.alias)
        return [
            ModelVersion(
                r.name,
                str(r.version),
                int(r.creation_time),
                int(r.last_updated_time),
                r.description,
                r.user_id,
                r.current_stage,
                r.source,
                r.run_id,
                r.run_link,
                r.status,
                r.status_message,
                tag_map[(r.name, int(r.version))],
                sorted(alias_map[(r.name, int(r.version))]),
                r.model_id,
                r.flavor,
                r.signature,
                r.environment,
            )
            for r in rows
        ]

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        model_id: str | None = None,
        *,
        flavor: str | None = None,
        signature: str | None = None,
        environment: str | None = None,
        user_id: str = "",
    ) -> ModelVersion:
        """A new version of ``name`` from ``source`` (an artifact URI or ``models:/m-…``).

        Where flavor, signature or environment are not given, they are read from the
        MLmodel file at the source if the artifact store holds it (as it does for
        models logged by the stock ``mlflow`` client through ``opsloop server``).
        """
        if not isinstance(source, str) or not source:
            raise InvalidInput("a model version needs a source: the URI of its model artifacts")
        if run_id:
            v.run_id(run_id)
        clean = {v.key("tag", k): v.tag_value(k, val) for k, val in (tags or {}).items()}
        storage_location = source
        if model_id is None and source.startswith("models:/m-"):
            model_id = source[len("models:/") :].split("/")[0]
        if model_id:
            with self.db.read() as conn:
                lm = conn.execute(
                    sa.select(
                        logged_models.c.artifact_location, logged_models.c.source_run_id
                    ).where(logged_models.c.model_id == model_id)
                ).first()
            if lm is None:
                raise NotFound(f"logged model {model_id!r} does not exist")
            storage_location = lm.artifact_location
            run_id = run_id or lm.source_run_id
        if flavor is None or signature is None or environment is None:
            described = self._describe(storage_location)
            flavor = flavor or described.get("flavor")
            signature = signature or described.get("signature")
            environment = environment or described.get("environment")
        for attempt in range(5):
            now = now_ms()
            try:
                with self.db.write() as conn:
                    # Lock the model's row: versions of one model are numbered one at a time.
                    locked = conn.execute(
                        sa.select(registered_models.c.name)
                        .where(registered_models.c.name == name)
                        .with_for_update()
                    ).first()
                    if locked is None:
                        raise NotFound(f"registered model {name!r} does not exist")
                    top = conn.execute(
                        sa.select(sa.func.max(model_versions.c.version)).where(
                            model_versions.c.name == name
                        )
                    ).scalar()
                    version = int(top or 0) + 1
                    conn.execute(
                        model_versions.insert().values(
                            name=name,
                            version=version,
                            creation_time=now,
                            last_updated_time=now,
                            description=description or "",
                            user_id=user_id,
                            current_stage="None",
                            source=source,
                            run_id=run_id,
                            run_link=run_link,
                            model_id=model_id,
                            status="READY",
                            status_message=None,
                            storage_location=storage_location,
                            flavor=flavor,
                            signature=signature,
                            environment=environment,
                        )
                    )
                    for k, val in clean.items():
                        conn.execute(
                            model_version_tags.insert().values(
                                name=name, version=version, key=k, value=val
                            )
                        )
                    conn.execute(
                        registered_models.update()
                        .where(registered_models.c.name == name)
                        .values(last_updated_time=now)
                    )
                return self.get_model_version(name, version)
            except SAIntegrityError:
                if attempt == 4:
                    raise Conflict(
                        f"could not allocate a new version of {name!r}; try again"
                    ) from None
        raise AssertionError("unreachable")

    def _describe(self, location: str) -> dict[str, str]:
        """Flavor, signature and environment from the MLmodel file at ``location``, if stored."""
        from opsloop.tracking.service import artifact_path_of

        path = artifact_path_of(location)
        if path is None:
            return {}
        try:
            meta = yaml.safe_load(self.store.artifacts.get_bytes(f"{path}/MLmodel"))
        except (OpsloopError, yaml.YAMLError):
            return {}
        if not isinstance(meta, dict):
            return {}
        out: dict[str, str] = {}
        flavors = [f for f in (meta.get("flavors") or {}) if f != "python_function"]
        out["flavor"] = flavors[0] if flavors else "python_function"
        if meta.get("signature"):
            out["signature"] = json.dumps(meta["signature"])
        env: dict[str, Any] = {}
        pyfunc = (meta.get("flavors") or {}).get("python_function") or {}
        if pyfunc.get("python_version"):
            env["python_version"] = pyfunc["python_version"]
        try:
            reqs = self.store.artifacts.get_bytes(f"{path}/requirements.txt").decode()
            env["requirements"] = [
                line.strip()
                for line in reqs.splitlines()
                if line.strip() and not line.startswith("#")
            ]
        except OpsloopError:
            pass
        if env:
            out["environment"] = json.dumps(env)
        return out

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        with self.db.read() as conn:
            return self._load_versions(conn, [self._version_row(conn, name, version)])[0]

    def update_model_version(
        self, name: str, version: str | int, description: str | None
    ) -> ModelVersion:
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            conn.execute(
                model_versions.update()
                .where((model_versions.c.name == name) & (model_versions.c.version == row.version))
                .values(description=description or "", last_updated_time=now_ms())
            )
        return self.get_model_version(name, version)

    def delete_model_version(self, name: str, version: str | int) -> None:
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            n = row.version
            conn.execute(
                model_version_tags.delete().where(
                    (model_version_tags.c.name == name) & (model_version_tags.c.version == n)
                )
            )
            conn.execute(
                registered_model_aliases.delete().where(
                    (registered_model_aliases.c.name == name)
                    & (registered_model_aliases.c.version == n)
                )
            )
            conn.execute(
                model_versions.delete().where(
                    (model_versions.c.name == name) & (model_versions.c.version == n)
                )
            )

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        from opsloop.tracking import search

        limit = v.max_results(max_results, 10_000, 200_000)
        offset = paging.decode(page_token)
        q = sa.select(model_versions)
        clause = search.model_version_filter(filter_string)
        if clause is not None:
            q = q.where(clause)
        q = q.order_by(*search.model_version_order(order_by)).offset(offset).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            items = self._load_versions(conn, rows[:limit])
        return Page(items, paging.encode(offset + limit) if len(rows) > limit else None)

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        model = self.get_registered_model(name)
        if not stages:
            return model.latest_versions
        wanted = {self._stage(s) for s in stages}
        return [mv for mv in model.latest_versions if mv.current_stage in wanted]

    @staticmethod
    def _stage(stage: str) -> str:
        s = STAGES.get((stage or "").lower())
        if s is None:
            raise InvalidInput(f"stage {stage!r} is not one of None, Staging, Production, Archived")
        return s

    def transition_model_version_stage(
        self, name: str, version: str | int, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        new_stage = self._stage(stage)
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            now = now_ms()
            if archive_existing_versions and new_stage in ("Staging", "Production"):
                conn.execute(
                    model_versions.update()
                    .where(
                        (model_versions.c.name == name)
                        & (model_versions.c.version != row.version)
                        & (model_versions.c.current_stage == new_stage)
                    )
                    .values(current_stage="Archived", last_updated_time=now)
                )
            conn.execute(
                model_versions.update()
                .where((model_versions.c.name == name) & (model_versions.c.version == row.version))
                .values(current_stage=new_stage, last_updated_time=now)
            )
        return self.get_model_version(name, version)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: str) -> None:
        key = v.key("tag", key)
        value = v.tag_value(key, value)
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            upsert(
                conn,
                model_version_tags,
                {"name": name, "version": row.version, "key": key, "value": value},
                ["name", "version", "key"],
                ["value"],
            )

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            res = conn.execute(
                model_version_tags.delete().where(
                    (model_version_tags.c.name == name)
                    & (model_version_tags.c.version == row.version)
                    & (model_version_tags.c.key == key)
                )
            )
            if not res.rowcount:
                raise NotFound(f"version {version} of {name!r} has no tag {key!r}")

    # -- aliases --------------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` at ``version``; moving it from another version is one atomic step."""
        alias = alias_name(alias)
        with self.db.write() as conn:
            row = self._version_row(conn, name, version)
            upsert(
                conn,
                registered_model_aliases,
                {"name": name, "alias": alias, "version": row.version},
                ["name", "alias"],
                ["version"],
            )
            conn.execute(
                registered_models.update()
                .where(registered_models.c.name == name)
                .values(last_updated_time=now_ms())
            )

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        with self.db.write() as conn:
            self._model_row(conn, name)
            res = conn.execute(
                registered_model_aliases.delete().where(
                    (registered_model_aliases.c.name == name)
                    & (registered_model_aliases.c.alias == alias)
                )
            )
            if not res.rowcount:
                raise NotFound(f"registered model {name!r} has no alias {alias!r}")

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with self.db.read() as conn:
            self._model_row(conn, name)
            ver = conn.execute(
                sa.select(registered_model_aliases.c.version).where(
                    (registered_model_aliases.c.name == name)
                    & (registered_model_aliases.c.alias == alias)
                )
            ).scalar()
            if ver is None:
                raise NotFound(f"registered model {name!r} has no alias {alias!r}")
            return self._load_versions(conn, [self._version_row(conn, name, ver)])[0]

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        with self.db.read() as conn:
            row = self._version_row(conn, name, version)
        return str(row.storage_location or row.source)

    def resolve(self, uri: str) -> ModelVersion:
        """The version a ``models:/`` URI names: ``models:/name/3``, ``models:/name@alias``,
        ``models:/name/latest`` or ``models:/name/Production`` (latest in that stage)."""
        if not uri.startswith("models:/"):
            raise InvalidInput(
                f"{uri!r} is not a models:/ URI (models:/NAME@ALIAS or models:/NAME/VERSION)"
            )
        rest = uri[len("models:/") :].strip("/")
        if "@" in rest:
            name, _, alias = rest.partition("@")
            return self.get_model_version_by_alias(name, alias)
        name, _, ref = rest.partition("/")
        if not ref:
            raise InvalidInput(f"{uri!r} names no version: add /VERSION, /latest or @ALIAS")
        if ref.isdigit():
            return self.get_model_version(name, ref)
        if ref.lower() == "latest":
            versions = self.get_registered_model(name).latest_versions
            if not versions:
                raise NotFound(f"registered model {name!r} has no versions")
            return max(versions, key=lambda m: int(m.version))
        found = self.get_latest_versions(name, [ref])
        if not found:
            raise NotFound(f"registered model {name!r} has no version in stage {ref!r}")
        return found[0]
