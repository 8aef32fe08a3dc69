"""MLflow's REST protocol, so the stock ``mlflow`` client can use ``opsloop server``.

Served under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow`` (the UI's prefix), with
the artifact proxy under ``/api/2.0/mlflow-artifacts``. Request and response fields,
HTTP methods and error bodies are MLflow's (``service.proto``, ``model_registry.proto``,
``mlflow_artifacts.proto``); what opsloop leaves out answers 404 ``ENDPOINT_NOT_FOUND``,
which MLflow's client understands as "this server does not have it".
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from opsloop.server.mlflow_compat import artifacts, registry, routing, tracking
from opsloop.server.responses import json_response
from opsloop.server.services import Services

PREFIXES = ("/api/2.0", "/ajax-api/2.0")


async def server_info(_request: Request) -> Response:
    """What MLflow 3 clients probe before multipart transfers: none are offered."""
    return json_response(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }
    )


def mlflow_routes(services: Services) -> list[BaseRoute]:
    """Mounts for every MLflow prefix: one prefix check, then a short route list."""
    api = routing.routes([*tracking.ROUTES, *registry.ROUTES], services)
    proxy = artifacts.routes(services)
    out: list[BaseRoute] = []
    for prefix in PREFIXES:
        out.append(Mount(f"{prefix}/mlflow", routes=api))
        out.append(Mount(f"{prefix}/mlflow-artifacts", routes=proxy))
    out.append(Route("/api/3.0/mlflow/server-info", server_info, include_in_schema=False))
    return out


__all__ = ["mlflow_routes"]
