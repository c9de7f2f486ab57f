"""What every API route shares: the services, the caller's token and the workspace it may touch.

A route that declares `principal: CurrentPrincipal` cannot run without a live token, and reaches
data only through `principal.workspace(...)`, so scoping is written once here:

    @router.get("/api/things")
    def list_things(principal: CurrentPrincipal, services: ServicesDep, workspace_id: UUID | None = None):
        return services.things.list(principal.workspace(workspace_id))

Dependencies that touch the database are plain `def`s: FastAPI runs them in its thread pool; the
others are `async def`s, which it calls on the event loop (each thread-pool call costs a hand-over
between threads, a good part of a small request's CPU). The token check is async: a token validated
moments ago is recalled from memory on the loop, and only a miss reads the database in a thread.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from core.errors import NotFound, Unauthorized
from core.services import Services

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="adk_…",
    description="A workspace API token, made with `uv run main.py token create --workspace SLUG`.",
)


async def services(connection: HTTPConnection) -> Services:
    """The services of the app serving this request (main.py puts them in `app.state`), so an
    app built with other services, a test's for one, serves those."""
    # async: no database work, so FastAPI calls it on the event loop instead of in a thread.
    found: Services = connection.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: one token, which acts in exactly one workspace."""

    token_id: uuid.UUID
    workspace_id: uuid.UUID
    token_name: str
    # Admin tokens (`token create --admin`) may also create workspaces and switch code execution.
    admin: bool = False

    @property
    def actor(self) -> str:
        return f"token:{self.token_name}"

    def workspace(self, workspace_id: uuid.UUID | None = None) -> uuid.UUID:
        """The workspace a request acts on: the token's own (also when none is named).

        Any other id is NotFound, exactly like an unknown one — never 403, never a leak.
        """
        if workspace_id is None or workspace_id == self.workspace_id:
            return self.workspace_id
        raise NotFound("workspace", workspace_id)


async def authenticate(container: Services, secret: str | None) -> Principal:
    if not secret:
        raise Unauthorized("missing API token: send `Authorization: Bearer <token>`")
    token = container.tokens.recall(secret) or await run_in_threadpool(container.tokens.authenticate, secret)
    return Principal(token_id=token.id, workspace_id=token.workspace_id, token_name=token.name, admin=token.admin)


async def current_principal(
    container: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """REST: the bearer token only (a token in a URL ends up in logs and browser history)."""
    return await authenticate(container, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def websocket_principal(
    container: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    token: Annotated[str | None, Query(description="API token, for clients that cannot set headers")] = None,
) -> Principal:
    """WebSockets: the bearer header, or `?token=` because browsers cannot set headers there.

    A failure refuses the handshake with the usual JSON 401 (see api/errors.py).
    """
    return await authenticate(container, credentials.credentials if credentials else token)


WebSocketPrincipal = Annotated[Principal, Depends(websocket_principal)]
