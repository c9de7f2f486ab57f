"""People in the loop on the dashboard (issue #13): the requests a run or a chat puts to a person.

- `InputPanel` shows the pending requests of a run, an agent or the whole workspace, each with its
  controls: a composer for a role a person plays (with the role's prompt, readable, and a button
  that starts from the answer format the prompt asks for), approve / edit / send back for a
  message held for approval. It follows the request events live: a request answered in another
  tab (or through the API) leaves this one at once.
- `pending_inputs_button` sits in every page's header: the number of requests waiting in the
  workspace, live, linking to the inbox page `/inputs`; a browser notification when a new one
  arrives (if the person allowed notifications: asked on the first click of the button).
- the inbox page itself is ui/inbox.py.

Texts of the requests come from LLMs and API clients: rendered only through `safe_markdown` or as
plain text, never into props or JavaScript.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from nicegui import run, ui

from core.errors import DomainError
from core.events import EventFilter, EventOut, EventType
from core.run_inputs import InputAnswer, RunInputPublic
from core.services import Services
from ui import live
from ui.format import when
from ui.palette import MUTED
from ui.state import ACTOR
from ui.widgets import safe_markdown

INPUT_EVENTS = frozenset({EventType.RUN_INPUT_REQUESTED, EventType.RUN_INPUT_ANSWERED})
# A fixed text: nothing of a request (written by an LLM or an API client) reaches JavaScript.
NOTIFY_JS = (
    "if (window.Notification && Notification.permission === 'granted') "
    "new Notification('AgentDeck', {body: 'An agent is waiting for your answer'});"
)
ASK_NOTIFY_JS = "if (window.Notification && Notification.permission === 'default') Notification.requestPermission();"


class InputCard:
    """One pending request and its controls."""

    def __init__(
        self, services: Services, request: RunInputPublic, on_answered: Callable[[RunInputPublic], None]
    ) -> None:
        self.services = services
        self.request = request
        self._on_answered = on_answered
        with ui.card().classes("w-full gap-2 border-l-4 border-amber-500").mark("input-card") as self.card:
            self.card.props["data-input-id"] = str(request.id)
            with ui.row().classes("w-full items-center gap-2"):
                ui.icon("front_hand" if request.kind == "answer" else "fact_check", color="warning")
                title = "Your turn as" if request.kind == "answer" else "Approve the work of"
                ui.label(f"{title} {request.agent_name}").classes("font-medium").mark("input-title")
                if request.action:
                    ui.label(f"· {request.action}").classes(f"text-sm {MUTED}")
                if request.round:
                    ui.label(f"· round {request.round}").classes(f"text-sm {MUTED}")
                ui.space()
                ui.label(when(request.created_at)).classes(f"text-xs {MUTED}")
            if request.run_id is not None:
                ui.link("Open the run", f"/runs/{request.run_id}").classes("text-xs").mark("input-run-link")
            self.error = ui.label().classes("text-sm text-negative").mark("input-error")
            self.error.set_visibility(False)
            if request.kind == "answer":
                self._build_answer()
            else:
                self._build_approval()

    def _build_answer(self) -> None:
        prompt = self.request.prompt
        with (
            ui.expansion("The prompt the role would have sent", icon="article", value=False)
            .classes("w-full text-sm")
            .mark("input-prompt")
        ):
            for message in prompt:
                ui.label(str(message.get("role", ""))).classes(f"text-xs uppercase tracking-wider {MUTED}")
                ui.label(str(message.get("content", ""))).classes(
                    "text-sm whitespace-pre-wrap break-words font-mono max-h-96 overflow-y-auto"
                )
        last = str(prompt[-1].get("content", "")) if prompt else ""
        ui.label(last[-600:]).classes("text-sm whitespace-pre-wrap break-words").mark("input-ask")
        self.text = (
            ui.textarea("Your answer", placeholder="What the role answers")
            .props("outlined autogrow")
            .classes("w-full font-mono")
            .mark("input-text")
        )
        with ui.row().classes("w-full justify-end gap-2"):
            if self.request.format_example:
                ui.button("Start from the format example", icon="content_paste", on_click=self._use_example).props(
                    "flat no-caps"
                ).mark("input-use-example")
            ui.button("Send answer", icon="send", on_click=self._send_answer).props("unelevated no-caps").mark(
                "input-send"
            )

    def _build_approval(self) -> None:
        ui.label("About to publish:").classes(f"text-xs uppercase tracking-wider {MUTED}")
        with ui.element("div").classes("w-full max-h-96 overflow-y-auto").mark("input-proposed"):
            safe_markdown(self.request.proposed)
        self.text = (
            ui.textarea("Edited message, or feedback when sending back")
            .props("outlined autogrow")
            .classes("w-full")
            .mark("input-text")
        )
        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Send back", icon="undo", on_click=lambda: self._decide("reject")).props(
                "outline no-caps color=negative"
            ).mark("input-reject")
            ui.button("Edit the text above", icon="edit", on_click=self._start_edit).props("flat no-caps").mark(
                "input-edit-start"
            )
            ui.button("Publish edited", icon="publish", on_click=lambda: self._decide("edit")).props(
                "outline no-caps"
            ).mark("input-edit")
            ui.button("Approve", icon="check", on_click=lambda: self._decide("approve")).props(
                "unelevated no-caps color=positive"
            ).mark("input-approve")

    def _use_example(self) -> None:
        self.text.value = self.request.format_example

    def _start_edit(self) -> None:
        self.text.value = self.request.proposed

    async def _send_answer(self) -> None:
        await self._submit(InputAnswer(text=self.text.value or ""))

    async def _decide(self, decision: str) -> None:
        text = self.text.value or None
        if decision == "reject" and not text:
            text = "Please redo this."
        await self._submit(InputAnswer(decision=decision, text=text))  # type: ignore[arg-type]

    async def _submit(self, answer: InputAnswer) -> None:
        self.error.set_visibility(False)
        try:
            done = await run.io_bound(self.services.run_inputs.answer, None, self.request.id, answer, ACTOR)
        except DomainError as exc:
            self.error.set_text(str(exc))
            self.error.set_visibility(True)
            return
        if done is not None:
            self._on_answered(done)


class InputPanel:
    """The pending requests of one run, one agent, or (neither given) the whole workspace."""

    def __init__(
        self,
        services: Services,
        workspace_id: uuid.UUID,
        *,
        run_id: uuid.UUID | None = None,
        agent_id: uuid.UUID | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.services = services
        self.workspace_id, self.run_id, self.agent_id = workspace_id, run_id, agent_id
        self.cards: dict[uuid.UUID, InputCard] = {}
        self.on_change = on_change
        self.column = ui.column().classes("w-full gap-3").mark("inputs")

    async def start(self) -> None:
        since = self.services.bus.pumped_seq
        pending = await run.io_bound(
            self.services.run_inputs.pending, self.workspace_id, run_id=self.run_id, agent_id=self.agent_id
        )
        for request in pending or []:
            self._add(request)
        self.on_change()
        flt = EventFilter(
            workspace_id=self.workspace_id, run_id=self.run_id, agent_id=self.agent_id, types=INPUT_EVENTS
        )
        live.subscribe(self.services.bus, flt, self.handle, since=since)

    def _add(self, request: RunInputPublic) -> None:
        if request.id in self.cards or request.status != "pending":
            return
        with self.column:
            self.cards[request.id] = InputCard(self.services, request, self._remove)
        self.on_change()

    def _remove(self, request: RunInputPublic) -> None:
        card = self.cards.pop(request.id, None)
        if card is not None:
            self.column.remove(card.card)
            self.on_change()

    def handle(self, event: EventOut) -> None:
        request = RunInputPublic.model_validate(event.data["input"])  # the embedded API model, whole
        if event.type == EventType.RUN_INPUT_REQUESTED:
            self._add(request)
        else:
            self._remove(request)


def pending_inputs_button(services: Services, workspace_id: uuid.UUID) -> None:
    """The header's count of requests waiting in the workspace, live; opens the inbox."""
    since = services.bus.pumped_seq
    count = services.run_inputs.pending_count(workspace_id)

    def open_inbox() -> None:
        ui.run_javascript(ASK_NOTIFY_JS)
        ui.navigate.to("/inputs")

    with ui.button(icon="front_hand", on_click=open_inbox).props("flat round dense").mark("pending-inputs") as button:
        button.props["aria-label"] = "Requests waiting for you"
        button.tooltip("Requests waiting for you")
        badge = ui.badge(str(count), color="warning").props("floating rounded").mark("pending-inputs-count")
    badge.set_visibility(count > 0)

    async def on_event(event: EventOut) -> None:
        fresh = await run.io_bound(services.run_inputs.pending_count, workspace_id)
        if fresh is None:
            return
        badge.set_text(str(fresh))
        badge.set_visibility(fresh > 0)
        if event.type == EventType.RUN_INPUT_REQUESTED:
            ui.run_javascript(NOTIFY_JS)

    live.subscribe(services.bus, EventFilter(workspace_id=workspace_id, types=INPUT_EVENTS), on_event, since=since)
