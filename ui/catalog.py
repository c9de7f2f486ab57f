"""The catalog (SPEC §11, route `/catalog`): the agent definitions agents are created from.

Built-ins (the five MetaGPT SOP roles and the generic assistant) and plugins' definitions, each
with its role kind, source, version and its config schema as a readable table of properties
(the raw JSON Schema and the default config are one click further).
"""

from __future__ import annotations

import json
from typing import Any

from nicegui import APIRouter, run, ui

from core.schemas import DefinitionPublic
from core.services import get_services
from ui.board import ICON, MUTED, ROLE_ICONS, catalog_order
from ui.theme import frame

router = APIRouter()

CONSTRAINTS = {
    "minLength": "min length {}",
    "maxLength": "max length {}",
    "minimum": "≥ {}",
    "maximum": "≤ {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "pattern": "matches {}",
    "enum": "one of {}",
    "format": "format {}",
}
COLUMNS = [
    {"name": "name", "label": "Property", "field": "name", "align": "left"},
    {"name": "type", "label": "Type", "field": "type", "align": "left"},
    {"name": "default", "label": "Default", "field": "default", "align": "left"},
    {"name": "rules", "label": "Rules", "field": "rules", "align": "left"},
    {"name": "description", "label": "Description", "field": "description", "align": "left"},
]


def schema_rows(definition: DefinitionPublic) -> list[dict[str, str]]:
    """One row per top-level property of the config schema: type, default, rules, description."""
    schema = definition.config_schema or {}
    required = set(schema.get("required", []))
    rows = []
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type", "any")
        rules = [fmt.format(_short(spec[key])) for key, fmt in CONSTRAINTS.items() if key in spec]
        if name in required:
            rules.insert(0, "required")
        default = definition.default_config.get(name, spec.get("default"))
        rows.append(
            {
                "name": name,
                "type": " | ".join(kind) if isinstance(kind, list) else str(kind),
                "default": "" if default is None else _short(default),
                "rules": ", ".join(rules),
                "description": str(spec.get("description", "")),
            }
        )
    return rows


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def definition_card(definition: DefinitionPublic) -> None:
    builtin = definition.source == "builtin"
    with ui.card().classes("w-full p-5 gap-3 rounded-xl shadow-sm").mark(f"definition definition-{definition.slug}"):
        with ui.row().classes("w-full items-start no-wrap gap-3"):
            ui.icon(ROLE_ICONS.get(definition.role_kind, "extension")).classes(ICON)
            with ui.column().classes("gap-1 min-w-0 grow"):
                with ui.row().classes("items-center gap-2"):
                    ui.label(definition.name).classes("text-lg font-semibold")
                    ui.label(definition.slug).classes(
                        "font-mono text-xs px-1.5 py-0.5 rounded bg-slate-100 dark:bg-slate-700"
                    ).mark("definition-slug")
                ui.label(definition.description or "No description.").classes(f"text-sm {MUTED}")
            with ui.row().classes("items-center gap-1 shrink-0 max-sm:hidden"):
                ui.chip(
                    "built-in" if builtin else f"plugin · {definition.source}",
                    icon="verified" if builtin else "extension",
                    color="green-1" if builtin else "purple-1",
                ).props("dense square").mark("definition-source")
                ui.chip(f"v{definition.version}").props("dense square outline").mark("definition-version")
        with ui.row().classes("w-full items-center gap-2 text-sm -mt-1"):
            ui.label("Role kind").classes(MUTED)
            ui.label(definition.role_kind).classes("font-mono").mark("definition-role-kind")
            ui.label(f"· {'built-in' if builtin else definition.source} v{definition.version}").classes(
                f"{MUTED} sm:hidden"
            )
            ui.space()
            ui.button("New agent", icon="add", on_click=lambda: ui.navigate.to(f"/?new={definition.slug}")).props(
                "flat dense no-caps"
            ).mark(f"use-{definition.slug}")
        rows = schema_rows(definition)
        with (
            ui.expansion(f"Configuration · {len(rows)} propert{'y' if len(rows) == 1 else 'ies'}", icon="tune")
            .classes("w-full rounded-lg border border-slate-200 dark:border-slate-700")
            .props("dense")
            .mark(f"schema-{definition.slug}")
        ):
            if rows:
                ui.table(columns=COLUMNS, rows=rows, row_key="name").props("flat dense wrap-cells").classes(
                    "w-full"
                ).mark("schema-table")
            else:
                ui.label("This definition takes no configuration.").classes(f"text-sm {MUTED}")
            if definition.config_schema.get("additionalProperties", True) is not False and rows:
                ui.label("Other keys are allowed and passed to the role as they are.").classes(f"text-xs {MUTED} px-2")
            with ui.row().classes("w-full gap-4 max-md:flex-col"):
                with ui.column().classes("grow basis-0 min-w-0 gap-1"):
                    ui.label("Default config").classes("text-xs uppercase tracking-wider " + MUTED)
                    ui.code(json.dumps(definition.default_config, indent=2), language="json").classes("w-full")
                with ui.column().classes("grow basis-0 min-w-0 gap-1"):
                    ui.label("JSON Schema").classes("text-xs uppercase tracking-wider " + MUTED)
                    ui.code(json.dumps(definition.config_schema, indent=2), language="json").classes(
                        "w-full max-h-80 overflow-auto"
                    )


@router.page("/catalog")
async def catalog_page() -> None:
    with frame("Catalog"):
        definitions = await run.io_bound(get_services().agents.definitions)
        builtins = sum(d.source == "builtin" for d in definitions)
        ui.label(
            f"{len(definitions)} definitions: {builtins} built in, {len(definitions) - builtins} from plugins "
            "(Python entry points in the group agentdeck.agents)."
        ).classes(f"text-sm {MUTED} -mt-4").mark("catalog-summary")
        with ui.column().classes("w-full gap-4"):
            for definition in sorted(definitions, key=catalog_order):
                definition_card(definition)
