"""What services return and accept: plain pydantic models, never live ORM rows.

The API uses these as its response models, so OpenAPI describes exactly what core produces.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.validation import MAX_INT32, NoNul

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

Slug = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=SLUG_RE.pattern),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
# A catalog definition's slug as clients name it: looked up as given (an unknown one is not found),
# but never with NUL, which no slug holds and PostgreSQL refuses even to compare (a 500 before).
DefinitionSlug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), NoNul]
Description = Annotated[str, StringConstraints(max_length=10_000), NoNul]


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class WorkspaceCreate(BaseModel):
    slug: Slug
    name: Name | None = None


class WorkspaceUpdate(BaseModel):
    name: Name | None = None
    settings: dict[str, Any] | None = None


class WorkspacePublic(Public):
    id: uuid.UUID
    slug: str
    name: str
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class ProjectCreate(BaseModel):
    slug: Slug
    name: Name
    description: Description = ""


class ProjectUpdate(BaseModel):
    name: Name | None = None
    description: Description | None = None


class ProjectPublic(Public):
    id: uuid.UUID
    workspace_id: uuid.UUID
    slug: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class RepositoryLinkCreate(BaseModel):
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), NoNul]
    default_branch: Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul] = "main"


class RepositoryLinkPublic(Public):
    id: uuid.UUID
    project_id: uuid.UUID
    url: str
    default_branch: str
    created_at: datetime


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One keyset page. `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


class DefinitionPublic(Public):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    role_kind: str
    default_config: dict[str, Any]
    config_schema: dict[str, Any]
    version: int
    source: str


class AgentCreate(BaseModel):
    workspace_id: uuid.UUID
    definition: DefinitionSlug = Field(description="slug of an agent definition from the catalog")
    name: Name
    config: dict[str, Any] | None = None
    project_id: uuid.UUID | None = None
    context: dict[str, Any] | None = Field(default=None, description="initial context (version 1)")


class AgentUpdate(BaseModel):
    name: Name | None = None
    config: dict[str, Any] | None = None
    project_id: uuid.UUID | None = None
    expected_lock_version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT32,
        description="refuse the update (409) if the agent changed since this lock_version",
    )


class AgentPublic(Public):
    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    definition_id: uuid.UUID
    definition: str
    role_kind: str
    name: str
    status: str
    status_reason: str
    allowed_transitions: list[str]
    config: dict[str, Any]
    lock_version: int
    created_at: datetime
    updated_at: datetime


class StatusChangeRequest(BaseModel):
    status: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    reason: Annotated[str, StringConstraints(max_length=2000), NoNul] = ""
    expected_lock_version: int | None = Field(default=None, ge=0, le=MAX_INT32)


class StatusChangePublic(Public):
    id: uuid.UUID
    agent_id: uuid.UUID
    from_status: str | None
    to_status: str
    reason: str
    actor: str
    at: datetime


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The (lowest, highest) value a numeric field accepts, read from its constraints, so a form
    offers what the model accepts instead of restating the limits. A `gt`/`lt` bound is returned
    as is: the form's precision decides the first value past it, and the model refuses the bound."""
    low: float | None = None
    high: float | None = None
    for constraint in model.model_fields[name].metadata:
        for attr in ("ge", "gt"):
            if getattr(constraint, attr, None) is not None:
                low = getattr(constraint, attr)
        for attr in ("le", "lt"):
            if getattr(constraint, attr, None) is not None:
                high = getattr(constraint, attr)
    return low, high
