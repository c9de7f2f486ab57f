"""Watching MetaGPT work: which agent is acting, what it spends, what it publishes.

MetaGPT 0.8.2 has no callback API, so AgentDeck observes through its extension points:
- roles are built from dynamic subclasses (`observed_role_class`) whose `run`, `_think` and `_act`
  report to a `Recorder`, and whose `run` sets `CURRENT_AGENT` so everything the role triggers
  (LLM calls, streamed tokens, costs, published messages) is attributed to it;
- `RecordingEnvironment.publish_message` records every published message;
- `RecordingCostManager.update_cost` (called once per LLM request) attributes usage;
- each role's LLM object gets its HTTP entry points wrapped (`watch_llm`) to report
  "calling the LLM" and to turn a failed request into `LlmCallFailed`, which MetaGPT's own
  retry decorators don't catch (it is a BaseException), so one dead endpoint fails the run now
  instead of after an hour of retries;
- `metagpt.logs.set_llm_stream_logfunc` receives streamed chunks (a process-wide hook that looks
  up the current agent and recorder in context variables).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from metagpt.environment import Environment
from metagpt.logs import set_llm_stream_logfunc
from metagpt.provider.base_llm import BaseLLM
from metagpt.roles import Role
from metagpt.schema import Message
from metagpt.utils.cost_manager import CostManager

log = logging.getLogger(__name__)


@dataclass
class AgentBinding:
    """Who a MetaGPT role is in AgentDeck."""

    agent_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    role_kind: str
    config: dict[str, Any]
    context_version: int
    context: dict[str, Any]


class Recorder(Protocol):
    """What the observation hooks report to (implemented in core/runtime/engine.py)."""

    def on_activity(self, agent: AgentBinding, activity: str, detail: dict[str, Any]) -> None: ...
    def on_acting(self, agent: AgentBinding) -> None: ...
    def on_role_done(self, agent: AgentBinding) -> None: ...
    def on_usage(self, agent: AgentBinding | None, prompt: int, completion: int, cost: float) -> None: ...
    def on_token(self, agent: AgentBinding, text: str) -> None: ...
    def on_published(self, agent: AgentBinding | None, message: Message) -> None: ...
    def on_llm_failure(self, agent: AgentBinding | None, error: BaseException) -> None: ...


CURRENT_AGENT: contextvars.ContextVar[AgentBinding | None] = contextvars.ContextVar("agentdeck_agent", default=None)
CURRENT_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("agentdeck_recorder", default=None)


class LlmCallFailed(BaseException):
    """An LLM request failed after the client's own retries; ends the chat or run."""

    def __init__(self, agent: AgentBinding | None, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.agent = agent
        self.error = error


def _stream_hook(text: str) -> None:
    agent, recorder = CURRENT_AGENT.get(), CURRENT_RECORDER.get()
    if agent is not None and recorder is not None and text:
        recorder.on_token(agent, text)


def install_stream_hook() -> None:
    set_llm_stream_logfunc(_stream_hook)


class RecordingCostManager(CostManager):
    """Shared by the roles of one run (MetaGPT checks the budget on it); attributes each
    request's tokens and cost to the agent whose task made it."""

    def update_cost(self, prompt_tokens: int, completion_tokens: int, model: str) -> None:
        before = self.total_cost
        super().update_cost(prompt_tokens, completion_tokens, model)
        recorder = CURRENT_RECORDER.get()
        if recorder is not None and (prompt_tokens or completion_tokens):
            recorder.on_usage(CURRENT_AGENT.get(), prompt_tokens, completion_tokens, self.total_cost - before)


def watch_llm(llm: BaseLLM) -> BaseLLM:
    """Wrap the request methods of this LLM object (not its class) to report and fail fast."""
    for name in ("_achat_completion", "_achat_completion_stream"):
        original: Callable[..., Awaitable[Any]] = getattr(llm, name)
        setattr(llm, name, _watched(original, name))
    return llm


def _watched(original: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        agent, recorder = CURRENT_AGENT.get(), CURRENT_RECORDER.get()
        if agent is not None and recorder is not None:
            recorder.on_activity(agent, "calling_llm", {"stream": name.endswith("stream")})
        try:
            return await original(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if recorder is not None:
                recorder.on_llm_failure(agent, exc)
            raise LlmCallFailed(agent, exc) from exc

    return call


class _ObservedRole:
    """Mixed in front of a MetaGPT Role class. The role carries its AgentBinding as the extra
    attribute `agentdeck` (not annotated here: pydantic would make it a required field)."""

    async def run(self, with_message: Any = None) -> Message | None:
        token = CURRENT_AGENT.set(self.agentdeck)
        try:
            return await super().run(with_message)  # type: ignore[misc]
        finally:
            recorder = CURRENT_RECORDER.get()
            if recorder is not None:
                recorder.on_role_done(self.agentdeck)
            CURRENT_AGENT.reset(token)

    async def _think(self) -> bool:
        recorder = CURRENT_RECORDER.get()
        if recorder is not None:
            recorder.on_activity(self.agentdeck, "thinking", {})
        return await super()._think()  # type: ignore[misc]

    async def _act(self) -> Message:
        from core.runtime.human import CURRENT_ACTION

        recorder = CURRENT_RECORDER.get()
        todo = self.rc.todo
        action = getattr(todo, "name", "") or type(todo).__name__
        if recorder is not None:
            recorder.on_acting(self.agentdeck)
            recorder.on_activity(self.agentdeck, "acting", {"action": action})
        CURRENT_ACTION.set(action)
        self.agentdeck_last_todo = todo
        return await super()._act()  # type: ignore[misc]

    async def react(self) -> Message:
        from core.runtime.human import reviewed

        # What react returns is what the role publishes: a member that needs approval publishes
        # only what a person approved; a rejected message is redone by its last action.
        message = await super().react()  # type: ignore[misc]
        return await reviewed(self, self.agentdeck, message, self._redo_last_action)

    async def _redo_last_action(self) -> Message:
        self.rc.todo = self.agentdeck_last_todo
        try:
            return await self._act()
        finally:
            self.rc.todo = None


_observed_classes: dict[type[Role], type[Role]] = {}


def observed_role_class(cls: type[Role]) -> type[Role]:
    """`cls` with the observation hooks in front of it (cached per class)."""
    if cls not in _observed_classes:
        _observed_classes[cls] = type(f"Observed{cls.__name__}", (_ObservedRole, cls), {"__module__": __name__})
    return _observed_classes[cls]


class RecordingEnvironment(Environment):
    """Records every published message; runs a round as a task group so one role's failure
    cancels the others instead of leaving them calling the LLM in the background."""

    def publish_message(self, message: Message, peekable: bool = True) -> bool:
        recorder = CURRENT_RECORDER.get()
        if recorder is not None:
            recorder.on_published(CURRENT_AGENT.get(), message)
        return super().publish_message(message, peekable)

    async def run(self, k: int = 1) -> None:
        for _ in range(k):
            async with asyncio.TaskGroup() as group:
                for role in self.roles.values():
                    # Each task copies the current context, so CURRENT_RECORDER reaches the roles.
                    group.create_task(role.run())


@dataclass
class UsageTally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, prompt: int, completion: int, cost: float) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost += cost

    def take(self) -> UsageTally:
        taken = UsageTally(self.prompt_tokens, self.completion_tokens, self.cost)
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = 0.0
        return taken


@dataclass
class Tallies:
    by_agent: dict[uuid.UUID, UsageTally] = field(default_factory=dict)

    def of(self, agent_id: uuid.UUID) -> UsageTally:
        return self.by_agent.setdefault(agent_id, UsageTally())
