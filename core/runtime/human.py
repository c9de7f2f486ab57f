"""People in MetaGPT teams: a person plays a role, or approves what a role publishes (issue #13).

MetaGPT's own answer, `is_human=True`, swaps the role's LLM for `HumanProvider`, which reads
stdin (and exits the process on "exit"). Here:

- `PersonLLM` is a MetaGPT `BaseLLM` whose every completion is a request put to a person through
  `core.run_inputs` (the row holds the prompt the role would have sent); the answer comes back
  as the completion and MetaGPT goes on with it exactly as with a model's text.
- `reviewed` runs a role's action and, when the member needs approval, holds the message it is
  about to publish: approve, edit (the edited text is published) or reject with feedback (the
  rejected version is recorded, marked, and the action runs again with the feedback appended to
  each of its prompts, see `with_feedback`).

The wait is durable because the request row is the record: each request has a key naming the
point that asked (run, round, agent, kind, n-th in the round). A round replayed after a restart
asks again with the same keys and gets the stored answers, or goes on waiting for the pending one.
Waiting polls that row, so an answer given through any process is seen; cancelling the run
cancels the wait at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from metagpt.const import USE_CONFIG_TIMEOUT
from metagpt.logs import log_llm_stream
from metagpt.provider.base_llm import BaseLLM
from metagpt.schema import Message
from metagpt.utils.cost_manager import CostManager

from core.run_inputs import FEEDBACK_HEADING, InputRequest, RunInputPublic
from core.runtime.demo_llm import demo_llm_config
from core.runtime.observe import CURRENT_ACTION, CURRENT_AGENT, CURRENT_ROUND, AgentBinding

POLL_SECONDS = 0.25
NO_ANSWER = "no answer"


class NoAnswer(BaseException):
    """Nobody answered before the request's deadline. A BaseException, so MetaGPT's retry
    decorators (which catch Exception) don't ask again."""

    def __init__(self, request: RunInputPublic) -> None:
        super().__init__(NO_ANSWER)
        self.request = request


CURRENT_GATE: contextvars.ContextVar[PersonGate | None] = contextvars.ContextVar("agentdeck_gate", default=None)
FEEDBACK: contextvars.ContextVar[str | None] = contextvars.ContextVar("agentdeck_feedback", default=None)

Rejected = Callable[[AgentBinding, Message, RunInputPublic], None]


class PersonGate:
    """Puts one run's (or one chat answer's) requests to people and waits for their answers."""

    def __init__(
        self,
        services: Any,
        workspace_id: uuid.UUID,
        *,
        run_id: uuid.UUID | None,
        scope_key: str,
        timeout_seconds: int | None = None,
        approvers: frozenset[uuid.UUID] = frozenset(),
        on_rejected: Rejected | None = None,
    ) -> None:
        self.services = services
        self.workspace_id = workspace_id
        self.run_id = run_id
        self.scope_key = scope_key
        self.timeout_seconds = timeout_seconds
        self.approvers = approvers
        self.on_rejected = on_rejected
        self._asked: dict[tuple[int, uuid.UUID, str], int] = {}

    def needs_approval(self, agent: AgentBinding) -> bool:
        return agent.agent_id in self.approvers

    def _key(self, round_no: int, agent: AgentBinding, kind: str) -> str:
        slot = (round_no, agent.agent_id, kind)
        n = self._asked[slot] = self._asked.get(slot, 0) + 1
        return f"{self.scope_key}:r{round_no}:{agent.agent_id}:{kind}:{n}"

    async def ask(
        self,
        agent: AgentBinding,
        kind: str,
        *,
        prompt: list[dict[str, Any]] | None = None,
        proposed: str = "",
    ) -> RunInputPublic:
        """The request's answer, once a person gave it. Raises NoAnswer past its deadline."""
        round_no = CURRENT_ROUND.get() or 0
        request: RunInputPublic = await asyncio.to_thread(
            self.services.run_inputs.request,
            InputRequest(
                workspace_id=self.workspace_id,
                run_id=self.run_id,
                agent_id=agent.agent_id,
                agent_name=agent.name,
                key=self._key(round_no, agent, kind),
                kind=kind,  # type: ignore[arg-type]
                round=round_no,
                action=CURRENT_ACTION.get(),
                prompt=prompt or [],
                proposed=proposed,
                timeout_seconds=self.timeout_seconds,
            ),
        )
        while request.status == "pending":
            if request.expires_at is not None and datetime.now(UTC) >= request.expires_at:
                request = await asyncio.to_thread(self.services.run_inputs.close, request.id, "expired")
                break
            await asyncio.sleep(POLL_SECONDS)
            request = await asyncio.to_thread(self.services.run_inputs.get, request.id)
        if request.status != "answered":
            raise NoAnswer(request)
        return request


