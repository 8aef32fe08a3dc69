"""Deployments on the store: which model versions serve a name, in what shares, with
what settings, and every change to that as an event with who and why.

``DeploymentService(store)`` is what the faces and the inference server use. A
deployment either follows an alias (``models:/churn@production``: the stable version
is whatever the alias points at) or pins its stable version (``models:/churn/3``).
A canary takes a share of the traffic (0 < share < 100 percent); a shadow gets a copy
of every request and its answers are only logged.

Every change checks everything first and is written in one transaction with its event,
so bad input leaves no trace. Writers lock the deployment's row (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's write transactions are serialised already) and bump
its ``revision``, so two updates at once both apply, one after the other; a caller may
also ask for a change only at the revision it read (``expected_revision``).

Alias moves made in the registry (``opsloop models alias``) are noticed the next time
the deployment is read or resolved, and recorded then as an ``alias_moved`` event.
Promoting or rolling back a deployment that follows an alias moves the alias, in the
same transaction.

Example::

    svc = DeploymentService(store)
    svc.create("churn", "models:/churn@production", reason="first release")
    svc.update("churn", canary=4, canary_share=10, reason="try v4 on 10%")
    svc.promote("churn", reason="v4 is better")    # churn@production -> 4
    svc.rollback("churn", reason="v4 drifts")      # back to 3, the alias too
    svc.resolve("churn").served                    # [Target(version=3, share=100.0, ...)]
"""

from __future__ import annotations

import builtins
import getpass
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, InvalidState, NotFound
from opsloop.registry.service import alias_name, model_name, version_number
from opsloop.serving.entities import (
    ALIAS_MOVED,
    CANARY,
    CREATE,
    PROMOTE,
    ROLLBACK,
    SET_CANARY,
    SETTINGS,
    SHADOW,
    STABLE,
    UPDATE,
    Deployment,
    DeploymentEvent,
    Resolved,
    Target,
)
from opsloop.store import Store
from opsloop.store.events import event_row, record_event_in
from opsloop.store.sql import upsert
from opsloop.store.tables import (
    MAX_NAME_LENGTH,
    deployment_events,
    deployments,
    model_versions,
    registered_model_aliases,
    registered_models,
)

D = deployments
E = deployment_events
DEFAULT_CANARY_SHARE = 10.0
MAX_REASON = 4000
MAX_HISTORY = 10_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")
_FIELDS = ("stable_version", "canary_version", "canary_share", "shadow_version", "alias")


class _Unset:
    """The default of an update's fields: leave as it is (None means remove)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# -- checks ---------------------------------------------------------------------------


def deployment_name(name: object) -> str:
    """A deployment name: letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a deployment name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"deployment name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"deployment name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'churn-api')"
        )
    return name


def check_share(share: object) -> float:
    """A canary's share of the traffic, in percent: strictly between 0 and 100."""
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise InvalidInput(f"a canary share must be a number of percent, got {share!r}")
    value = float(share)
    if not math.isfinite(value) or not 0.0 < value < 100.0:
        raise InvalidInput(
            f"a canary share must be between 0 and 100 percent (both excluded), got {share!r}; "
            "to send it all traffic, promote the canary"
        )
    return value


