"""``/api/v1/deployments``: deployments (traffic split, canary, shadow, settings), their
history, what to serve now, and the prediction log (labels in, predictions out).

Each endpoint is one service call. Who acts is the ``X-Opsloop-User`` header, else
``anonymous@<client address>``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from opsloop.errors import InvalidInput
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import Body, Out, Page
from opsloop.serving.deployments import UNSET, DeploymentService
from opsloop.serving.entities import Deployment as DeploymentRecord
from opsloop.serving.entities import DeploymentEvent as EventRecord
from opsloop.serving.entities import Resolved as ResolvedRecord
from opsloop.serving.entities import Target as TargetRecord
from opsloop.serving.predictions import PredictionLog

router = APIRouter(prefix="/deployments", tags=["deployments"])

USER_HEADER = "X-Opsloop-User"
MAX_ROWS = 100_000
User = Annotated[
    str | None,
    Header(alias=USER_HEADER, description="Who makes the change (recorded in the history)."),
]
Label = StrictInt | StrictFloat | StrictStr | StrictBool


def _who(request: Request, user: str | None) -> str:
    if user:
        return user
    host = request.client.host if request.client else "unknown"
    return f"anonymous@{host}"


class Split(Out):
    version: int
    share: float = Field(description="Percent of the traffic.")


class Deployment(Out):
    name: str
    model: str
    model_uri: str = Field(examples=["models:/churn@production"])
    alias: str | None = Field(description="The alias the stable version follows, if any.")
    stable_version: int
    canary_version: int | None
    canary_share: float | None
    shadow_version: int | None
    traffic: list[Split]
    settings: dict[str, Any]
    description: str
    revision: int = Field(description="Changes with every change; give as expected_revision.")
    created_by: str
    creation_time: int
    last_updated_time: int

    @classmethod
    def of(cls, d: DeploymentRecord) -> Deployment:
        return cls(
            name=d.name,
            model=d.model,
            model_uri=d.model_uri,
            alias=d.alias,
            stable_version=d.stable_version,
            canary_version=d.canary_version,
            canary_share=d.canary_share,
            shadow_version=d.shadow_version,
            traffic=[Split(version=v, share=s) for v, s in d.traffic.items()],
            settings=d.settings,
            description=d.description,
            revision=d.revision,
            created_by=d.created_by,
            creation_time=d.creation_time,
            last_updated_time=d.last_updated_time,
        )


class Event(Out):
    event_id: int
    revision: int
    action: str = Field(description="create, update, set_canary, promote, rollback or alias_moved.")
    time: int
    who: str
    reason: str
    stable_version: int
    canary_version: int | None
    canary_share: float | None
    shadow_version: int | None
    changes: dict[str, Any] = Field(description="Each changed field: [before, after].")

    @classmethod
    def of(cls, e: EventRecord) -> Event:
        return cls(
            event_id=e.event_id,
            revision=e.revision,
            action=e.action,
            time=e.time,
            who=e.who,
            reason=e.reason,
            stable_version=e.stable_version,
            canary_version=e.canary_version,
            canary_share=e.canary_share,
            shadow_version=e.shadow_version,
            changes=e.changes,
        )


class Target(Out):
    version: int
    share: float
    role: str = Field(description="stable, canary or shadow.")
    uri: str

    @classmethod
    def of(cls, t: TargetRecord) -> Target:
        return cls(version=t.version, share=t.share, role=t.role, uri=t.uri)


class Resolved(Out):
    deployment: str
    model: str
    revision: int
    served: list[Target]
    shadow: Target | None
    settings: dict[str, Any] = Field(description="Every setting, defaults filled in.")
    warning: str | None

    @classmethod
    def of(cls, r: ResolvedRecord) -> Resolved:
        return cls(
            deployment=r.deployment,
            model=r.model,
            revision=r.revision,
            served=[Target.of(t) for t in r.served],
            shadow=Target.of(r.shadow) if r.shadow else None,
            settings=r.settings,
            warning=r.warning,
        )


class DeploymentCreate(Body):
    name: str = Field(examples=["churn-api"])
    model: str = Field(
        description="models:/NAME@ALIAS (follows the alias), models:/NAME/VERSION, or NAME "
        "with version.",
        examples=["models:/churn@production"],
    )
    version: int | None = None
    canary: int | None = None
    canary_share: float | None = Field(None, description="Percent, 0 < share < 100 (10).")
    shadow: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    reason: str | None = None


class DeploymentUpdate(Body):
    """Fields left out stay as they are; ``canary``/``shadow`` null removes them;
    ``settings`` is merged (a null value removes that setting)."""

    version: int | None = None
    canary: int | None = None
    canary_share: float | None = None
    shadow: int | None = None
    settings: dict[str, Any] | None = None
    description: str | None = None
    reason: str | None = None
    expected_revision: int | None = Field(
        None, description="Refuse (409) if the deployment is at another revision."
    )


class Change(Body):
    reason: str | None = None
    expected_revision: int | None = None


class Labels(Body):
    request_ids: list[StrictStr] = Field(min_length=1, max_length=MAX_ROWS)
    labels: list[Label] = Field(min_length=1, max_length=MAX_ROWS)
    rows: list[int | None] | None = Field(
        None, description="For requests of several rows: the row each label is for."
    )


class LabelsStored(Out):
    stored: int


class Predictions(Out):
    items: list[dict[str, Any]] = Field(
        description="request_id, timestamp (ISO 8601, UTC), version, latency_ms, the "
        "inputs, the outputs, and label with with_labels."
    )
    count: int
    truncated: bool = Field(description="True when limit cut the window short.")


def _svc(svc: Svc) -> DeploymentService:
    return DeploymentService(svc.store)


@router.get("")
def list_deployments(svc: Svc) -> Page[Deployment]:
    """Every deployment, by name."""
    return Page[Deployment](items=[Deployment.of(d) for d in _svc(svc).list()])


@router.post("", status_code=201)
def create_deployment(
    svc: Svc, body: DeploymentCreate, request: Request, user: User = None
) -> Deployment:
    """Deploy a registered model version, or follow an alias."""
    return Deployment.of(
        _svc(svc).create(
            body.name,
            body.model,
            version=body.version,
            canary=body.canary,
            canary_share=body.canary_share,
            shadow=body.shadow,
            settings=body.settings,
            description=body.description,
            who=_who(request, user),
            reason=body.reason,
        )
    )


@router.get("/{name}")
def get_deployment(svc: Svc, name: str) -> Deployment:
    return Deployment.of(_svc(svc).get(name))


@router.delete("/{name}", status_code=204)
def delete_deployment(
    svc: Svc,
    name: str,
    request: Request,
    reason: Annotated[str | None, Query(description="Why (recorded in the event).")] = None,
    user: User = None,
) -> None:
    """Delete a deployment and its history; the server ``opsloop server`` runs for it
    stops; its prediction log stays. Recorded as a ``deployment.deleted`` event."""
    _svc(svc).delete(name, who=_who(request, user), reason=reason)


class ServerState(Out):
    """The inference server ``opsloop server`` runs for a deployment with a ``port``."""

    managed: bool = Field(description="True when the deployment has a port setting.")
    status: str = Field(
        description="starting, running, backoff (it exited; restarted at next_start_time), "
        "or stopped (no supervisor runs it: opsloop server is not running, or has not "
        "noticed it yet)."
    )
    pid: int | None = None
    host: str | None = None
    port: int | None = None
    workers: int | None = None
    url: str | None = None
    restarts: int = 0
    started_time: int | None = None
    last_exit_code: int | None = None
    last_exit_time: int | None = None
    next_start_time: int | None = None
    log: str | None = None


@router.get("/{name}/server")
def server(svc: Svc, name: str) -> ServerState:
    """The state of the inference server ``opsloop server`` runs for the deployment."""
    from opsloop.serving.supervisor import server_state

    d = _svc(svc).get(name)
    port = d.settings.get("port")
    state = server_state(svc.store, name)
    if port is None:
        return ServerState(managed=False, status="stopped")
    if state is None:
        return ServerState(managed=True, status="stopped", port=port, host=d.settings.get("host"))
    return ServerState(managed=True, **state)


@router.patch("/{name}")
def update_deployment(
    svc: Svc, name: str, body: DeploymentUpdate, request: Request, user: User = None
) -> Deployment:
    """Change the canary and its share, the shadow, settings, a pinned stable version."""
    given = body.model_fields_set
    kwargs: dict[str, Any] = {}
    for field in ("version", "canary", "canary_share", "shadow", "description"):
        kwargs[field] = getattr(body, field) if field in given else UNSET
    if "settings" in given and body.settings is None:
        raise InvalidInput("settings must be an object; to remove a setting, set it to null")
    return Deployment.of(
        _svc(svc).update(
            name,
            settings=body.settings,
            who=_who(request, user),
            reason=body.reason,
            expected_revision=body.expected_revision,
            **kwargs,
        )
    )


@router.post("/{name}/promote")
def promote(
    svc: Svc, name: str, request: Request, body: Change | None = None, user: User = None
) -> Deployment:
    """The canary becomes the stable version at 100% (a followed alias moves to it)."""
    body = body or Change()
    return Deployment.of(
        _svc(svc).promote(
            name,
            who=_who(request, user),
            reason=body.reason,
            expected_revision=body.expected_revision,
        )
    )


@router.post("/{name}/rollback")
def rollback(
    svc: Svc, name: str, request: Request, body: Change | None = None, user: User = None
) -> Deployment:
    """Back to the previous stable version in one step (a followed alias moves back)."""
    body = body or Change()
    return Deployment.of(
        _svc(svc).rollback(
            name,
            who=_who(request, user),
            reason=body.reason,
            expected_revision=body.expected_revision,
        )
    )


@router.get("/{name}/history")
def history(
    svc: Svc, name: str, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Page[Event]:
    """A deployment's changes, newest first."""
    return Page[Event](items=[Event.of(e) for e in _svc(svc).history(name, limit)])


