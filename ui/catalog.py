"""The catalog (SPEC §11, route `/catalog`): team templates and the agent definitions agents are
created from.

Team templates (issue 17) come first: the built-ins and the workspace's saved ones, each with its
members and a "Create team" button; "New template from agents" saves a hand-picked set.

Built-ins (the five MetaGPT SOP roles and the generic assistant) and plugins' definitions, each
with its role kind, source, version and its config schema as a readable table of properties
(the raw JSON Schema and the default config are one click further).
"""

from __future__ import annotations

import json
from typing import Any

from nicegui import APIRouter, run, ui

from core.errors import DomainError
from core.schemas import DefinitionPublic, WorkspacePublic
from core.services import Services
from core.templates import TemplatePublic
from ui.board import ICON
from ui.palette import MUTED
from ui.state import app_services
from ui.teams import SaveTemplateDialog, create_team
from ui.theme import frame
from ui.widgets import ROLE_ICONS, catalog_order

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


def template_card(services: Services, workspace: WorkspacePublic, template: TemplatePublic, on_delete: Any) -> None:
    with ui.card().classes("w-full p-5 gap-3 rounded-xl shadow-sm").mark(f"template template-{template.slug}"):
        with ui.row().classes("w-full items-start no-wrap gap-3"):
            ui.icon("groups").classes(ICON)
            with ui.column().classes("gap-1 min-w-0 grow"):
                with ui.row().classes("items-center gap-2"):
                    ui.label(template.name).classes("text-lg font-semibold").mark("template-title")
                    ui.label(template.slug).classes(
                        "font-mono text-xs px-1.5 py-0.5 rounded bg-slate-100 dark:bg-slate-700"
                    )
                ui.label(template.description or "No description.").classes(f"text-sm {MUTED}")
            ui.chip(
                "built-in" if template.builtin else "saved here",
                icon="verified" if template.builtin else "bookmark",
                color="green-1" if template.builtin else "blue-1",
            ).props("dense square").classes("shrink-0 max-sm:hidden")
        with ui.row().classes("w-full gap-1"):
            for member in template.members:
                ui.chip(f"{member.name} · {member.definition}").props("dense square outline").mark("template-member")
        with ui.row().classes("w-full items-center gap-2 text-sm"):
            ui.label(f"{template.n_rounds} rounds · ${template.investment:,.2f} budget").classes(MUTED)
            if template.idea:
                ui.label(f"· e.g. {template.idea}").classes(f"{MUTED} truncate min-w-0")
            ui.space()
            if not template.builtin:
                ui.button("Delete", icon="delete", on_click=lambda: on_delete(template)).props(
                    "flat dense no-caps color=negative"
                ).mark(f"delete-template-{template.slug}")

            async def create() -> None:
                await create_team(services, workspace, template)

            ui.button("Create team", icon="group_add", on_click=create).props("unelevated dense no-caps").mark(
                f"create-team-{template.slug}"
            )


class TemplateSection:
    """Built-in and saved team templates; a new one from a hand-picked set of agents."""

    def __init__(self, services: Services, workspace: WorkspacePublic) -> None:
        self.services = services
        self.workspace = workspace
        with ui.row().classes("w-full items-center gap-2"):
            ui.label("Team templates").classes("text-xl font-semibold")
            ui.space()
            ui.button("New template from agents", icon="playlist_add", on_click=self.new).props("outline no-caps").mark(
                "new-template"
            )
        self.list = ui.column().classes("w-full gap-4").mark("templates")

    async def refresh(self) -> None:
        templates = await run.io_bound(self.services.templates.list, self.workspace.id)
        if templates is None:
            return
        self.list.clear()
        with self.list:
            for template in templates:
                template_card(self.services, self.workspace, template, self.delete)

    async def new(self) -> None:
        page = await run.io_bound(self.services.agents.list, self.workspace.id, limit=500)
        if page is None:
            return
        SaveTemplateDialog(
            self.services, self.workspace, pick_from=page.items, on_saved=lambda _: self.refresh()
        ).open()

    async def delete(self, template: TemplatePublic) -> None:
        try:
            await run.io_bound(self.services.templates.delete, self.workspace.id, template.slug)
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
        await self.refresh()


@router.page("/catalog")
async def catalog_page() -> None:
    services = app_services()
    with frame(services, "Catalog") as workspace:
        section = TemplateSection(services, workspace)
        await section.refresh()
        ui.label("Agent definitions").classes("text-xl font-semibold mt-4")
        definitions = await run.io_bound(services.agents.definitions)
        builtins = sum(d.source == "builtin" for d in definitions)
        ui.label(
            f"{len(definitions)} definitions: {builtins} built in, {len(definitions) - builtins} from plugins "
            "(Python entry points in the group agentdeck.agents)."
        ).classes(f"text-sm {MUTED} -mt-4").mark("catalog-summary")
        with ui.column().classes("w-full gap-4"):
            for definition in sorted(definitions, key=catalog_order):
                definition_card(definition)
