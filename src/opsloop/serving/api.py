"""The Python API of deployments and the prediction log, on the process's default store
(``$OPSLOOP_HOME`` or ``OPSLOOP_DATABASE_URL``/``OPSLOOP_ARTIFACTS``).

Example::

    from opsloop import serving

    serving.deploy("churn", "models:/churn@production", reason="first release")
    serving.update_deployment("churn", canary=4, canary_share=10, reason="v4 on 10%")
    serving.promote("churn", reason="v4 is better")
    serving.rollback("churn", reason="v4 drifts")
    serving.deployment_history("churn")[0].action          # "rollback"

    df = serving.predictions("churn", since=timedelta(hours=1), with_labels=True)
    serving.log_labels("churn", pd.DataFrame({"request_id": ids, "label": truth}))

``who`` defaults to ``$OPSLOOP_USER`` or the operating system's user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsloop.serving.deployments import UNSET, DeploymentService, _Unset
from opsloop.serving.entities import Deployment, DeploymentEvent, Resolved
from opsloop.serving.predictions import log_labels, predictions
from opsloop.store import default_service


def _svc() -> DeploymentService:
    return default_service(DeploymentService)


def deploy(
    name: str,
    model: str,
    *,
    version: int | str | None = None,
    canary: int | str | None = None,
    canary_share: float | None = None,
    shadow: int | str | None = None,
    settings: Mapping[str, Any] | None = None,
    description: str = "",
    reason: str | None = None,
    who: str | None = None,
) -> Deployment:
    """Create a deployment of ``model``: ``models:/NAME@ALIAS`` follows the alias,
    ``models:/NAME/VERSION`` (or ``NAME`` and ``version``) pins a version. A canary
    takes ``canary_share`` percent of the traffic (10 unless given); a shadow gets a
    copy of every request. ``settings``: see ``opsloop.serving.entities.SETTINGS``.

    Example::

        deploy("churn", "models:/churn@production", settings={"max_batch_size": 64})
        deploy("fraud", "fraud", version=3, canary=4, canary_share=5, shadow=5)
    """
    return _svc().create(
        name,
        model,
        version=version,
        canary=canary,
        canary_share=canary_share,
        shadow=shadow,
        settings=settings,
        description=description,
        who=who,
        reason=reason,
    )


def update_deployment(
    name: str,
    *,
    version: int | str | _Unset = UNSET,
    canary: int | str | _Unset | None = UNSET,
    canary_share: float | _Unset = UNSET,
    shadow: int | str | _Unset | None = UNSET,
    settings: Mapping[str, Any] | None = None,
    description: str | _Unset = UNSET,
    reason: str | None = None,
    who: str | None = None,
    expected_revision: int | None = None,
) -> Deployment:
    """Change a deployment: what is left out stays; ``canary=None`` / ``shadow=None``
    remove them; ``settings`` is merged (None removes a key).

    Example::

        update_deployment("churn", canary=4, canary_share=10, reason="v4 on 10%")
        update_deployment("churn", canary=None, reason="v4 is worse")
    """
    return _svc().update(
        name,
        version=version,
        canary=canary,
        canary_share=canary_share,
        shadow=shadow,
        settings=settings,
        description=description,
        who=who,
        reason=reason,
        expected_revision=expected_revision,
    )


def promote(name: str, *, reason: str | None = None, who: str | None = None) -> Deployment:
    """The canary becomes the stable version at 100% (a followed alias moves to it).

    Example::

        promote("churn", reason="v4: +2% AUC over a week at 10%")
    """
    return _svc().promote(name, who=who, reason=reason)


def rollback(name: str, *, reason: str | None = None, who: str | None = None) -> Deployment:
    """Back to the previous stable version in one step, without the canary (a followed
    alias moves back). Refused when there was none.

    Example::

        rollback("churn", reason="v4's error rate doubled")
    """
    return _svc().rollback(name, who=who, reason=reason)


def delete_deployment(name: str, *, reason: str | None = None, who: str | None = None) -> None:
    """Delete a deployment and its history (recorded as a ``deployment.deleted`` event
    with who and why); its prediction log stays readable.

    Example::

        delete_deployment("churn-old", reason="replaced by churn")
    """
    _svc().delete(name, who=who, reason=reason)


def get_deployment(name: str) -> Deployment:
    """A deployment as it is now."""
    return _svc().get(name)


def list_deployments() -> list[Deployment]:
    """Every deployment, by name."""
    return _svc().list()


def deployment_history(name: str, limit: int | None = None) -> list[DeploymentEvent]:
    """A deployment's changes, newest first: action, time, who, reason, the split after."""
    return _svc().history(name, limit)


def resolve_deployment(name: str) -> Resolved:
    """The versions and shares to serve now (following the alias)."""
    return _svc().resolve(name)


__all__ = [
    "delete_deployment",
    "deploy",
    "deployment_history",
    "get_deployment",
    "list_deployments",
    "log_labels",
    "predictions",
    "promote",
    "resolve_deployment",
    "rollback",
    "update_deployment",
]