class PersonLLM(BaseLLM):
    """The LLM of a member played by a person: each completion is that person's answer."""

    def __init__(self) -> None:
        # A config only for BaseLLM's bookkeeping (costs at the demo model's zero price).
        self.config = demo_llm_config()
        self.model = "person"
        self.pricing_plan = "person"
        self.cost_manager: CostManager | None = None

    async def _answer(self, messages: list[dict[str, Any]]) -> str:
        gate, agent = CURRENT_GATE.get(), CURRENT_AGENT.get()
        if gate is None or agent is None:
            raise RuntimeError("a role played by a person runs only inside a run or chat with a person gate")
        request = await gate.ask(agent, "answer", prompt=[_plain(m) for m in messages])
        return request.answer

    async def _achat_completion(
        self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT
    ) -> dict[str, Any]:
        text = await self._answer(messages)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    async def acompletion(self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT) -> dict[str, Any]:
        return await self._achat_completion(messages, timeout=timeout)

    async def _achat_completion_stream(self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT) -> str:
        text = await self._answer(messages)
        log_llm_stream(text)
        log_llm_stream("\n")
        return text


def _plain(message: dict[str, Any] | Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "user", "content": str(message)}
    content = message.get("content", "")
    if isinstance(content, list):  # multimodal parts: keep the text ones
        content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return {"role": str(message.get("role", "user")), "content": str(content)}


def with_feedback(llm: BaseLLM) -> BaseLLM:
    """While FEEDBACK is set (a role redoing rejected work), each request of this LLM object
    carries the person's feedback after its last message."""
    for name in ("_achat_completion", "_achat_completion_stream"):
        original: Callable[..., Awaitable[Any]] = getattr(llm, name)
        setattr(llm, name, _with_feedback(original))
    return llm


def _with_feedback(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        feedback = FEEDBACK.get()
        if feedback:
            note = f"\n\n{FEEDBACK_HEADING}\n{feedback}\n\nRedo the work taking this feedback into account."
            messages = [*messages[:-1], {**messages[-1], "content": f"{messages[-1].get('content', '')}{note}"}]
        return await original(messages, *args, **kwargs)

    return call


async def reviewed(
    role: Any, agent: AgentBinding, message: Message | None, redo: Callable[[], Awaitable[Message]]
) -> Message | None:
    """The message a role is about to publish, held for approval when the member needs it:
    approved as is, edited, or rejected and redone (by `redo`) with the feedback, until approved."""
    gate = CURRENT_GATE.get()
    if gate is None or not gate.needs_approval(agent) or message is None:
        return message
    while True:
        decision = await gate.ask(agent, "approval", proposed=message.content)
        if decision.decision == "approve":
            return message
        if decision.decision == "edit":
            message.content = decision.answer
            return message
        # Rejected: recorded as such, forgotten by the role, redone with the feedback.
        if gate.on_rejected is not None:
            gate.on_rejected(agent, message, decision)
        _forget(role, message)
        token = FEEDBACK.set(decision.answer or "Please redo this.")
        try:
            message = await redo()
        finally:
            FEEDBACK.reset(token)
        if message is None:
            return message


def _forget(role: Any, message: Message) -> None:
    memory = getattr(getattr(role, "rc", None), "memory", None)
    if memory is not None and message in memory.storage:
        memory.delete(message)
