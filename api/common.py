"""What the resource routers share: the paging parameters and the documented error answers.

Routes name the error statuses they can answer with `errors(404, 409)`; every router that needs a
token adds `AUTH_ERRORS` (the mapping itself is api/errors.py). Documenting them keeps
`/openapi.json` exact: clients (and the schemathesis fuzz test) can check every answer, errors
included, against it.

A success answer also names, with `linked(201, Name=link("GET /api/things/{thing_id}",
thing_id="$response.body#/id"))`, the operations its values lead to (OpenAPI links): a created
thing to its own routes, a page to the next page. Clients can follow them, and the fuzz test's
stateful phase chains requests along them with real ids and cursors.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BaseModel, Field

from core.pagination import DEFAULT_LIMIT, MAX_LIMIT

# 64-bit signed: the largest integer both databases (and SQLite's driver) accept as a parameter.
MAX_INT = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size (default {DEFAULT_LIMIT})")]
Cursor = Annotated[str | None, Query(max_length=1000, description="`next_cursor` of the previous page")]


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong, for people")


class ValidationErrorBody(BaseModel):
    """FastAPI's own request validation answers a list of errors; core's `InvalidInput` a sentence."""

    detail: str | list[dict[str, Any]]


class TransitionRefused(BaseModel):
    """A status change the status machine does not allow: nothing changed."""

    detail: str
    current: str
    target: str
    allowed: list[str] = Field(description="the statuses the agent may go to from `current`")


class VersionStale(BaseModel):
    """An `expected_version` / `expected_lock_version` that is no longer current: nothing changed."""

    detail: str
    current: int
    expected: int


_DOCS: dict[int, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, unknown or revoked API token"},
    404: {"model": ErrorBody, "description": "unknown id, or one of another workspace"},
    409: {
        "model": TransitionRefused | VersionStale | ErrorBody,
        "description": "conflict with the current state (refused transition, stale version, name taken)",
    },
    413: {"model": ErrorBody, "description": "request body or content over the size limit"},
    422: {"model": ValidationErrorBody, "description": "invalid input; nothing was written"},
    429: {"model": ErrorBody, "description": "rate limit exceeded; see Retry-After"},
}

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: _DOCS[401], 413: _DOCS[413], 422: _DOCS[422], 429: _DOCS[429]}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, e.g. `responses=errors(404, 409)`."""
    return {status: _DOCS[status] for status in statuses}


def link(
    operation: str, description: str = "", *, request_body: dict[str, str] | None = None, **parameters: str
) -> dict[str, Any]:
    """An OpenAPI link to `operation` ("METHOD /path" of this API), its parameters given as runtime
    expressions: `$response.body#/id`, `$request.path.agent_id`, `$request.query.limit`...;
    `request_body`: fields of the target's JSON body, as expressions too."""
    method, path = operation.split(" ", 1)
    # A JSON pointer into this document's paths (RFC 6901 escapes `~` and `/`).
    pointer = path.replace("~", "~0").replace("/", "~1")
    found: dict[str, Any] = {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}
    if request_body is not None:
        found["requestBody"] = request_body
    if description:
        found["description"] = description
    return found


def linked(status: int, **links: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` giving the answer with `status` these links (FastAPI merges it into the
    answer it documents from the route's `response_model`)."""
    return {status: {"links": links}}


def next_page(
    operation: str, cursor: str = "cursor", *, keep: tuple[str, ...] = (), description: str = "the next page"
) -> dict[str, Any]:
    """The link from a keyset page to the one after it: the same operation with the page's
    `next_cursor` as `cursor` and the same path, `limit` and filters (`keep`: query parameters)."""
    path = operation.split(" ", 1)[1]
    parameters = {name: f"$request.path.{name}" for name in _path_parameters(path)}
    parameters |= {name: f"$request.query.{name}" for name in ("limit", *keep)}
    parameters[cursor] = "$response.body#/next_cursor"
    return link(operation, f"{description} (there is none when `next_cursor` is null)", **parameters)


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def json_response(body: bytes, status_code: int = 200) -> Response:
    """An answer already encoded by core (e.g. `MessageService.list_json`). FastAPI sends a returned
    Response as it is: the route's `response_model` still documents it, without a second
    validation and encoding of every item."""
    return Response(content=body, status_code=status_code, media_type="application/json")
