"""Running the server: migrate once, then serve with uvicorn (uvloop + httptools).

Migrations run here, in the parent, before any worker starts, so that several
workers never race to migrate a new store (the store's lock would make them wait,
but each would still pay for the check on its first request). The access log is
off: at thousands of requests a second it costs more than the requests.
"""

from __future__ import annotations

import copy
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from opsloop.core.config import Settings
from opsloop.store import Store


def run_server(host: str, port: int, workers: int = 1) -> None:
    """Serve the MLflow protocol and ``/api/v1`` until interrupted.

    Example::

        run_server("127.0.0.1", 5000, workers=4)
    """
    store = Store(Settings.from_env(), migrate=True)
    store.close()
    uvicorn.run(
        "opsloop.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        log_config=log_config(),
        # MLflow clients keep connections open between calls; keep them a while.
        timeout_keep_alive=30,
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus opsloop's own loggers (server errors with tracebacks)."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["opsloop"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
