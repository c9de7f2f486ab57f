"""Team runs (SPEC §6, §9): start, list, watch, cancel, read the transcript and the files made.

`POST /api/runs` answers 202 with the queued run at once; the run executes in the background
and is followed with `GET /api/runs/{id}` (or the event stream) until its status is finished.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, StringConstraints

from api.common import AUTH_ERRORS, Cursor, Limit, errors, link, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.errors import NotFound
from core.messages import MessagePublic
from core.pagination import DEFAULT_LIMIT
from core.runs import RunCreate, RunPublic
from core.schemas import Name, Page
from core.status import RunStatus
from core.validation import NoNul

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=AUTH_ERRORS)


def run_links(run_id: str, *, writes: bool = True) -> dict[str, dict[str, Any]]:
    """Links from an answer naming a run (`run_id`: the expression of its id) to the run's routes;
    `writes=False` (a run picked from a list): only the ones that read."""
    reads = {
        "GetRun": link("GET /api/runs/{run_id}", run_id=run_id),
        "RunMessages": link("GET /api/runs/{run_id}/messages", run_id=run_id),
        "RunFiles": link("GET /api/runs/{run_id}/files", run_id=run_id),
        "RunInputs": link("GET /api/runs/{run_id}/inputs", run_id=run_id),
        "RunLlmCalls": link("GET /api/runs/{run_id}/llm-calls", run_id=run_id),
    }
    if not writes:
        return reads
    return reads | {
        "CancelRun": link("POST /api/runs/{run_id}/cancel", run_id=run_id),
        "ResumeRun": link("POST /api/runs/{run_id}/resume", run_id=run_id),
        "ForkRun": link("POST /api/runs/{run_id}/fork", run_id=run_id),
    }


RUN_LINKS = linked(202, **run_links("$response.body#/id"))


@router.post(
    "",
    response_model=RunPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**errors(404, 409, 422), **RUN_LINKS},
)
def start_run(data: RunCreate, principal: CurrentPrincipal, services: ServicesDep) -> RunPublic:
    """Queue a team run of the given agents on `idea`; it starts in the background, with the
    workspace's LLM profile `llm_profile` if given (an unknown one is 422), else its default."""
    return services.runtime.start_run(data, actor=principal.actor, scope=principal.workspace())


@router.get(
    "",
    response_model=Page[RunPublic],
    responses={
        **errors(404),
        **linked(
            200,
            NextPage=next_page("GET /api/runs", keep=("workspace_id", "status")),
            **run_links("$response.body#/items/0/id", writes=False),
        ),
    },
)
def list_runs(
    principal: CurrentPrincipal,
    services: ServicesDep,
    workspace_id: uuid.UUID | None = None,
    status: RunStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[RunPublic]:
    """Runs of the workspace (default: the token's), newest first; queued ones with their
    `queue_position`."""
    return services.runtime.list_runs(principal.workspace(workspace_id), limit=limit, cursor=cursor, status=status)


@router.get("/{run_id}", response_model=RunPublic, responses=errors(404))
def get_run(run_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> RunPublic:
    """The run with its status, budget, costs, tokens and members; while queued, its place in the
    queue (`queue_position`, 0 = next); after a restart, `resumed_at_round` and `attempts`."""
    return services.runtime.get_run(run_id, scope=principal.workspace())


@router.post("/{run_id}/cancel", response_model=RunPublic, responses=errors(404, 409))
def cancel_run(run_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> RunPublic:
    """Stop an unfinished run; a finished one is 409."""
    return services.runtime.cancel_run(run_id, actor=principal.actor, scope=principal.workspace())


@router.post(
    "/{run_id}/resume",
    response_model=RunPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**errors(404, 409), **RUN_LINKS},
)
def resume_run(run_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> RunPublic:
    """Resume an `interrupted` run (one not resumed at a `--no-resume` start): queued again, it
    continues at `resumed_at_round`, the round after its last checkpointed one, without repeating
    the LLM calls of the rounds before. Any other status is 409 and changes nothing."""
    return services.runtime.resume_run(run_id, actor=principal.actor, scope=principal.workspace())


class RunFork(BaseModel):
    """Start a new run from this one's state after `round`; `idea` replaces the run's idea and
    `llm_profile` (a profile of the workspace) the run's LLM for the rounds after `round`."""

    round: int = Field(ge=1, le=100)
    idea: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000), NoNul] | None = None
    llm_profile: Name | None = Field(default=None, description="an LLM profile of the workspace; null: the run's")


@router.post(
    "/{run_id}/fork",
    response_model=RunPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**errors(404, 409, 422), **RUN_LINKS},
)
def fork_run(run_id: uuid.UUID, data: RunFork, principal: CurrentPrincipal, services: ServicesDep) -> RunPublic:
    """Re-run from round k: a new queued run (`parent_run_id`, `fork_round`) whose rounds 1..k are
    copied from this one without any LLM call; it continues from round k+1 (with `llm_profile`)."""
    return services.runtime.fork_run(
        run_id,
        data.round,
        idea=data.idea,
        actor=principal.actor,
        scope=principal.workspace(),
        llm_profile=data.llm_profile,
    )


@router.get(
    "/{run_id}/messages",
    response_model=Page[MessagePublic],
    responses={**errors(404), **linked(200, NextPage=next_page("GET /api/runs/{run_id}/messages"))},
)
def run_messages(
    run_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[MessagePublic]:
    """The run's transcript across its agents, oldest first."""
    return services.messages.list_run(run_id, scope=principal.workspace(), limit=limit, cursor=cursor)


@router.get(
    "/{run_id}/files",
    response_model=list[str],
    responses={
        **errors(404),
        **linked(
            200,
            ReadFile=link(
                "GET /api/runs/{run_id}/files/{file_path}",
                "the first file",
                run_id="$request.path.run_id",
                file_path="$response.body#/0",
            ),
        ),
    },
)
def run_files(run_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> list[str]:
    """Paths of the files the run's roles wrote (PRD, design, code...), relative to its folder."""
    return services.runtime.run_files(run_id, scope=principal.workspace())


@router.get(
    "/{run_id}/files/{file_path:path}",
    # The route returns a PlainTextResponse itself; `Response` (no media type) only keeps OpenAPI
    # from describing the JSON error answers as text/plain.
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the file as UTF-8 text"},
        **errors(404),
    },
)
def run_file(
    run_id: uuid.UUID,
    file_path: Annotated[str, Path(description="a path from the run's file list")],
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> PlainTextResponse:
    """One file of the run as text (the first 256 KiB; undecodable bytes replaced)."""
    if "\x00" in file_path:
        # No file name holds NUL; checked here because the filesystem calls reject it with an error.
        raise NotFound("run file", file_path.replace("\x00", "\\0"))
    text = services.runtime.read_run_file(run_id, file_path, scope=principal.workspace())
    return PlainTextResponse(text)
