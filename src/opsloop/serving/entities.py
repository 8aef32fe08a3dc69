"""What a deployment, its change events and its resolved traffic split are, as the
faces and the inference server see them. Plain frozen dataclasses."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

# Event actions, in a deployment's history.
CREATE = "create"
UPDATE = "update"
SET_CANARY = "set_canary"
PROMOTE = "promote"
ROLLBACK = "rollback"
ALIAS_MOVED = "alias_moved"
ACTIONS = (CREATE, UPDATE, SET_CANARY, PROMOTE, ROLLBACK, ALIAS_MOVED)

# Roles of a version in a deployment.
STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"

# Serving settings a deployment may carry: name -> (meaning, default). The inference
# server reads them; ``opsloop.serving.deployments.check_settings`` checks their values.
SETTINGS: dict[str, tuple[str, Any]] = {
    "max_batch_size": ("largest batch given to one predict call (integer >= 1)", 64),
    "max_batch_wait_ms": ("longest a request waits for its batch to fill (ms, >= 0)", 2.0),
    "max_queue": ("requests waiting at most; past it 503 + Retry-After (integer >= 1)", 1024),
    "workers": ("inference server worker processes (integer >= 1)", 1),
    "max_body_bytes": ("largest request body (bytes, integer >= 1)", 100 * 1024 * 1024),
    "log_predictions": ("write the prediction log (true/false)", True),
    "log_sample_rate": ("share of requests logged, by request id (0..1)", 1.0),
    "log_flush_interval_s": ("prediction log flush interval (seconds, > 0)", 2.0),
    # A drill: latency added to every predict call, to see the monitors and detectors
    # catch a slow model (``opsloop demo`` uses it); unset it to end the drill.
    "fault_delay_ms": ("latency added to every predict call (ms, 0..60000; 0: none)", 0.0),
    # Set: ``opsloop server`` runs ``opsloop serve DEPLOYMENT`` on this port for it (one
    # per store; see ``opsloop.serving.supervisor``). Unset: nothing serves it unless
    # someone runs ``opsloop serve`` by hand.
    "port": (
        "port of the inference server `opsloop server` starts for it (integer 1..65535; "
        "unset: the server starts none)",
        None,
    ),
    "host": ("address that inference server listens on (an IP address or host name)", None),
}


@dataclass(frozen=True)
class Deployment:
    """A named deployment of a registered model.

    Example::

        d = opsloop.serving.get_deployment("churn")
        d.model_uri, d.stable_version, d.traffic     # "models:/churn@production", 3, {3: 90.0, 4: 10.0}
    """

    name: str
    model: str
    alias: str | None
    stable_version: int
    canary_version: int | None
    canary_share: float | None
    shadow_version: int | None
    settings: dict[str, Any]
    description: str
    revision: int
    created_by: str
    creation_time: int
    last_updated_time: int

    @property
    def model_uri(self) -> str:
        """``models:/NAME@ALIAS`` when it follows an alias, else ``models:/NAME/VERSION``."""
        if self.alias:
            return f"models:/{self.model}@{self.alias}"
        return f"models:/{self.model}/{self.stable_version}"

    @property
    def traffic(self) -> dict[int, float]:
        """Version -> percent of the traffic it serves (the shadow serves none)."""
        if self.canary_version is None or self.canary_share is None:
            return {self.stable_version: 100.0}
        return {
            self.stable_version: 100.0 - self.canary_share,
            self.canary_version: self.canary_share,
        }


@dataclass(frozen=True)
class DeploymentEvent:
    """One change of a deployment: what, when (ms), who, why, and the state after it."""

    event_id: int
    deployment: str
    revision: int
    action: str
    time: int
    who: str
    reason: str
    stable_version: int
    canary_version: int | None
    canary_share: float | None
    shadow_version: int | None
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A concrete model version the server loads, with its role and share (percent)."""

    version: int
    share: float
    role: str
    uri: str


@dataclass(frozen=True)
class Resolved:
    """What the inference server should load now for a deployment.

    ``served`` are the versions answering requests, with shares summing to 100;
    ``shadow`` gets a copy of every request. ``revision`` changes with every change of
    the deployment (an alias move included), so a server polling ``resolve`` reloads
    only when it differs. ``warning`` says why the split may be stale (e.g. the alias
    it follows was deleted: the last version seen keeps serving).

    Example::

        r = DeploymentService(store).resolve("churn")
        [(t.version, t.share) for t in r.served]        # [(3, 90.0), (4, 10.0)]
    """

    deployment: str
    model: str
    revision: int
    stable: Target
    canary: Target | None
    shadow: Target | None
    settings: dict[str, Any]
    warning: str | None = None

    @property
    def served(self) -> list[Target]:
        return [self.stable] if self.canary is None else [self.stable, self.canary]

    def route(self, request_id: str) -> Target:
        """The served version that answers ``request_id``: the canary for its share of
        ids, decided by a hash of the id (so a retried request meets the same version,
        in every server process), independent of the prediction log's sampling hash.

        Example::

            r.route("req-1").version        # 4 for ~10% of ids at a 10% canary, else 3
        """
        if self.canary is None:
            return self.stable
        point = zlib.crc32(b"route:" + request_id.encode()) / 4294967296.0 * 100.0
        return self.canary if point < self.canary.share else self.stable

    @property
    def versions(self) -> list[int]:
        """Every version to load: served ones, then the shadow."""
        out = [t.version for t in self.served]
        if self.shadow is not None:
            out.append(self.shadow.version)
        return out
