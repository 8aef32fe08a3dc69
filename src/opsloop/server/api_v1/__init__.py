"""opsloop's own REST API, ``/api/v1``: plain JSON resources with an OpenAPI description.

The same domain as the MLflow protocol (experiments, runs, metrics, registry), shaped
as resources (``/runs/{run_id}/metrics``) with pydantic bodies. Each endpoint is one
service call; errors have the one shape ``{"error_code", "message"}``.
"""

from typing import Any

from fastapi import APIRouter

from opsloop.server.api_v1 import (
    deployments,
    events,
    logs,
    monitors,
    registry,
    schedules,
    signals,
    tracking,
)
from opsloop.server.api_v1.models import Error

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Invalid input (INVALID_PARAMETER_VALUE, INVALID_STATE)"},
    404: {"model": Error, "description": "Not found (RESOURCE_DOES_NOT_EXIST)"},
    409: {"model": Error, "description": "Already exists (RESOURCE_ALREADY_EXISTS)"},
}

router = APIRouter(responses=ERRORS)
router.include_router(tracking.router)
router.include_router(registry.router)
router.include_router(schedules.router)
router.include_router(deployments.router)
router.include_router(events.router)
router.include_router(monitors.router)
router.include_router(signals.router)
router.include_router(logs.router)

__all__ = ["router"]
