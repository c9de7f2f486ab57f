"""An agent's message thread: the latest page, older pages on demand, live arrivals, a composer.

    thread = MessageThread(agent, scope)
    await thread.load_latest()
    live events: thread.handle(event)

- Only pages are ever read (keyset `before` cursors), never the whole thread: a thread of
  100,000 messages opens as fast as an empty one. At most MAX_RENDERED messages stay rendered;
  loading older pages past that drops the newest ones, and "jump to latest" brings them back.
- The scroller is a `flex-col-reverse` box: the browser keeps it anchored at the bottom, so an
  arriving message stays in view when the reader is at the bottom, and a page prepended at the
  top does not move what the reader is looking at. Reaching the top loads the previous page; a
  "Load older" button at the top does the same for mice, keyboards and short threads.
- Agent output is untrusted: message content always goes through `widgets.safe_markdown`; the
  header is our own escaped markup.
- Live arrivals are appended, never a re-render of the thread; a message reaching many tabs is
  validated once and its markdown rendered and sanitized once (`widgets.safe_markdown` caches).
- `llm_token` events grow a "typing" bubble that the stored reply replaces; `agent_activity`
  events show what the agent is doing under the thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from nicegui import background_tasks, run, ui

from core.errors import DomainError
from core.event_schema import AgentActivity, LlmToken
from core.events import EventOut, EventType
from core.messages import MessagePublic, thread_cursor
from core.schemas import AgentPublic
from core.services import Services
from ui.format import markup, message_header
from ui.safe_props import with_props
from ui.widgets import safe_markdown

PAGE_SIZE = 30
MAX_RENDERED = 300
ANSWERING = "The agent is answering — a message sent now is answered next, in turn."
# Say so rather than let a message go unanswered silently.
BUSY_IN_A_RUN = "The agent is busy in a team run — a message sent now is kept but not answered."

# Pixels from the top of the scroller at which the previous page is fetched.
TOP_THRESHOLD = 160
TYPING_FLUSH_SECONDS = 0.15
MAX_TYPING_CHARS = 20_000


# Asks for the previous page when the reader reaches the top (or clicks "Load older"), once at a
# time: it notes which message is first and where, so the page can put it back in place after the
# prepend — a browser keeps a box scrolled to the very top pinned there, which would otherwise
# trigger the next page, and the next, down the whole thread.
_OLDER_JS = """(e) => {{
    const s = getHtmlElement({scroller});
    if (!s || (s.__olderAsked && Date.now() - s.__olderAsked < 5000)) return;
    if (e.type === 'scroll' && s.scrollHeight - s.clientHeight + s.scrollTop >= {threshold}) return;
    const first = getHtmlElement({messages})?.firstElementChild;
    s.__anchor = first ? {{id: first.id, top: first.getBoundingClientRect().top - s.getBoundingClientRect().top}} : null;
    s.__olderAsked = Date.now();
    emit();
}}"""
_OLDER_DONE_JS = """requestAnimationFrame(() => {{
    const s = getHtmlElement({scroller});
    if (!s) return;
    const a = {restore} && s.__anchor && document.getElementById(s.__anchor.id);
    if (a) s.scrollTop += a.getBoundingClientRect().top - s.getBoundingClientRect().top - s.__anchor.top;
    s.__anchor = null;
    setTimeout(() => {{ s.__olderAsked = 0; }}, 100);
}});"""

_BUBBLE = "max-w-[85%] rounded-2xl px-4 py-2 shadow-sm flex flex-col gap-1"
_MINE = f"{_BUBBLE} self-end bg-indigo-50 dark:bg-indigo-500/20"
_THEIRS = f"{_BUBBLE} self-start bg-[#fff] dark:bg-slate-800 border border-slate-200 dark:border-slate-700"
_SYSTEM = f"{_BUBBLE} self-center bg-slate-100 dark:bg-slate-700/60 text-sm"


# The message of a recent `agent_message` event, by message id: every tab showing the thread gets
# the same event, and validates it once rather than once per tab.
_EVENT_MESSAGES: OrderedDict[str, MessagePublic] = OrderedDict()
_EVENT_MESSAGES_KEPT = 256


def _message_of(event: EventOut) -> MessagePublic:
    data = event.data["message"]
    key = str(data.get("id")) if isinstance(data, dict) else ""
    message = _EVENT_MESSAGES.get(key)
    if message is None or message.seq != data.get("seq"):
        message = MessagePublic.model_validate(data)
        _EVENT_MESSAGES[key] = message
        while len(_EVENT_MESSAGES) > _EVENT_MESSAGES_KEPT:
            _EVENT_MESSAGES.popitem(last=False)
    return message


class MessageThread:
    """The thread of one agent for one browser client. Call `build()` inside a container."""

    def __init__(self, services: Services, agent: AgentPublic, scope: uuid.UUID) -> None:
        self.services = services
        self.agent = agent
        self.scope = scope
        self.rendered: deque[tuple[int, ui.element]] = deque()
        self.has_older = False
        self.at_latest = True  # the newest message of the thread is rendered
        self.missed = 0  # live arrivals not shown because older pages are on screen
        self.loading = False
        self.typing_text = ""
        self.typing_sender = ""
        self._flush_handle: asyncio.TimerHandle | None = None
        self.on_activate: Callable[[], Awaitable[None]] | None = None

    # -- layout ----------------------------------------------------------------------------
    def build(self) -> None:
        with ui.column().classes("w-full gap-2"):
            self.scroller = (
                ui.element("div")
                .classes(
                    "w-full h-[calc(100vh-26rem)] min-h-64 overflow-y-auto flex flex-col-reverse rounded-xl "
                    "bg-slate-100/70 dark:bg-slate-900/40 border border-slate-200 dark:border-slate-700"
                )
                .mark("thread-scroller")
            )
            with self.scroller, ui.column().classes("w-full gap-3 p-4"):
                with ui.row().classes("w-full justify-center"):
                    self.older_button = (
                        ui.button("Load older messages", icon="expand_less")
                        .props("flat dense no-caps")
                        .mark("thread-load-older")
                    )
                    self.beginning = ui.label("Beginning of the conversation").classes("text-xs text-slate-400")
                self.empty = ui.label("No messages yet. Say hello below.").classes(
                    "self-center text-sm text-slate-500 py-8"
                )
                self.messages = ui.column().classes("w-full gap-3").mark("thread-messages")
                older_js = _OLDER_JS.format(
                    scroller=self.scroller.id, messages=self.messages.id, threshold=TOP_THRESHOLD
                )
                self.scroller.on("scroll", self._older_asked, js_handler=older_js)
                self.older_button.on("click", self._older_asked, js_handler=older_js)
                with ui.element("div").classes(_THEIRS + " opacity-80").mark("thread-typing") as self.typing:
                    self.typing_header = ui.label().classes("text-sm font-semibold")
                    self.typing_body = ui.label().classes("whitespace-pre-wrap break-words")
                self.typing.set_visibility(False)
            with ui.row().classes("w-full items-center gap-2 min-h-6"):
                self.activity = ui.label().classes("text-xs text-slate-500 italic").mark("thread-activity")
                ui.space()
                self.latest_button = (
                    ui.button("Jump to latest", icon="south", on_click=self.jump_to_latest)
                    .props("dense rounded unelevated no-caps color=primary size=sm")
                    .mark("thread-jump-latest")
                )
                self.latest_button.set_visibility(False)
            self._build_composer()
        self._update_chrome()

    def _build_composer(self) -> None:
        with ui.row().classes("w-full items-center gap-2 no-wrap").mark("thread-idle-hint") as self.idle_hint:
            ui.icon("info", size="xs").classes("text-amber-600")
            self.idle_text = ui.label().classes("text-sm text-amber-700 dark:text-amber-300")
            self.activate_button = (
                ui.button("Activate", on_click=self._activate)
                .props("flat dense no-caps color=primary")
                .mark("thread-activate")
            )
        with ui.row().classes("w-full items-end gap-2 no-wrap"):
            self.composer = (
                ui.textarea(placeholder=f"Message {self.agent.name}…  (Enter sends, Shift+Enter adds a line)")
                .props("outlined autogrow dense")
                .classes("grow")
                .mark("composer")
                .on("keydown.enter.exact.prevent", self.send)
            )
            self.send_button = (
                ui.button(icon="send", on_click=self.send).props("round unelevated color=primary").mark("composer-send")
            )
            self.send_button.tooltip("Send (Enter)")
        self.send_error = ui.label().classes("text-sm text-negative").mark("composer-error")
        self.send_error.set_visibility(False)
        self.set_status(self.agent.status, self.agent.allowed_transitions)

    async def _say_why_busy(self) -> None:
        answering = await run.io_bound(self.services.runtime.chat_in_progress, self.agent.id)
        if self.agent.status == "busy" and not self.idle_text.is_deleted:
            self.idle_text.text = ANSWERING if answering else BUSY_IN_A_RUN

    # -- loading ---------------------------------------------------------------------------
    async def load_latest(self) -> None:
        page = await run.io_bound(self.services.messages.list, self.agent.id, scope=self.scope, limit=PAGE_SIZE)
        self.messages.clear()
        self.rendered.clear()
        for message in reversed(page.items):
            self._append(message)
        self.has_older = page.next_cursor is not None
        self.at_latest = True
        self.missed = 0
        self._update_chrome()

    async def _older_asked(self) -> None:
        prepended = False
        try:
            prepended = await self.load_older()
        finally:  # always answer, so the browser may ask again
            restore = "true" if prepended else "false"
            ui.run_javascript(_OLDER_DONE_JS.format(scroller=self.scroller.id, restore=restore))

    async def load_older(self) -> bool:
        """Prepend the previous page; False if there was nothing to do."""
        if self.loading or not self.has_older or not self.rendered:
            return False
        self.loading = True
        try:
            page = await run.io_bound(
                self.services.messages.list,
                self.agent.id,
                scope=self.scope,
                limit=PAGE_SIZE,
                before=thread_cursor(self.rendered[0][0]),
            )
        finally:
            self.loading = False
        prepended: list[tuple[int, ui.element]] = []
        with self.messages:
            for index, message in enumerate(reversed(page.items)):  # oldest first
                element = self._render(message)
                element.move(self.messages, target_index=index)
                prepended.append((message.seq, element))
        self.rendered.extendleft(reversed(prepended))
        self.has_older = page.next_cursor is not None
        while len(self.rendered) > MAX_RENDERED:  # drop the newest, far below the reader
            _, element = self.rendered.pop()
            self.messages.remove(element)
            self.at_latest = False
        self._update_chrome()
        return True

    async def jump_to_latest(self) -> None:
        await self.load_latest()
        self.scroll_to_bottom()

    def scroll_to_bottom(self) -> None:
        # In a column-reverse box, 0 is the bottom. The box may just have shrunk (pinned to its
        # top): hold back "load older" until it has settled at the bottom.
        ui.run_javascript(
            f"const s = getHtmlElement({self.scroller.id}); if (s) {{ s.__olderAsked = Date.now(); "
            "s.__anchor = null; s.scrollTop = 0; setTimeout(() => { s.__olderAsked = 0; }, 400); }"
        )

    # -- rendering -------------------------------------------------------------------------
    def _render(self, message: MessagePublic) -> ui.element:
        style = _MINE if message.role == "user" else _SYSTEM if message.role == "system" else _THEIRS
        with with_props(ui.element("div").classes(style), {"data-seq": message.seq}).mark("message") as element:
            markup(message_header(message, with_role=True))
            safe_markdown(message.content).classes("break-words min-w-0 text-[15px]").mark("message-content")
        return element

    def _append(self, message: MessagePublic) -> None:
        with self.messages:
            self.rendered.append((message.seq, self._render(message)))
        while len(self.rendered) > MAX_RENDERED:
            _, element = self.rendered.popleft()
            self.messages.remove(element)
            self.has_older = True

    def _update_chrome(self) -> None:
        self.older_button.set_visibility(self.has_older)
        self.beginning.set_visibility(not self.has_older and bool(self.rendered))
        self.empty.set_visibility(not self.rendered)
        self.latest_button.set_visibility(not self.at_latest)
        self.latest_button.text = f"{self.missed} new — jump to latest" if self.missed else "Jump to latest"

    @property
    def last_seq(self) -> int:
        return self.rendered[-1][0] if self.rendered else 0

    # -- live ------------------------------------------------------------------------------
    async def handle(self, event: EventOut) -> None:
        if event.type == EventType.AGENT_MESSAGE:
            self.add_message(_message_of(event))
        elif event.type == EventType.LLM_TOKEN:
            token = LlmToken.of(event)
            self._on_token(token.agent_name or self.agent.name, token.text)
        elif event.type == EventType.AGENT_ACTIVITY:
            self._on_activity(AgentActivity.of(event))
        elif event.type == EventType.RESUME:
            await self.load_latest()

    def add_message(self, message: MessagePublic) -> None:
        """A message from an event or our own send; duplicates and old ones are ignored."""
        if message.seq <= self.last_seq:
            return
        if message.role != "user":
            self._stop_typing()
            self.activity.text = ""
        if not self.at_latest:
            self.missed += 1
        else:
            self._append(message)
        self._update_chrome()

    def _on_token(self, sender: str, text: str) -> None:
        if not self.at_latest or not text:
            return
        if sender != self.typing_sender:
            self.typing_sender, self.typing_text = sender, ""
            self.typing_header.text = f"{sender} is typing…"
        self.typing_text = (self.typing_text + text)[-MAX_TYPING_CHARS:]
        self.typing.set_visibility(True)
        # One update per TYPING_FLUSH_SECONDS, not one per token (no ui.timer: a timer makes the
        # page wait for the browser's connection before it is served).
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(TYPING_FLUSH_SECONDS, self._flush_typing)

    def _flush_typing(self) -> None:
        self._flush_handle = None
        if not self.typing_body.is_deleted:
            self.typing_body.text = self.typing_text

    def _stop_typing(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.typing_text, self.typing_sender = "", ""
        self.typing_body.text = ""
        self.typing.set_visibility(False)

    def _on_activity(self, update: AgentActivity) -> None:
        self.activity.text = f"{update.agent_name or self.agent.name} is {update.describe()}"

    def set_status(self, status: str, allowed: list[str]) -> None:
        """The agent's status changed: the idle hint, and the activity line once it settles."""
        self.agent = self.agent.model_copy(update={"status": status, "allowed_transitions": allowed})
        if status != "busy":
            self.activity.text = ""
            if status != "active":
                self._stop_typing()
        self.idle_hint.set_visibility(status != "active")
        if status == "busy":
            # Answering a chat, or busy in a team run (which answers chat only between runs): which
            # one is a read of the durable queue, kept off the event loop.
            self.idle_text.text = "The agent is busy."
            background_tasks.create(self._say_why_busy(), name=f"thread-busy-{self.agent.id}")
        else:
            self.idle_text.text = (
                f"The agent is {status} — activate it to get answers; your message will be kept in the thread."
            )
        self.activate_button.set_visibility(status != "busy" and "active" in allowed and self.on_activate is not None)

    async def _activate(self) -> None:
        if self.on_activate is not None:
            await self.on_activate()

    # -- sending ---------------------------------------------------------------------------
    async def send(self) -> None:
        text = self.composer.value or ""
        if not text.strip() or not self.composer.enabled:
            return
        self.composer.disable()
        self.send_button.disable()
        self.send_error.set_visibility(False)
        try:
            message = await run.io_bound(
                self.services.runtime.send_message, self.agent.id, text, actor="user", scope=self.scope
            )
        except DomainError as exc:
            self.send_error.text = f"Not sent: {exc}"
            self.send_error.set_visibility(True)
            return  # the text stays in the composer
        finally:
            self.composer.enable()
            self.send_button.enable()
        self.composer.value = ""
        if not self.at_latest:
            await self.load_latest()
        else:
            self.add_message(message)
        self.scroll_to_bottom()