@router.get("/{name}/resolve")
def resolve(svc: Svc, name: str) -> Resolved:
    """The versions and shares to serve now (following the alias), and the settings."""
    return Resolved.of(_svc(svc).resolve(name))


@router.post("/{name}/labels", status_code=201)
def log_labels(svc: Svc, name: str, body: Labels) -> LabelsStored:
    """Ground truth for logged requests, joined to their predictions when read (the
    latest label of a request wins)."""
    n = len(body.request_ids)
    if len(body.labels) != n or (body.rows is not None and len(body.rows) != n):
        raise InvalidInput(
            f"request_ids, labels (and rows) must have one length: got {n} request ids, "
            f"{len(body.labels)} labels"
            + (f", {len(body.rows)} rows" if body.rows is not None else "")
        )
    data: dict[str, list[Any]] = {"request_id": body.request_ids, "label": body.labels}
    if body.rows is not None:
        data["row"] = body.rows
    return LabelsStored(stored=PredictionLog(svc.store).log_labels(name, data))


@router.get("/{name}/predictions")
def predictions(
    svc: Svc,
    name: str,
    since: Annotated[
        str | None, Query(description="ISO 8601, or seconds (or ms) since the epoch.")
    ] = None,
    until: Annotated[str | None, Query(description="Exclusive; as since.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
    version: int | None = None,
    with_labels: bool = False,
    shadow: Annotated[bool, Query(description="false: served answers; true: shadow ones.")] = False,
) -> Predictions:
    """Logged predictions in [since, until), oldest first, as JSON rows."""
    df = PredictionLog(svc.store).read(
        name, since, until, version, with_labels, shadow=shadow, limit=limit + 1
    )
    truncated = len(df) > limit
    df = df.head(limit)
    rows: list[dict[str, Any]] = json.loads(
        df.to_json(orient="records", date_format="iso", date_unit="us")
    )
    return Predictions(items=rows, count=len(rows), truncated=truncated)
