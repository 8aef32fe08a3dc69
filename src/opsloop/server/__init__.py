"""The HTTP face of opsloop: one FastAPI app, thin translations to the domain services.

``mlflow_compat/`` speaks MLflow's REST protocol (so the stock ``mlflow`` client works
against ``opsloop server``), ``api_v1/`` is opsloop's own JSON API with an OpenAPI
description. Neither holds domain logic: each request becomes one service call, and
every error becomes the one JSON shape ``{"error_code": ..., "message": ...}``.
"""

from opsloop.server.app import create_app

__all__ = ["create_app"]
