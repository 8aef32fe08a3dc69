"""What every ``/api/v1`` endpoint depends on: the app's services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from opsloop.server.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]