def check_settings(settings: object, *, patch: bool = False) -> dict[str, Any]:
    """Serving settings (see ``opsloop.serving.entities.SETTINGS``). In a patch, a key set
    to None is removed."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise InvalidInput(f"settings must be a mapping of names to values, got {settings!r}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in SETTINGS:
            known = ", ".join(sorted(SETTINGS))
            raise InvalidInput(f"unknown serving setting {key!r}; the settings are: {known}")
        if value is None and patch:
            out[key] = None
            continue
        out[key] = _setting(key, value)
    return out


def _setting(key: str, value: Any) -> Any:
    meaning = SETTINGS[key][0]
    bad = InvalidInput(f"setting {key!r} must be {meaning}, got {value!r}")
    if key == "log_predictions":
        if not isinstance(value, bool):
            raise bad
        return value
    if key == "host":
        if not isinstance(value, str) or not _HOST_RE.match(value):
            raise bad
        return value
    if key == "port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if key in ("max_batch_size", "max_queue", "workers", "max_body_bytes"):
        if not isinstance(value, int) and not float(value).is_integer():
            raise bad
        if int(value) < 1:
            raise bad
        return int(value)
    f = float(value)
    if not math.isfinite(f):
        raise bad
    if key == "max_batch_wait_ms" and f < 0:
        raise bad
    if key == "log_sample_rate" and not 0.0 <= f <= 1.0:
        raise bad
    if key == "log_flush_interval_s" and f <= 0:
        raise bad
    if key == "fault_delay_ms" and not 0.0 <= f <= 60_000.0:
        raise bad
    return f


def _reason(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise InvalidInput(f"a reason must be text, got {reason!r}")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason is limited to {MAX_REASON} characters, got {len(reason)}")
    return reason


def current_user() -> str:
    """Who is acting: ``$OPSLOOP_USER``, else the operating system's user."""
    user = os.environ.get("OPSLOOP_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return f"uid:{os.getuid()}"


def _who(who: object) -> str:
    if who is None or who == "":
        return current_user()
    if not isinstance(who, str):
        raise InvalidInput(f"who must be text, got {who!r}")
    return who[:MAX_NAME_LENGTH]


def _optional_version(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a model version number, got {value!r}")
    try:
        return version_number(value)
    except InvalidInput:
        raise InvalidInput(
            f"{what} must be a model version number (1 or more), got {value!r}"
        ) from None


def parse_model(
    model: object, version: object = None
) -> tuple[str, str | None, int | None, str | None]:
    """``(model, alias, version, reference)`` from ``models:/NAME@ALIAS`` (follows the
    alias), ``models:/NAME/VERSION`` or ``NAME`` with ``version`` (pinned).

    ``models:/NAME/latest`` and ``models:/NAME/STAGE`` come back as ``reference``
    (``latest`` or the stage): the caller pins the version it names now.
    """
    hint = (
        "give models:/NAME@ALIAS (follows the alias), models:/NAME/VERSION, or NAME and a version"
    )
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput(f"a deployment needs a model: {hint}")
    pinned = _optional_version(version, "version")
    if not model.startswith("models:/"):
        if ":" in model:
            raise InvalidInput(f"{model!r} is not a models:/ URI or a model name: {hint}")
        name = model_name(model)
        if pinned is None:
            raise InvalidInput(
                f"deployment of model {name!r} needs a version: {hint} "
                f"(e.g. models:/{name}@production, or --version 3)"
            )
        return name, None, pinned, None
    rest = model[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if pinned is not None:
            raise InvalidInput(
                f"{model!r} follows an alias; a version ({pinned}) cannot be given with it"
            )
        return model_name(name), alias_name(alias), None, None
    name, _, ref = rest.partition("/")
    name = model_name(name)
    if not ref:
        raise InvalidInput(f"{model!r} names no version: {hint}")
    if ref.isdigit():
        n = version_number(ref)
        if pinned is not None and pinned != n:
            raise InvalidInput(f"{model!r} names version {n}, not {pinned}")
        return name, None, n, None
    if pinned is not None:
        raise InvalidInput(f"{model!r} names its version ({ref!r}); give no other version")
    return name, None, None, ref


# -- the service ----------------------------------------------------------------------


def _to_deployment(r: Any) -> Deployment:
    return Deployment(
        name=r.name,
        model=r.model,
        alias=r.alias,
        stable_version=int(r.stable_version),
        canary_version=None if r.canary_version is None else int(r.canary_version),
        canary_share=None if r.canary_share is None else float(r.canary_share),
        shadow_version=None if r.shadow_version is None else int(r.shadow_version),
        settings=json.loads(r.settings or "{}"),
        description=r.description,
        revision=int(r.revision),
        created_by=r.created_by,
        creation_time=int(r.creation_time),
        last_updated_time=int(r.last_updated_time),
    )


def _to_event(r: Any) -> DeploymentEvent:
    return DeploymentEvent(
        event_id=int(r.event_id),
        deployment=r.deployment,
        revision=int(r.revision),
        action=r.action,
        time=int(r.event_time),
        who=r.who,
        reason=r.reason,
        stable_version=int(r.stable_version),
        canary_version=None if r.canary_version is None else int(r.canary_version),
        canary_share=None if r.canary_share is None else float(r.canary_share),
        shadow_version=None if r.shadow_version is None else int(r.shadow_version),
        changes=json.loads(r.changes or "{}"),
    )


class DeploymentService:
    """Deployments on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- registry look-ups (inside the caller's transaction) ---------------------------

    @staticmethod
    def _check_model(conn: Connection, model: str) -> None:
        if (
            conn.execute(
                sa.select(registered_models.c.name).where(registered_models.c.name == model)
            ).first()
            is None
        ):
            raise NotFound(f"registered model {model!r} does not exist")

    @staticmethod
    def _check_version(conn: Connection, model: str, version: int, role: str) -> None:
        found = conn.execute(
            sa.select(model_versions.c.version).where(
                (model_versions.c.name == model) & (model_versions.c.version == version)
            )
        ).first()
        if found is None:
            raise NotFound(f"registered model {model!r} has no version {version} (the {role})")

    @staticmethod
    def _alias_version(conn: Connection, model: str, alias: str) -> int | None:
        ver = conn.execute(
            sa.select(registered_model_aliases.c.version).where(
                (registered_model_aliases.c.name == model)
                & (registered_model_aliases.c.alias == alias)
            )
        ).scalar()
        return None if ver is None else int(ver)

    @staticmethod
    def _move_alias(conn: Connection, model: str, alias: str, version: int, now: int) -> None:
        upsert(
            conn,
            registered_model_aliases,
            {"name": model, "alias": alias, "version": version},
            ["name", "alias"],
            ["version"],
        )
        conn.execute(
            registered_models.update()
            .where(registered_models.c.name == model)
            .values(last_updated_time=now)
        )

    def _pin_reference(self, conn: Connection, model: str, ref: str) -> int:
        """``latest`` or a stage name -> the version it names now."""
        if ref.lower() == "latest":
            top = conn.execute(
                sa.select(sa.func.max(model_versions.c.version)).where(
                    model_versions.c.name == model
                )
            ).scalar()
            if top is None:
                raise NotFound(f"registered model {model!r} has no versions")
            return int(top)
        from opsloop.registry.service import STAGES

        stage = STAGES.get(ref.lower())
        if stage is None:
            raise InvalidInput(
                f"models:/{model}/{ref} is not a version, 'latest' or a stage; "
                f"to follow an alias write models:/{model}@{ref}"
            )
        top = conn.execute(
            sa.select(sa.func.max(model_versions.c.version)).where(
                (model_versions.c.name == model) & (model_versions.c.current_stage == stage)
            )
        ).scalar()
        if top is None:
            raise NotFound(f"registered model {model!r} has no version in stage {stage!r}")
        return int(top)

    # -- rows and events ---------------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, name: str, *, lock: bool = False) -> Any:
        q = sa.select(D).where(D.c.name == name)
        if lock:
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"deployment {name!r} does not exist")
        return row

    @staticmethod
    def _state(row: Any) -> dict[str, Any]:
        return {
            "stable_version": int(row.stable_version),
            "canary_version": row.canary_version,
            "canary_share": row.canary_share,
            "shadow_version": row.shadow_version,
            "settings": json.loads(row.settings or "{}"),
            "description": row.description,
            "alias": row.alias,
        }

    @staticmethod
    def _event(
        conn: Connection,
        name: str,
        revision: int,
        action: str,
        now: int,
        who: str,
        reason: str,
        state: dict[str, Any],
        changes: dict[str, Any],
    ) -> None:
        conn.execute(
            E.insert().values(
                deployment=name,
                revision=revision,
                action=action,
                event_time=now,
                who=who,
                reason=reason,
                stable_version=state["stable_version"],
                canary_version=state["canary_version"],
                canary_share=state["canary_share"],
                shadow_version=state["shadow_version"],
                changes=json.dumps(changes, sort_keys=True),
            )
        )

    def _apply(
        self,
        conn: Connection,
        row: Any,
        new: dict[str, Any],
        action: str,
        who: str,
        reason: str,
        now: int,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """Write ``new`` state over ``row`` (revision + 1) with its event; the new row."""
        old = self._state(row)
        changes = {k: [old[k], new[k]] for k in old if old[k] != new[k]}
        changes.update(extra or {})
        revision = int(row.revision) + 1
        res = conn.execute(
            D.update()
            .where((D.c.name == row.name) & (D.c.revision == row.revision))
            .values(
                stable_version=new["stable_version"],
                canary_version=new["canary_version"],
                canary_share=new["canary_share"],
                shadow_version=new["shadow_version"],
                settings=json.dumps(new["settings"], sort_keys=True),
                description=new["description"],
                alias=new["alias"],
                revision=revision,
                last_updated_time=now,
            )
        )
        if res.rowcount != 1:  # the row lock makes this unreachable; a guard all the same
            raise Conflict(f"deployment {row.name!r} changed meanwhile; try again")
        self._event(conn, row.name, revision, action, now, who, reason, new, changes)
        return self._row(conn, row.name)

    def _sync_alias(self, conn: Connection, row: Any, now: int) -> Any:
        """Record a move of the followed alias made in the registry (an ``alias_moved``
        event); the row as it is now. A canary or shadow that the alias now points at
        is the stable version: it is dropped from its role."""
        if not row.alias:
            return row
        current = self._alias_version(conn, row.model, row.alias)
        if current is None or current == int(row.stable_version):
            return row
        new = self._state(row)
        new["stable_version"] = current
        if new["canary_version"] == current:
            new["canary_version"] = new["canary_share"] = None
        if new["shadow_version"] == current:
            new["shadow_version"] = None
        reason = (
            f"{row.model}@{row.alias} moved from version {row.stable_version} to {current} "
            "in the registry"
        )
        return self._apply(conn, row, new, ALIAS_MOVED, "registry", reason, now)

    def _fresh(self, name: str) -> Any:
        """The deployment's row, with an alias move recorded first if there was one."""
        with self.db.read() as conn:
            row = self._row(conn, name)
            if not row.alias:
                return row
            current = self._alias_version(conn, row.model, row.alias)
            if current is None or current == int(row.stable_version):
                return row
        with self.db.write() as conn:
            return self._sync_alias(conn, self._row(conn, name, lock=True), now_ms())

    def _validate(self, conn: Connection, model: str, state: dict[str, Any]) -> None:
        stable, canary, shadow = (
            state["stable_version"],
            state["canary_version"],
            state["shadow_version"],
        )
        self._check_version(conn, model, stable, "stable version")
        if canary is not None:
            if canary == stable:
                raise InvalidInput(
                    f"the canary must be another version than the stable one ({stable})"
                )
            self._check_version(conn, model, canary, "canary")
        if shadow is not None:
            if shadow == stable:
                raise InvalidInput(
                    f"the shadow must be another version than the stable one ({stable}): "
                    "it already answers every request"
                )
            if shadow == canary:
                raise InvalidInput(
                    f"the shadow must be another version than the canary ({canary}): "
                    "it already answers its share of the requests"
                )
            self._check_version(conn, model, shadow, "shadow")

    @staticmethod
    def _check_port(conn: Connection, name: str, settings: dict[str, Any]) -> None:
        """Two deployments the server starts cannot listen on one port."""
        port = settings.get("port")
        if port is None:
            return
        others = conn.execute(sa.select(D.c.name, D.c.settings).where(D.c.name != name))
        for other, raw in others:
            if json.loads(raw or "{}").get("port") == port:
                raise Conflict(
                    f"port {port} is deployment {other!r}'s already; choose another port "
                    f"(or unset it there: opsloop deploy update {other} --unset port)"
                )

    @staticmethod
    def _check_revision(row: Any, expected: int | None) -> None:
        if expected is not None and int(row.revision) != expected:
            raise Conflict(
                f"deployment {row.name!r} is at revision {row.revision}, not {expected}: "
                "it changed since you read it; read it again and retry"
            )

    # -- changes -----------------------------------------------------------------------

    def create(
        self,
        name: str,
        model: str,
        *,
        version: int | str | None = None,
        canary: int | str | None = None,
        canary_share: float | None = None,
        shadow: int | str | None = None,
        settings: Mapping[str, Any] | None = None,
        description: str = "",
        who: str | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """Deploy ``model`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, or a name
        and ``version``) as ``name``; optionally with a canary taking ``canary_share``
        percent of the traffic (10 unless given), a shadow and serving settings.

        Example::

            svc.create("churn", "models:/churn@production", canary=4, canary_share=5)
        """
        name = deployment_name(name)
        model_n, alias, pinned, ref = parse_model(model, version)
        canary_v = _optional_version(canary, "the canary")
        shadow_v = _optional_version(shadow, "the shadow")
        share: float | None = None
        if canary_v is not None:
            share = DEFAULT_CANARY_SHARE if canary_share is None else check_share(canary_share)
        elif canary_share is not None:
            raise InvalidInput("a canary share needs a canary version")
        clean_settings = check_settings(settings)
        if not isinstance(description, str):
            raise InvalidInput(f"a description must be text, got {description!r}")
        user, why = _who(who), _reason(reason)
        now = now_ms()
        try:
            with self.db.write() as conn:
                if conn.execute(sa.select(D.c.name).where(D.c.name == name)).first():
                    raise Conflict(f"deployment {name!r} already exists")
                self._check_model(conn, model_n)
                if ref is not None:
                    pinned = self._pin_reference(conn, model_n, ref)
                if alias is not None:
                    stable = self._alias_version(conn, model_n, alias)
                    if stable is None:
                        raise NotFound(f"registered model {model_n!r} has no alias {alias!r}")
                else:
                    assert pinned is not None
                    stable = pinned
                state = {
                    "stable_version": stable,
                    "canary_version": canary_v,
                    "canary_share": share,
                    "shadow_version": shadow_v,
                    "settings": clean_settings,
                    "description": description,
                    "alias": alias,
                }
                self._validate(conn, model_n, state)
                self._check_port(conn, name, clean_settings)
                conn.execute(
                    D.insert().values(
                        name=name,
                        model=model_n,
                        alias=alias,
                        stable_version=stable,
                        canary_version=canary_v,
                        canary_share=share,
                        shadow_version=shadow_v,
                        settings=json.dumps(clean_settings, sort_keys=True),
                        description=description,
                        revision=1,
                        created_by=user,
                        creation_time=now,
                        last_updated_time=now,
                    )
                )
                uri = f"models:/{model_n}@{alias}" if alias else f"models:/{model_n}/{stable}"
                self._event(conn, name, 1, CREATE, now, user, why, state, {"model": uri})
        except SAIntegrityError:
            raise Conflict(f"deployment {name!r} already exists") from None
        return self.get(name)

    def update(
        self,
        name: str,
        *,
        version: int | str | _Unset = UNSET,
        canary: int | str | _Unset | None = UNSET,
        canary_share: float | _Unset = UNSET,
        shadow: int | str | _Unset | None = UNSET,
        settings: Mapping[str, Any] | None = None,
        description: str | _Unset = UNSET,
        who: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Deployment:
        """Change what a deployment serves. Fields left out stay as they are;
        ``canary=None`` and ``shadow=None`` remove them; ``settings`` is merged (a key
        set to None is removed). ``version`` changes a pinned stable version (one that
        follows an alias moves with the alias, or by ``promote``).

        Example::

            svc.update("churn", canary=4, canary_share=10, reason="v4 on 10%")
            svc.update("churn", canary_share=50, settings={"max_batch_size": 64})
            svc.update("churn", canary=None, reason="v4 is worse")
        """
        given = {
            k
            for k, val in (
                ("version", version),
                ("canary", canary),
                ("canary_share", canary_share),
                ("shadow", shadow),
                ("description", description),
            )
            if not isinstance(val, _Unset)
        }
        if settings is not None:
            given.add("settings")
        if not given:
            raise InvalidInput(
                "nothing to update: give a version, a canary (and share), a shadow, "
                "settings or a description"
            )
        new_version = None if isinstance(version, _Unset) else _optional_version(version, "version")
        if "version" in given and new_version is None:
            raise InvalidInput("the stable version cannot be removed; give a version number")
        canary_v = None if isinstance(canary, _Unset) else _optional_version(canary, "the canary")
        share: float | None = None
        if not isinstance(canary_share, _Unset):
            if canary_share is None:
                raise InvalidInput("to remove the canary, set the canary to none")
            share = check_share(canary_share)
            if "canary" in given and canary_v is None:
                raise InvalidInput("a canary share was given with no canary (it is being removed)")
        shadow_v = None if isinstance(shadow, _Unset) else _optional_version(shadow, "the shadow")
        patch = check_settings(settings, patch=True)
        if not isinstance(description, _Unset | str):
            raise InvalidInput(f"a description must be text, got {description!r}")
        user, why = _who(who), _reason(reason)
        with self.db.write() as conn:
            now = now_ms()
            row = self._row(conn, name, lock=True)
            self._check_revision(row, expected_revision)
            row = self._sync_alias(conn, row, now)
            new = self._state(row)
            if new_version is not None:
                if row.alias:
                    raise InvalidInput(
                        f"deployment {name!r} follows {row.model}@{row.alias}: its stable "
                        f"version moves with the alias (opsloop models alias {row.model} "
                        f"{row.alias} {new_version}), or set a canary and promote it"
                    )
                new["stable_version"] = new_version
            if "canary" in given:
                new["canary_version"] = canary_v
                if canary_v is None:
                    new["canary_share"] = None
                else:
                    new["canary_share"] = (
                        share
                        if share is not None
                        else (new["canary_share"] or DEFAULT_CANARY_SHARE)
                    )
            elif share is not None:
                if new["canary_version"] is None:
                    raise InvalidInput(
                        f"deployment {name!r} has no canary to give a share to; "
                        "give a canary version with the share"
                    )
                new["canary_share"] = share
            if "shadow" in given:
                new["shadow_version"] = shadow_v
            if patch:
                merged = dict(new["settings"])
                for key, value in patch.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                new["settings"] = merged
            if not isinstance(description, _Unset):
                new["description"] = description
            self._validate(conn, row.model, new)
            self._check_port(conn, name, new["settings"])
            old = self._state(row)
            changed = {k for k in old if old[k] != new[k]}
            if not changed:
                return _to_deployment(row)
            action = SET_CANARY if changed <= {"canary_version", "canary_share"} else UPDATE
            row = self._apply(conn, row, new, action, user, why, now)
            return _to_deployment(row)

    def promote(
        self,
        name: str,
        *,
        who: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Deployment:
        """The canary becomes the stable version, at 100% of the traffic. A deployment that
        follows an alias moves the alias to it, in the same transaction.

        Example::

            svc.promote("churn", reason="v4: +2% AUC over a week at 10%")
        """
        user, why = _who(who), _reason(reason)
        with self.db.write() as conn:
            now = now_ms()
            row = self._row(conn, name, lock=True)
            self._check_revision(row, expected_revision)
            row = self._sync_alias(conn, row, now)
            if row.canary_version is None:
                raise InvalidState(
                    f"deployment {name!r} has no canary to promote; set one first "
                    f"(opsloop deploy update {name} --canary VERSION --share PERCENT)"
                )
            target = int(row.canary_version)
            self._check_version(conn, row.model, target, "canary")
            new = self._state(row)
            new.update(stable_version=target, canary_version=None, canary_share=None)
            if new["shadow_version"] == target:
                new["shadow_version"] = None
            extra: dict[str, Any] = {}
            if row.alias:
                self._move_alias(conn, row.model, row.alias, target, now)
                extra["alias_moved"] = [f"{row.model}@{row.alias}", row.stable_version, target]
            return _to_deployment(self._apply(conn, row, new, PROMOTE, user, why, now, extra))

    def rollback(
        self,
        name: str,
        *,
        who: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Deployment:
        """Back to the previous stable version in one step, with no canary; a deployment
        that follows an alias moves the alias back. Rolling back again goes further back.
        Refused when the deployment has served no other stable version.

        Example::

            svc.rollback("churn", reason="v4's error rate doubled")
        """
        user, why = _who(who), _reason(reason)
        with self.db.write() as conn:
            now = now_ms()
            row = self._row(conn, name, lock=True)
            self._check_revision(row, expected_revision)
            row = self._sync_alias(conn, row, now)
            stack = _stable_stack(
                conn.execute(
                    sa.select(E.c.action, E.c.stable_version)
                    .where(E.c.deployment == name)
                    .order_by(E.c.event_id)
                ).all()
            )
            if len(stack) < 2:
                raise InvalidState(
                    f"deployment {name!r} has no previous stable version to roll back to: "
                    f"it has only served version {row.stable_version} as stable"
                )
            target = stack[-2]
            try:
                self._check_version(conn, row.model, target, "previous stable version")
            except NotFound as exc:
                raise NotFound(f"cannot roll back {name!r}: {exc.message}") from None
            new = self._state(row)
            new.update(stable_version=target, canary_version=None, canary_share=None)
            if new["shadow_version"] == target:
                new["shadow_version"] = None
            extra: dict[str, Any] = {}
            if row.alias:
                self._move_alias(conn, row.model, row.alias, target, now)
                extra["alias_moved"] = [f"{row.model}@{row.alias}", row.stable_version, target]
            return _to_deployment(self._apply(conn, row, new, ROLLBACK, user, why, now, extra))

    def delete(self, name: str, *, who: str | None = None, reason: str | None = None) -> None:
        """Delete a deployment and its change history (an inference server that
        ``opsloop server`` runs for it stops). Its prediction log stays readable. The
        deletion, with who and why, is recorded as a ``deployment.deleted`` event
        (``GET /api/v1/events``), since the history goes with the deployment.

        Example::

            svc.delete("churn", reason="replaced by churn-v2")
        """
        user, why = _who(who), _reason(reason)
        with self.db.write() as conn:
            row = self._row(conn, name, lock=True)
            d = _to_deployment(row)
            conn.execute(E.delete().where(E.c.deployment == name))
            conn.execute(D.delete().where(D.c.name == name))
            record_event_in(
                conn,
                event_row(
                    "deployment.deleted",
                    f"deployment {name!r} ({d.model_uri}, revision {d.revision}) deleted by "
                    f"{user}" + (f": {why}" if why else ""),
                    source="serving",
                    subject=name,
                    severity="info",
                    payload={
                        "who": user,
                        "reason": why,
                        "model_uri": d.model_uri,
                        "revision": d.revision,
                        "traffic": {str(v): s for v, s in d.traffic.items()},
                        "shadow_version": d.shadow_version,
                        "settings": d.settings,
                    },
                ),
            )

    # -- reading -----------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        """A deployment as it is now (an alias moved in the registry is recorded first)."""
        return _to_deployment(self._fresh(name))

    def list(self) -> list[Deployment]:
        """Every deployment, by name."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(D).order_by(D.c.name)).all()
        out = []
        for r in rows:
            try:
                out.append(_to_deployment(self._fresh(r.name) if r.alias else r))
            except NotFound:  # deleted meanwhile
                continue
        return out

    def history(self, name: str, limit: int | None = None) -> builtins.list[DeploymentEvent]:
        """A deployment's changes, newest first.

        Example::

            [(e.action, e.who, e.reason) for e in svc.history("churn")]
        """
        if limit is not None and (isinstance(limit, bool) or limit < 1 or limit > MAX_HISTORY):
            raise InvalidInput(f"limit must be between 1 and {MAX_HISTORY}, got {limit!r}")
        self._fresh(name)
        q = sa.select(E).where(E.c.deployment == name).order_by(E.c.event_id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.db.read() as conn:
            return [_to_event(r) for r in conn.execute(q)]

    def resolve(self, name: str) -> Resolved:
        """The concrete versions and shares the server should load now (following the
        alias). Cheap when nothing changed: one or two reads.

        Example::

            r = svc.resolve("churn")
            r.revision, [(t.version, t.share) for t in r.served], r.shadow
        """
        row = self._fresh(name)
        warning = None
        if row.alias:
            with self.db.read() as conn:
                if self._alias_version(conn, row.model, row.alias) is None:
                    warning = (
                        f"alias {row.model}@{row.alias} no longer exists; "
                        f"serving the last version it named ({row.stable_version})"
                    )
        d = _to_deployment(row)

        def target(version: int, share: float, role: str) -> Target:
            return Target(version, share, role, f"models:/{d.model}/{version}")

        share = d.canary_share if d.canary_version is not None else None
        return Resolved(
            deployment=d.name,
            model=d.model,
            revision=d.revision,
            stable=target(d.stable_version, 100.0 - (share or 0.0), STABLE),
            canary=(
                target(d.canary_version, share, CANARY)
                if d.canary_version is not None and share is not None
                else None
            ),
            shadow=(
                target(d.shadow_version, 0.0, SHADOW) if d.shadow_version is not None else None
            ),
            settings={k: d.settings.get(k, default) for k, (_, default) in SETTINGS.items()},
            warning=warning,
        )

    def exists(self, name: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(sa.select(D.c.name).where(D.c.name == name)).first() is not None


def _stable_stack(events: Any) -> list[int]:
    """The stable versions a deployment has served, oldest first, with rolled-back ones
    taken off: its last but one is where a rollback goes."""
    stack: list[int] = []
    for action, stable in events:
        stable = int(stable)
        if action == ROLLBACK:
            if stack:
                stack.pop()
            if not stack or stack[-1] != stable:
                stack.append(stable)
        elif not stack or stack[-1] != stable:
            stack.append(stable)
    return stack
