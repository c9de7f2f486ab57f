"""Settings (SPEC §8, §9, §11; route `/settings`) of the current workspace.

- LLM profiles: which model the agents talk to. Keys are write-only: the form never shows one,
  a blank key on edit keeps the stored one, and lists show only the masked hint. Without a
  default profile the workspace runs on the offline demo model, and the page says so.
- API tokens: the secret is shown once, in the dialog that creates it, and the dialog element
  is deleted when it closes, so the secret cannot be read back from the page; lists show only the
  prefix.
- Workspace: whether generated code may run (only ever inside each run's own virtualenv).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import StreamingResponse
from nicegui import APIRouter, run, ui
from pydantic import SecretStr, ValidationError

from core.errors import Conflict, DomainError, InvalidInput
from core.llm_profiles import LLM_API_TYPES, LlmProfileCreate, LlmProfilePublic, LlmProfileUpdate
from core.schemas import WorkspacePublic, WorkspaceUpdate
from core.services import Services
from core.tokens import TokenPublic
from core.workspaces import CODE_EXECUTION, code_execution_enabled
from ui.components import validation_messages
from ui.palette import MUTED
from ui.safe_props import with_props
from ui.state import app_services
from ui.theme import frame
from ui.widgets import demo_model_chip

router = APIRouter()

SECTION = "w-full p-5 gap-4 rounded-xl shadow-sm"
ROW = "w-full items-center gap-3 py-3 border-t border-slate-100 dark:border-slate-700 first:border-t-0"
MONO_CHIP = "font-mono text-xs px-1.5 py-0.5 rounded bg-slate-100 dark:bg-slate-700"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} d ago"
    return f"{moment:%Y-%m-%d}"


def section_header(title: str, subtitle: str) -> ui.row:
    with (
        ui.row().classes("w-full items-start gap-3 no-wrap max-sm:flex-wrap") as row,
        ui.column().classes("gap-0 grow min-w-0"),
    ):
        ui.label(title).classes("text-lg font-semibold")
        ui.label(subtitle).classes(f"text-sm {MUTED}")
    return row


async def confirm(title: str, message: str, action: str, marker: str) -> bool:
    with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full gap-3 p-6 rounded-xl"):
        ui.label(title).classes("text-lg font-semibold")
        ui.label(message).classes(f"text-sm {MUTED}")
        with ui.row().classes("w-full justify-end gap-2 pt-2"):
            ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat no-caps")
            ui.button(action, color="negative", on_click=lambda: dialog.submit(True)).props("unelevated no-caps").mark(
                marker
            )
    result = await dialog
    dialog.delete()
    return bool(result)


def field_errors(exc: DomainError) -> tuple[str, str]:
    """Which form field a profile error belongs to, and its message."""
    text = str(exc)
    if isinstance(exc, Conflict):
        return "name", text
    field = exc.details.get("field")
    return (field if field in ("api_type", "base_url", "api_key", "model") else "name"), text


class LlmProfiles:
    def __init__(self, services: Services, workspace: WorkspacePublic) -> None:
        self.services = services
        self.workspace = workspace
        with ui.card().classes(SECTION).mark("llm-profiles"):
            with section_header(
                "LLM profiles",
                "The model this workspace's agents talk to: any OpenAI-compatible "
                "endpoint (OpenAI, Ollama, vLLM, LM Studio) or another MetaGPT api_type.",
            ):
                ui.button("New profile", icon="add", on_click=lambda: self.edit(None)).props(
                    "unelevated no-caps no-wrap"
                ).classes("shrink-0").mark("new-profile")
            self.note = (
                ui.row()
                .classes("w-full items-center gap-2 text-sm rounded-lg px-3 py-2 bg-amber-50 dark:bg-amber-500/10")
                .mark("demo-note")
            )
            self.list = ui.column().classes("w-full gap-0")

    async def refresh(self) -> None:
        profiles = await run.io_bound(self.services.llm_profiles.list, self.workspace.id)
        self.note.clear()
        with self.note:
            ui.icon("info", color="amber-8")
            if not profiles:
                ui.label("No profile yet: agents here use the")
                demo_model_chip()
                ui.label("— offline, canned answers, no key needed.")
            else:
                ui.label("No default profile: runs use the")
                demo_model_chip()
                ui.label("unless an agent's config names a profile.")
        self.note.set_visibility(not any(p.is_default for p in profiles))
        self.list.clear()
        with self.list:
            for profile in profiles:
                self._row(profile)

    def _row(self, profile: LlmProfilePublic) -> None:
        pid = profile.id
        with ui.row().classes(ROW + " no-wrap max-md:flex-wrap").mark(f"profile profile-{pid}"):
            star = ui.button(icon="star" if profile.is_default else "star_border", on_click=lambda: self._default(pid))
            star.props("flat round dense")
            with_props(
                star,
                {
                    "color": "amber-8" if profile.is_default else "grey",
                    "title": "Default profile" if profile.is_default else "Make this the default",
                },
            )
            star.mark(f"default-{pid}" + (" default-profile" if profile.is_default else ""))
            with ui.column().classes("gap-0 grow min-w-0"):
                with ui.row().classes("items-center gap-2"):
                    ui.label(profile.name).classes("font-medium").mark(f"profile-name-{pid}")
                    ui.label(profile.api_type).classes(MONO_CHIP)
                    ui.label(profile.model).classes("font-mono text-sm")
                details = [profile.base_url or "default endpoint"]
                details.append(f"key {profile.api_key_hint}" if profile.has_api_key else "no key")
                ui.label(" · ".join(details)).classes(f"text-xs {MUTED} break-all").mark(f"profile-details-{pid}")
                result = ui.label().classes("text-xs").mark(f"test-result-{pid}")
                result.set_visibility(False)
            with ui.row().classes("gap-1 no-wrap shrink-0"):
                test = (
                    ui.button("Test connection", icon="network_check").props("flat dense no-caps").mark(f"test-{pid}")
                )
                test.on_click(lambda: self._test(pid, test, result))
                ui.button(icon="edit", on_click=lambda: self.edit(profile)).props('flat round dense title="Edit"').mark(
                    f"edit-{pid}"
                )
                ui.button(icon="delete", on_click=lambda: self._delete(profile)).props(
                    'flat round dense color=negative title="Delete"'
                ).mark(f"delete-{pid}")

    async def _default(self, profile_id: uuid.UUID) -> None:
        await self._call(self.services.llm_profiles.update, profile_id, LlmProfileUpdate(is_default=True))

    async def _delete(self, profile: LlmProfilePublic) -> None:
        warning = " It is the default: runs will use the offline demo model." if profile.is_default else ""
        if await confirm(
            f"Delete {profile.name}?", "Agents that name it will fail to start." + warning, "Delete", "confirm-delete"
        ):
            await self._call(self.services.llm_profiles.delete, profile.id)
            ui.notify(f"Profile {profile.name} deleted")

    async def _call(self, method: Callable[..., Any], *args: Any) -> None:
        try:
            await run.io_bound(method, *args, scope=self.workspace.id)
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
        await self.refresh()

    async def _test(self, profile_id: uuid.UUID, button: ui.button, result: ui.label) -> None:
        button.props("loading")
        try:
            outcome = await run.io_bound(self.services.runtime.test_llm_profile, profile_id, scope=self.workspace.id)
        except DomainError as exc:
            outcome = {"ok": False, "message": str(exc)}
        finally:
            button.props(remove="loading")
        get = outcome.get if isinstance(outcome, dict) else lambda key, default=None: getattr(outcome, key, default)
        ok, message, seconds = bool(get("ok")), str(get("message", "")), get("seconds")
        timing = f" ({seconds:.1f} s)" if isinstance(seconds, int | float) else ""
        text = f"{'Connected' if ok else 'Failed'}{timing}: {message}"
        result.set_text(text)
        result.classes(replace=f"text-xs {'text-positive' if ok else 'text-negative'} break-all")
        result.set_visibility(True)
        ui.notify(text, type="positive" if ok else "negative", multi_line=True)

    async def edit(self, profile: LlmProfilePublic | None) -> None:
        dialog = ProfileDialog(self, profile).dialog
        saved = await dialog
        dialog.delete()
        if saved:
            await self.refresh()


class ProfileDialog:
    """Create (profile None) or edit a profile. A blank key on edit keeps the stored key."""

    def __init__(self, section: LlmProfiles, profile: LlmProfilePublic | None) -> None:
        self.section, self.profile = section, profile
        with ui.dialog() as self.dialog, ui.card().classes("w-[32rem] max-w-full gap-3 p-6 rounded-xl"):
            ui.label(f"Edit {profile.name}" if profile else "New LLM profile").classes("text-lg font-semibold")
            self.fields: dict[str, Any] = {}
            self.fields["name"] = ui.input(
                "Name", value=profile.name if profile else "", placeholder="e.g. local-llama"
            )
            self.fields["api_type"] = ui.select(
                list(LLM_API_TYPES), label="API type", value=profile.api_type if profile else "openai"
            )
            self.fields["model"] = ui.input(
                "Model", value=profile.model if profile else "", placeholder="e.g. gpt-4o-mini or llama3.1"
            )
            self.fields["base_url"] = ui.input(
                "Base URL (optional)",
                value=(profile.base_url or "") if profile else "",
                placeholder="e.g. http://localhost:11434/v1",
            ).props('hint="Empty: the provider\'s default endpoint"')
            keep = profile is not None and profile.has_api_key
            self.fields["api_key"] = ui.input(
                "API key" + (" (leave blank to keep)" if keep else " (optional)"),
                password=True,
                password_toggle_button=True,
                placeholder=f"stored: {profile.api_key_hint}" if keep and profile else "",
            ).props("autocomplete=new-password")
            for name, element in self.fields.items():
                element.props("outlined dense").classes("w-full").mark(f"profile-{name.replace('_', '-')}")
            self.remove_key = ui.checkbox("Remove the stored key").mark("profile-remove-key")
            self.remove_key.set_visibility(keep)
            self.default = ui.switch(
                "Default profile of this workspace", value=profile.is_default if profile else False
            ).mark("profile-default")
            with ui.row().classes("w-full justify-end gap-2 pt-2"):
                ui.button("Cancel", on_click=self.dialog.close).props("flat no-caps")
                ui.button("Save" if profile else "Create", on_click=self.save).props("unelevated no-caps").mark(
                    "profile-save"
                )

    async def save(self) -> None:
        for element in self.fields.values():
            element.error = None
        values = {name: element.value for name, element in self.fields.items()}
        key = (values["api_key"] or "").strip()
        services, scope = self.section.services, self.section.workspace.id
        try:
            if self.profile is None:
                data: Any = LlmProfileCreate(
                    name=values["name"] or "",
                    api_type=values["api_type"] or "",
                    model=values["model"] or "",
                    base_url=values["base_url"] or None,
                    api_key=SecretStr(key) if key else None,
                    is_default=self.default.value,
                )
                call: Callable[[], Any] = lambda: services.llm_profiles.create(scope, data)  # noqa: E731
            else:
                data = LlmProfileUpdate(
                    name=values["name"] or "",
                    api_type=values["api_type"] or "",
                    model=values["model"] or "",
                    base_url=values["base_url"] or "",
                    api_key=SecretStr(key) if key else (SecretStr("") if self.remove_key.value else None),
                    is_default=self.default.value,
                )
                profile_id = self.profile.id
                call = lambda: services.llm_profiles.update(profile_id, data, scope=scope)  # noqa: E731
        except ValidationError as exc:
            for name, message in validation_messages(exc).items():
                if name in self.fields:
                    self.fields[name].error = message
            return
        try:
            saved = await run.io_bound(call)
        except (Conflict, InvalidInput) as exc:
            name, message = field_errors(exc)
            self.fields[name].error = message
            return
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            return
        ui.notify(f"Profile {saved.name} saved", type="positive")
        self.dialog.submit(True)


class Tokens:
    def __init__(self, services: Services, workspace: WorkspacePublic) -> None:
        self.services = services
        self.workspace = workspace
        with ui.card().classes(SECTION).mark("api-tokens"):
            with section_header(
                "API tokens",
                "For the REST API and the event stream: "
                "Authorization: Bearer <token>. A token is shown once, when it is created.",
            ):
                ui.button("New token", icon="add", on_click=self._ask_name).props("unelevated no-caps no-wrap").classes(
                    "shrink-0"
                ).mark("new-token")
            self.list = ui.column().classes("w-full gap-0")

    async def refresh(self) -> None:
        tokens = await run.io_bound(self.services.tokens.list, self.workspace.id)
        self.list.clear()
        with self.list:
            if not tokens:
                ui.label("No tokens yet.").classes(f"text-sm {MUTED}").mark("no-tokens")
            for token in reversed(tokens):  # newest first
                self._row(token)

    def _row(self, token: TokenPublic) -> None:
        with ui.row().classes(ROW + " no-wrap").mark(f"token token-{token.id}"):
            ui.icon("key_off" if token.revoked else "key", color="grey" if token.revoked else "primary").classes(
                "text-xl"
            )
            with ui.column().classes("gap-0 grow min-w-0"):
                with ui.row().classes("items-center gap-2"):
                    ui.label(token.name).classes(
                        "font-medium" + (" line-through text-slate-400" if token.revoked else "")
                    )
                    ui.label(f"{token.prefix}…").classes(MONO_CHIP).mark(f"token-prefix-{token.id}")
                    if token.revoked:
                        ui.chip("revoked", color="grey-4").props("dense square").mark(f"token-revoked-{token.id}")
                parts = [f"created {ago(token.created_at)}", f"last used {ago(token.last_used_at)}"]
                if token.revoked_at:
                    parts.append(f"revoked {ago(token.revoked_at)}")
                ui.label(" · ".join(parts)).classes(f"text-xs {MUTED}")
            if not token.revoked:
                ui.button("Revoke", on_click=lambda: self._revoke(token)).props(
                    "flat dense no-caps color=negative"
                ).mark(f"revoke-{token.id}")

    async def _ask_name(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full gap-3 p-6 rounded-xl"):
            ui.label("New API token").classes("text-lg font-semibold")
            name = ui.input("Name", value="api", placeholder="e.g. ci or my-script").props("outlined dense autofocus")
            name.classes("w-full").mark("token-name")
            ui.label("The name shows in lists and as the actor of changes made with the token.").classes(
                f"text-xs {MUTED}"
            )

            async def create() -> None:
                try:
                    token, secret = await run.io_bound(self.services.tokens.create, self.workspace.id, name.value or "")
                except DomainError as exc:
                    name.error = str(exc)
                    return
                dialog.submit((token, secret))

            name.on("keydown.enter", create)
            with ui.row().classes("w-full justify-end gap-2 pt-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Create", on_click=create).props("unelevated no-caps").mark("token-create")
        created = await dialog
        dialog.delete()
        if created:
            await self.refresh()
            await self._show_secret(*created)

    async def _show_secret(self, token: TokenPublic, secret: str) -> None:
        with ui.dialog().props("persistent") as dialog, ui.card().classes("w-[34rem] max-w-full gap-3 p-6 rounded-xl"):
            with ui.row().classes("items-center gap-2"):
                ui.icon("key", color="primary").classes("text-2xl")
                ui.label(f"Token {token.name} created").classes("text-lg font-semibold")
            with ui.row().classes(
                "w-full items-center gap-2 no-wrap rounded-lg px-3 py-2 bg-slate-100 dark:bg-slate-700"
            ):
                ui.label(secret).classes("font-mono text-sm break-all select-all grow").mark("token-secret")
                ui.button(icon="content_copy", on_click=lambda: self._copy(secret)).props(
                    'flat round dense title="Copy"'
                ).mark("copy-token")
            with ui.row().classes("items-center gap-2 text-sm text-amber-800 dark:text-amber-300 no-wrap"):
                ui.icon("warning")
                ui.label("Copy it now: it is stored only as a hash and will never be shown again.")
            with ui.row().classes("w-full justify-end pt-2"):
                ui.button("Done", on_click=dialog.close).props("unelevated no-caps").mark("token-done")
        await dialog
        dialog.delete()  # the secret leaves the page with its dialog

    @staticmethod
    def _copy(secret: str) -> None:
        ui.clipboard.write(secret)
        ui.notify("Copied to the clipboard", type="positive")

    async def _revoke(self, token: TokenPublic) -> None:
        if not await confirm(
            f"Revoke {token.name}?",
            "Clients using this token are refused at once. This cannot be undone.",
            "Revoke",
            "confirm-revoke",
        ):
            return
        try:
            await run.io_bound(self.services.tokens.revoke, token.id, scope=self.workspace.id)
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
        else:
            ui.notify(f"Token {token.name} revoked")
        await self.refresh()


def workspace_section(services: Services, workspace: WorkspacePublic) -> None:
    async def save(event: Any) -> None:
        enabled = bool(event.value)
        try:
            await run.io_bound(
                services.workspaces.update, workspace.id, WorkspaceUpdate(settings={CODE_EXECUTION: enabled})
            )
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            return
        ui.notify(f"Code execution {'on' if enabled else 'off'}", type="positive")

    with ui.card().classes(SECTION).mark("workspace-settings"):
        section_header("Workspace", f"{workspace.name} ({workspace.slug})")
        with ui.row().classes("w-full items-center gap-3 no-wrap"):
            with ui.column().classes("gap-0 grow"):
                ui.label("Code execution").classes("font-medium")
                ui.label(
                    "Off by default. When on, the QA engineer's generated code runs in a bubblewrap sandbox: "
                    "only the run's own folder is writable, no network while it runs (installs take plain "
                    "`name==version` packages from the package index only), no server data, home or "
                    "environment, with CPU, memory, process, file-size and time limits."
                ).classes(f"text-sm {MUTED}")
            ui.switch(value=code_execution_enabled(workspace.settings), on_change=save).props(
                'aria-label="Code execution"'
            ).mark("code-execution")


@router.get("/settings/export/{workspace_id}", include_in_schema=False)
def export_download(workspace_id: uuid.UUID) -> StreamingResponse:
    """The bundle, streamed as it is made (behind the dashboard login when a password is set)."""
    services = app_services()
    workspace = services.workspaces.get(workspace_id)
    return StreamingResponse(
        services.bundles.export_chunks(workspace.id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{workspace.slug}.agentdeck"'},
    )


class Bundles:
    """Export this workspace to a bundle; import a bundle as a new workspace (issue 17).

    The upload shows its own progress bar (Quasar's uploader); the import then reports rows
    written from its worker thread into `self.done`, which a timer copies to the progress bar
    (NiceGUI elements are touched on the event loop only)."""

    def __init__(self, services: Services, workspace: WorkspacePublic) -> None:
        self.services = services
        self.workspace = workspace
        self.done = (0, 0)
        with ui.card().classes(SECTION).mark("bundles"):
            section_header(
                "Export and import",
                "A bundle holds the workspace with its whole history: agents, context versions, messages, runs "
                "and their files, LLM profiles without their keys. API tokens stay here.",
            )
            with ui.row().classes("w-full items-center gap-3"):
                ui.button(
                    f"Download {workspace.slug}.agentdeck",
                    icon="download",
                    on_click=lambda: ui.download.from_url(f"/settings/export/{workspace.id}"),
                ).props("outline no-caps").mark("bundle-export")
                ui.label("Your browser shows the download's progress.").classes(f"text-sm {MUTED}")
            ui.separator()
            ui.label("Import a bundle as a new workspace").classes("font-medium")
            self.slug = (
                ui.input("New slug (optional)", placeholder="the bundle's own slug")
                .props("outlined dense")
                .classes("w-72")
                .mark("bundle-import-slug")
            )
            self.upload = (
                ui.upload(label="Choose a .agentdeck file", auto_upload=True, on_upload=self.imported)
                .props('accept=".agentdeck,.zip" flat bordered')
                .classes("w-full max-w-xl")
                .mark("bundle-upload")
            )
            self.progress = ui.linear_progress(value=0, show_value=False, size="8px").props("rounded")
            self.progress.mark("bundle-import-progress")
            self.progress.set_visibility(False)
            self.result = ui.label().classes("text-sm whitespace-pre-wrap").mark("bundle-import-result")
        self.timer = ui.timer(0.3, self._show_progress, active=False)

    def _report(self, done: int, total: int) -> None:  # called from the import's thread
        self.done = (done, total)

    def _show_progress(self) -> None:
        done, total = self.done
        self.progress.set_value(done / total if total else 0)

    async def imported(self, event: Any) -> None:
        spool = self.services.settings.data_dir / "tmp"
        spool.mkdir(parents=True, exist_ok=True)
        path = spool / f"upload-{uuid.uuid4().hex}.agentdeck"
        self.result.classes(remove="text-negative text-positive")
        try:
            await event.file.save(path)
            self.done = (0, 0)
            self.progress.set_visibility(True)
            self.timer.activate()
            new_slug = (self.slug.value or "").strip() or None
            result = await run.io_bound(
                self.services.bundles.import_file, path, new_slug, "user", progress=self._report
            )
        except DomainError as exc:
            self.result.set_text(f"Not imported: {exc}")
            self.result.classes("text-negative")
            return
        finally:
            path.unlink(missing_ok=True)
            self.timer.deactivate()
            self.upload.reset()
        if result is None:
            return
        self.progress.set_value(1)
        rows = sum(result.rows.values())
        self.result.set_text(f"Imported workspace {result.slug}: {rows:,} rows and {result.files:,} run files.")
        self.result.classes("text-positive")
        ui.notify(f"Workspace {result.slug} imported: switch to it in the header", type="positive")


@router.page("/settings")
async def settings_page() -> None:
    services = app_services()
    with frame(services, "Settings") as workspace:
        profiles = LlmProfiles(services, workspace)
        tokens = Tokens(services, workspace)
        workspace_section(services, workspace)
        await profiles.refresh()
        await tokens.refresh()
        Bundles(services, workspace)
