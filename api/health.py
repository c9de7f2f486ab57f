"""Liveness and readiness: the only route that needs no token."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from api.deps import ServicesDep
from core.version import VERSION

router = APIRouter(prefix="/api", tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "starting"]
    version: str


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "still starting"}})
async def health(response: Response, services: ServicesDep) -> Health:
    """200 once the process is ready: durable execution launched and the work left unfinished by
    the last stop resumed or declined. 503 before that, so a load balancer or a script waiting
    for the server does not send work to a process that is still starting."""
    # async: it reads a flag, so it needs no thread of the pool (probes poll it often).
    if not services.ready:
        response.status_code = 503
        return Health(status="starting", version=VERSION)
    return Health(status="ok", version=VERSION)
