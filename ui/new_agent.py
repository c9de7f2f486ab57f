"""The board's "New agent" dialog: a definition from the catalog (with its description), a name,
an optional project and a JSON config editor prefilled with the definition's default_config.

Core validates everything; its errors are shown inline (JSON syntax, schema violations one per
line, a taken name on the name field) and nothing is created until the input is valid.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from nicegui import run, ui
from pydantic import ValidationError

from core.errors import Conflict, DomainError, InvalidInput
from core.schemas import AgentCreate, AgentPublic, DefinitionPublic, ProjectPublic, WorkspacePublic
from core.services import Services
from ui.components import validation_messages
from ui.palette import MUTED
from ui.state import ACTOR
from ui.widgets import catalog_order, json_editor

NO_PROJECT = ""  # the project select's "none" choice


class NewAgentDialog:
    """Definition (with its description), name, optional project and a JSON config editor
    prefilled with the definition's default_config. Core validates; its errors stay inline."""

    def __init__(
        self,
        services: Services,
        workspace: WorkspacePublic,
        definitions_by_slug: dict[str, DefinitionPublic],
        projects: dict[str, ProjectPublic],
        on_created: Callable[[AgentPublic], None],
    ) -> None:
        self.services = services
        self.workspace, self.definitions, self.on_created = workspace, definitions_by_slug, on_created
        definitions = sorted(definitions_by_slug.values(), key=catalog_order)
        self.prefill = ""
        with ui.dialog() as self.dialog, ui.card().classes("w-[40rem] max-w-full gap-3 p-6 rounded-xl"):
            ui.label("New agent").classes("text-lg font-semibold")
            self.definition = (
                ui.select(
                    {d.slug: d.name for d in definitions},
                    label="Definition",
                    value=definitions[0].slug if definitions else None,
                    on_change=lambda e: self._definition_chosen(e.value),
                )
                .props("outlined dense options-dense")
                .classes("w-full")
                .mark("new-agent-definition")
            )
            self.description = ui.label().classes(f"text-sm {MUTED} -mt-1").mark("new-agent-description")
            with ui.row().classes("w-full gap-3 no-wrap max-sm:flex-wrap"):
                self.name = (
                    ui.input("Name", placeholder="e.g. Alice (PM)")
                    .props("outlined dense")
                    .classes("grow")
                    .mark("new-agent-name")
                )
                choices = {NO_PROJECT: "No project", **{pid: p.name for pid, p in projects.items()}}
                self.project = (
                    ui.select(choices, value=NO_PROJECT, label="Project")
                    .props("outlined dense options-dense")
                    .classes("w-48 max-sm:w-full")
                    .mark("new-agent-project")
                )
                self.project.set_visibility(bool(projects))
            ui.label("Config (JSON)").classes("text-sm font-medium -mb-2")
            self.config = json_editor().classes("h-48 overflow-hidden").mark("new-agent-config")
            self.config_error = (
                ui.label().classes("text-sm text-negative whitespace-pre-wrap -mt-1").mark("new-agent-config-error")
            )
            with ui.row().classes("w-full justify-end gap-2 pt-2"):
                ui.button("Cancel", on_click=self.dialog.close).props("flat no-caps")
                self.submit = (
                    ui.button("Create", on_click=self.create).props("unelevated no-caps").mark("new-agent-create")
                )
        self.name.on("keydown.enter", self.create)
        self._definition_chosen(self.definition.value)

    def open(self) -> None:
        self.name.value = ""
        self.name.error = None
        self.config.value = ""  # refilled with the chosen definition's default below
        self._definition_chosen(self.definition.value)
        self.dialog.open()

    def _definition_chosen(self, slug: str | None) -> None:
        definition = self.definitions.get(slug or "")
        self.description.set_text(definition.description if definition else "")
        default = json.dumps(definition.default_config if definition else {}, indent=2)
        # Swap in the new default unless the person has edited the previous one.
        if not (self.config.value or "").strip() or self.config.value == self.prefill:
            self.config.value = default
        self.prefill = default
        self.config_error.set_text("")

    async def create(self) -> None:
        self.name.error = None
        self.config_error.set_text("")
        try:
            config = json.loads(self.config.value or "{}")
        except json.JSONDecodeError as exc:
            self.config_error.set_text(f"Invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
            return
        if not isinstance(config, dict):
            self.config_error.set_text("The config must be a JSON object: { ... }")
            return
        try:
            data = AgentCreate(
                workspace_id=self.workspace.id,
                definition=self.definition.value or "",
                name=self.name.value or "",
                config=config,
                project_id=uuid.UUID(self.project.value) if self.project.value else None,
            )
        except ValidationError as exc:
            messages = validation_messages(exc)
            self.name.error = messages.get("name")
            self.config_error.set_text(messages.get("config") or messages.get("definition") or "")
            return
        self.submit.props("loading")
        try:
            agent = await run.io_bound(self.services.agents.create, data, actor=ACTOR, scope=self.workspace.id)
        except Conflict as exc:
            self.name.error = str(exc)
            return
        except InvalidInput as exc:
            self._show_error(exc)
            return
        except DomainError as exc:
            self.config_error.set_text(str(exc))
            return
        finally:
            self.submit.props(remove="loading")
        self.dialog.close()
        ui.notify(f"Agent {agent.name} created", type="positive")
        self.on_created(agent)

    def _show_error(self, exc: InvalidInput) -> None:
        errors = exc.details.get("errors")
        if errors:  # schema violations, one per line
            self.config_error.set_text("\n".join(f"{e['path']}: {e['message']}" for e in errors))
        elif exc.details.get("field") == "config":
            self.config_error.set_text(str(exc))
        else:
            self.name.error = str(exc)
