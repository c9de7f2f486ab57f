"""The agent registry: built-in definitions plus plugins, synced into the catalog at startup.

Built-ins are the five MetaGPT SOP roles and a generic prompt-driven `assistant`. Plugins are
Python entry points in the group `agentdeck.agents`; each entry point loads an `AgentSpec` (or a
dict with the same fields, or a callable returning either). `role_kind` tells the runtime which
MetaGPT role to build: one of BUILTIN_ROLE_KINDS, or `"package.module:RoleClass"` for a plugin's
own Role subclass.

Sync is an upsert by slug: a definition is inserted once and updated when its fields change
(its `version` then increases), so restarts never duplicate the catalog.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlmodel import select

from core.db import Database
from core.schemas import SLUG_RE
from core.validation import check_storable_json
from storage.models import AgentDefinition

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "agentdeck.agents"
BUILTIN_ROLE_KINDS = ("ProductManager", "Architect", "ProjectManager", "Engineer", "QaEngineer", "assistant")

_COMMON_CONFIG_PROPERTIES: dict[str, Any] = {
    "llm_profile": {
        "type": ["string", "null"],
        "description": "Name of the workspace LLM profile to use; empty means the workspace default.",
    },
    "constraints": {
        "type": "string",
        "maxLength": 10_000,
        "description": "Extra instructions appended to the role's constraints.",
    },
    "approve_replies": {
        "type": "boolean",
        "description": "Hold each chat reply for a person's approval (approve, edit or send back) before it is stored.",
    },
}


def _sop_schema() -> dict[str, Any]:
    return {"type": "object", "properties": dict(_COMMON_CONFIG_PROPERTIES), "additionalProperties": True}


@dataclass(frozen=True)
class AgentSpec:
    slug: str
    name: str
    role_kind: str
    description: str = ""
    default_config: dict[str, Any] = field(default_factory=dict)
    config_schema: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    source: str = "builtin"


BUILTIN_SPECS: tuple[AgentSpec, ...] = (
    AgentSpec(
        slug="product-manager",
        name="Product Manager",
        role_kind="ProductManager",
        description="MetaGPT's ProductManager: turns an idea into a PRD with user stories and competitive analysis.",
        config_schema=_sop_schema(),
    ),
    AgentSpec(
        slug="architect",
        name="Architect",
        role_kind="Architect",
        description="MetaGPT's Architect: designs the system (data structures, APIs, call flow) from the PRD.",
        config_schema=_sop_schema(),
    ),
    AgentSpec(
        slug="project-manager",
        name="Project Manager",
        role_kind="ProjectManager",
        description="MetaGPT's ProjectManager: breaks the design into a task list with dependencies.",
        config_schema=_sop_schema(),
    ),
    AgentSpec(
        slug="engineer",
        name="Engineer",
        role_kind="Engineer",
        description="MetaGPT's Engineer: writes the code file by file from the task list.",
        config_schema=_sop_schema(),
    ),
    AgentSpec(
        slug="qa-engineer",
        name="QA Engineer",
        role_kind="QaEngineer",
        description="MetaGPT's QaEngineer: writes and runs tests for the generated code "
        "(inside the run's own virtual environment).",
        config_schema=_sop_schema(),
    ),
    AgentSpec(
        slug="assistant",
        name="Assistant",
        role_kind="assistant",
        description="A generic assistant whose behaviour is its system prompt.",
        default_config={"system_prompt": "You are a helpful assistant."},
        config_schema={
            "type": "object",
            "properties": {
                **_COMMON_CONFIG_PROPERTIES,
                "system_prompt": {"type": "string", "minLength": 1, "maxLength": 20_000},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            },
            "required": ["system_prompt"],
            "additionalProperties": True,
        },
    ),
)


def _spec_from(obj: Any, ep: EntryPoint) -> AgentSpec:
    if callable(obj) and not isinstance(obj, AgentSpec):
        obj = obj()
    if isinstance(obj, dict):
        obj = AgentSpec(**obj)
    if not isinstance(obj, AgentSpec):
        raise TypeError(f"entry point {ep.name} gave {type(obj).__name__}, not an AgentSpec")
    dist = ep.dist.name if ep.dist is not None else ep.value
    spec = AgentSpec(**{**asdict(obj), "source": obj.source if obj.source != "builtin" else dist})
    _check_spec(spec)
    return spec


def _check_spec(spec: AgentSpec) -> None:
    """A plugin's spec must fit the catalog's columns and the runtime, or it is refused here:
    a bad value reaching sync_definitions would fail the whole sync (and so the startup)."""

    def text(name: str, value: Any, max_len: int, *, empty: bool = False) -> None:
        if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > max_len:
            raise ValueError(f"{name} must be a{'' if empty else ' non-empty'} string of at most {max_len} chars")
        if "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")

    text("slug", spec.slug, 64)
    if not SLUG_RE.match(spec.slug):
        raise ValueError(f"slug {spec.slug!r} is not lowercase letters, digits and dashes")
    text("name", spec.name, 200)
    text("description", spec.description, 100_000, empty=True)
    text("source", spec.source, 200)
    text("role_kind", spec.role_kind, 64)
    module, _, cls = spec.role_kind.partition(":")
    if spec.role_kind not in BUILTIN_ROLE_KINDS and not (module and cls):
        raise ValueError(f"role_kind {spec.role_kind!r} is neither built in nor 'package.module:RoleClass'")
    if isinstance(spec.version, bool) or not isinstance(spec.version, int) or spec.version < 1:
        raise ValueError("version must be a positive integer")
    for name in ("default_config", "config_schema"):
        value = getattr(spec, name)
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict")
        check_storable_json(value, name)
    if spec.config_schema:
        Draft202012Validator.check_schema(spec.config_schema)


def discover_specs() -> list[AgentSpec]:
    """Built-ins, then every loadable plugin. A broken plugin is logged and skipped, so one bad
    distribution cannot keep AgentDeck from starting."""
    specs = list(BUILTIN_SPECS)
    seen = {spec.slug for spec in specs}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = _spec_from(ep.load(), ep)
        except (Exception, SchemaError):
            log.exception("agent plugin %s (%s) could not be loaded; skipped", ep.name, ep.value)
            continue
        if spec.slug in seen:
            log.error("agent plugin %s reuses the slug %r; skipped", ep.name, spec.slug)
            continue
        seen.add(spec.slug)
        specs.append(spec)
    return specs


def sync_definitions(db: Database, specs: list[AgentSpec] | None = None) -> dict[str, int]:
    """Upsert the catalog from `specs` (default: discovered). Returns counts for the log."""
    specs = discover_specs() if specs is None else specs
    inserted = updated = 0
    with db.write() as session:
        existing = {d.slug: d for d in session.exec(select(AgentDefinition))}
        seen: set[str] = set()
        for spec in specs:
            if spec.slug in seen:
                # As in discover_specs: the first spec of a slug wins; a second insert would fail.
                log.error("agent spec %r is given twice; the second is skipped", spec.slug)
                continue
            seen.add(spec.slug)
            fields: dict[str, Any] = {
                "name": spec.name,
                "description": spec.description,
                "role_kind": spec.role_kind,
                "default_config": spec.default_config,
                "config_schema": spec.config_schema,
                "source": spec.source,
            }
            row = existing.get(spec.slug)
            if row is None:
                session.add(AgentDefinition(slug=spec.slug, version=spec.version, **fields))
                inserted += 1
            elif any(getattr(row, k) != v for k, v in fields.items()) or row.version < spec.version:
                for key, value in fields.items():
                    setattr(row, key, value)
                row.version = max(row.version + 1, spec.version)
                session.add(row)
                updated += 1
    if inserted or updated:
        log.info("agent catalog: %d definitions added, %d updated", inserted, updated)
    return {"inserted": inserted, "updated": updated}
