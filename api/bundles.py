"""Workspace bundles over HTTP (issue 17).

- `GET /api/workspaces/{id}/export` streams the bundle as it is made (a zip of JSON Lines, see
  core/bundles.py): memory stays flat whatever the workspace's size.
- `POST /api/workspaces/import[?as_slug=NEW]` takes the bundle as the raw request body
  (any content type, e.g. `application/octet-stream`), spools it to a temporary file under the data dir (a zip is
  read from its end), then validates and imports it all or nothing. Like `POST /api/workspaces`,
  any valid token may import, and it grants nothing: the new workspace gets its own tokens.
  The body limit here is `MAX_BUNDLE_BYTES`, not the API's 2 MiB (api/app.py exempts this path).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.common import AUTH_ERRORS, errors
from api.deps import CurrentPrincipal, ServicesDep
from core.errors import TooLarge

router = APIRouter(prefix="/api/workspaces", tags=["bundles"], responses=AUTH_ERRORS)

IMPORT_PATH = "/api/workspaces/import"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024 * 1024
MEDIA_TYPE = "application/zip"


class ImportedWorkspace(BaseModel):
    workspace_id: uuid.UUID
    slug: str
    rows: dict[str, int]
    files: int
    remapped_ids: int


@router.get(
    "/{workspace_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}, **errors(404)},
)
def export_workspace(workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> StreamingResponse:
    """The workspace with its whole history as a `.agentdeck` bundle (LLM keys and API tokens excluded)."""
    workspace = services.workspaces.get(principal.workspace(workspace_id))
    return StreamingResponse(
        services.bundles.export_chunks(workspace.id),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{workspace.slug}.agentdeck"'},
    )


@router.post(
    "/import",
    response_model=ImportedWorkspace,
    status_code=status.HTTP_201_CREATED,
    responses=errors(409, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            # Any content type is read as the bundle's bytes; octet-stream is what generic clients send.
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_workspace(
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    as_slug: Annotated[str | None, Query(max_length=64, description="slug for the new workspace")] = None,
) -> ImportedWorkspace:
    """Import a bundle as a new workspace; a bad bundle is 422 with the reason and writes nothing."""
    spool = services.settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, suffix=".agentdeck") as tmp:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BUNDLE_BYTES:
                raise TooLarge(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes", limit=MAX_BUNDLE_BYTES)
            await run_in_threadpool(tmp.write, chunk)
        await run_in_threadpool(tmp.flush)
        result = await run_in_threadpool(services.bundles.import_file, Path(tmp.name), as_slug or None, principal.actor)
    return ImportedWorkspace(
        workspace_id=result.workspace_id,
        slug=result.slug,
        rows=result.rows,
        files=result.files,
        remapped_ids=result.remapped,
    )
