"""Human in the loop (issue #13): the requests a run or a chat put to a person, and the answers.

`GET /api/runs/{id}/inputs` lists a run's requests; `POST /api/runs/{id}/inputs/{input_id}`
answers one (`{"text"}` for kind answer, `{"decision", "text"}` for kind approval). Answering
twice is 409; another workspace's ids are 404. `GET /api/inputs` is the workspace's inbox of
pending requests (runs and chats) and `POST /api/inputs/{input_id}` answers any of them.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.common import AUTH_ERRORS, Cursor, Limit, errors, link, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.pagination import DEFAULT_LIMIT
from core.run_inputs import InputAnswer, InputStatus, RunInputPublic
from core.schemas import Page

router = APIRouter(tags=["human in the loop"], responses=AUTH_ERRORS)


@router.get(
    "/api/runs/{run_id}/inputs",
    response_model=Page[RunInputPublic],
    responses={
        **errors(404),
        **linked(
            200,
            NextPage=next_page("GET /api/runs/{run_id}/inputs", keep=("status",)),
            AnswerInput=link(
                "POST /api/runs/{run_id}/inputs/{input_id}",
                "answer the page's first request",
                run_id="$request.path.run_id",
                input_id="$response.body#/items/0/id",
            ),
        ),
    },
)
def list_run_inputs(
    run_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    status: InputStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[RunInputPublic]:
    """The run's requests to people, in the order they were asked."""
    return services.run_inputs.list(run_id, status=status, limit=limit, cursor=cursor, scope=principal.workspace())


@router.post("/api/runs/{run_id}/inputs/{input_id}", response_model=RunInputPublic, responses=errors(404, 409))
def answer_run_input(
    run_id: uuid.UUID, input_id: uuid.UUID, data: InputAnswer, principal: CurrentPrincipal, services: ServicesDep
) -> RunInputPublic:
    """Answer a pending request; the run goes on with it. A request answered already is 409."""
    return services.run_inputs.answer(run_id, input_id, data, actor=principal.actor, scope=principal.workspace())


@router.get(
    "/api/inputs",
    response_model=list[RunInputPublic],
    responses={
        **errors(404),
        **linked(
            200,
            AnswerInput=link(
                "POST /api/inputs/{input_id}", "answer the oldest request", input_id="$response.body#/0/id"
            ),
        ),
    },
)
def pending_inputs(
    principal: CurrentPrincipal,
    services: ServicesDep,
    workspace_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> list[RunInputPublic]:
    """The workspace's pending requests (runs and chats), oldest first."""
    return services.run_inputs.pending(principal.workspace(workspace_id), limit=limit)


@router.post("/api/inputs/{input_id}", response_model=RunInputPublic, responses=errors(404, 409))
def answer_input(
    input_id: uuid.UUID, data: InputAnswer, principal: CurrentPrincipal, services: ServicesDep
) -> RunInputPublic:
    """Answer any pending request of the workspace (a chat reply held for approval, too)."""
    return services.run_inputs.answer(None, input_id, data, actor=principal.actor, scope=principal.workspace())
