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

Every LLM call is also recorded (core/llm_calls.py: the messages as sent, the response, tokens,
cost, latency, time to first token, outcome), counted in metrics (core/metrics.py) and, when
OpenTelemetry is on, traced (core/telemetry.py) as run → round → agent action → LLM call. The
`watch_llm` wrapper opens an `LlmCallTrace` in `CURRENT_CALL`; the cost manager and the stream
hook, which MetaGPT calls inside that request, fill in its usage and first-token time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from metagpt.environment import Environment
from metagpt.logs import set_llm_stream_logfunc
from metagpt.provider.base_llm import BaseLLM
from metagpt.roles import Role
from metagpt.schema import Message
from metagpt.utils.cost_manager import CostManager

from core import metrics, telemetry
from core.runtime.outcomes import LlmCallFailed

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
# Where an LLM call is made: the run's round and the role's action (its cause), for the call's record.
CURRENT_ROUND: contextvars.ContextVar[int | None] = contextvars.ContextVar("agentdeck_round", default=None)
CURRENT_ACTION: contextvars.ContextVar[str] = contextvars.ContextVar("agentdeck_action", default="")
# OpenTelemetry parents (None when tracing is off).
RUN_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar("agentdeck_run_span", default=None)
ROUND_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar("agentdeck_round_span", default=None)
ACTION_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar("agentdeck_action_span", default=None)


@dataclass
class LlmCallTrace:
    """One LLM request in flight; the cost manager and the stream hook fill it in."""

    model: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    call_id: uuid.UUID | None = None
    span: Any = None


CURRENT_CALL: contextvars.ContextVar[LlmCallTrace | None] = contextvars.ContextVar("agentdeck_call", default=None)


def _stream_hook(text: str) -> None:
    call = CURRENT_CALL.get()
    if call is not None and call.first_token is None and text:
        call.first_token = time.perf_counter()
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
        call = CURRENT_CALL.get()
        if call is not None:
            call.prompt_tokens += prompt_tokens
            call.completion_tokens += completion_tokens
            call.cost += self.total_cost - before


def watch_llm(llm: BaseLLM) -> BaseLLM:
    """Wrap the request methods of this LLM object (not its class) to record, report and fail fast."""
    for name in ("_achat_completion", "_achat_completion_stream"):
        original: Callable[..., Awaitable[Any]] = getattr(llm, name)
        setattr(llm, name, _watched(original, name, llm))
    return llm


def _watched(original: Callable[..., Awaitable[Any]], name: str, llm: BaseLLM) -> Callable[..., Awaitable[Any]]:
    stream = name.endswith("stream")

    async def call(*args: Any, **kwargs: Any) -> Any:
        agent, recorder = CURRENT_AGENT.get(), CURRENT_RECORDER.get()
        recording = agent is not None and _llm_calls(recorder) is not None
        if agent is not None and recorder is not None and not recording:
            recorder.on_activity(agent, "calling_llm", {"stream": stream})
        messages = kwargs.get("messages", args[0] if args else [])
        # When recording, the "calling the LLM" activity event is written with the call's row.
        trace = _begin_call(llm, agent, recorder, messages if isinstance(messages, list) else [], stream)
        token = CURRENT_CALL.set(trace)
        try:
            result = await original(*args, **kwargs)
        except asyncio.CancelledError:
            _end_call(trace, agent, recorder, "cancelled", error="cancelled")
            raise
        except Exception as exc:
            _end_call(trace, agent, recorder, "error", error=f"{type(exc).__name__}: {exc}", exc=exc)
            if recorder is not None:
                recorder.on_llm_failure(agent, exc)
            raise LlmCallFailed(agent, exc) from exc
        finally:
            CURRENT_CALL.reset(token)
        _end_call(trace, agent, recorder, "ok", response=_response_text(llm, result))
        return result

    return call


def _response_text(llm: BaseLLM, result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return str(llm.get_choice_text(result) or "")
    except (AttributeError, IndexError, KeyError, TypeError):
        return str(result)


def _llm_calls(recorder: Any) -> Any:
    """The LLM-call service behind a runtime recorder, or None (no recorder, or recording off)."""
    calls = getattr(getattr(recorder, "services", None), "llm_calls", None)
    return calls if calls is not None and calls.enabled else None


def _begin_call(
    llm: BaseLLM, agent: AgentBinding | None, recorder: Any, messages: list[dict[str, Any]], stream: bool
) -> LlmCallTrace:
    model = str(getattr(llm, "model", "") or "")
    trace = LlmCallTrace(model=model, stream=stream)
    metrics.llm_call_started()
    run_id = getattr(recorder, "run_id", None)
    round_no, action = CURRENT_ROUND.get(), CURRENT_ACTION.get()
    if telemetry.tracer() is not None:
        parent = ACTION_SPAN.get() or ROUND_SPAN.get() or RUN_SPAN.get()
        trace.span = telemetry.start_span(
            f"chat {model}",
            parent,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "agentdeck.demo" if _is_demo(recorder) else "openai",
                "gen_ai.request.model": model,
                "gen_ai.agent.name": agent.name if agent else None,
                "gen_ai.agent.id": str(agent.agent_id) if agent else None,
                "agentdeck.run.id": str(run_id) if run_id else None,
                "agentdeck.round": round_no,
                "agentdeck.action": action or None,
                "agentdeck.stream": stream,
            },
            client=True,
        )
    calls = _llm_calls(recorder)
    if calls is not None and agent is not None:
        try:
            trace.call_id = calls.start(
                agent.workspace_id,
                messages,
                agent_id=agent.agent_id,
                agent_name=agent.name,
                run_id=run_id,
                round=round_no,
                action=action,
                profile=str(getattr(getattr(recorder, "choice", None), "label", "")),
                model=model,
                stream=stream,
                activity={"activity": "calling_llm", "agent_name": agent.name, "stream": stream},
            )
        except Exception:  # recording must never break the call it records
            log.exception("could not record the start of an LLM call")
        if trace.call_id is not None:
            telemetry.set_attributes(trace.span, {"agentdeck.llm_call.id": str(trace.call_id)})
    return trace


def _is_demo(recorder: Any) -> bool:
    return bool(getattr(getattr(recorder, "choice", None), "is_demo", False))


def _end_call(
    trace: LlmCallTrace,
    agent: AgentBinding | None,
    recorder: Any,
    outcome: str,
    *,
    response: str = "",
    error: str = "",
    exc: BaseException | None = None,
) -> None:
    ended = time.perf_counter()
    seconds = ended - trace.started
    ttft_ms = (trace.first_token - trace.started) * 1000 if trace.first_token is not None else None
    metrics.llm_call_finished(trace.model, outcome, seconds, trace.prompt_tokens, trace.completion_tokens, trace.cost)
    if trace.span is not None:
        telemetry.set_attributes(
            trace.span,
            {
                "gen_ai.usage.input_tokens": trace.prompt_tokens,
                "gen_ai.usage.output_tokens": trace.completion_tokens,
                "agentdeck.cost_usd": trace.cost,
                "agentdeck.outcome": outcome,
            },
        )
        telemetry.end_span(trace.span, exc if exc is not None else ("cancelled" if outcome == "cancelled" else None))
    calls = _llm_calls(recorder)
    if calls is None or trace.call_id is None:
        return
    config = getattr(getattr(recorder, "choice", None), "config", None) or {}
    try:
        calls.finish(
            trace.call_id,
            outcome,
            response=response,
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            cost=trace.cost,
            latency_ms=seconds * 1000,
            ttft_ms=ttft_ms,
            error=error,
            secrets=(str(config.get("api_key") or ""),),
        )
    except Exception:
        log.exception("could not record the end of LLM call %s", trace.call_id)


class RunTrace:
    """A team run as metrics and traces see it: in progress, and its run/round spans.

    The engine makes one when a run starts (`trace_run`), calls `round(n)` as each round starts and
    `end()` when it ends; the round number reaches every LLM call made in that round.
    """

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.round_span: Any = None
        self.ended = False
        run_id = getattr(recorder, "run_id", None)
        self.span = telemetry.start_span(
            "run",
            None,
            {"agentdeck.run.id": str(run_id) if run_id else None, "gen_ai.operation.name": "invoke_workflow"},
        )
        RUN_SPAN.set(self.span)
        metrics.run_started()

    def round(self, round_no: int) -> None:
        telemetry.end_span(self.round_span)
        CURRENT_ROUND.set(round_no)
        self.round_span = telemetry.start_span(f"round {round_no}", self.span, {"agentdeck.round": round_no})
        ROUND_SPAN.set(self.round_span)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        metrics.run_ended()
        telemetry.end_span(self.round_span)
        if self.span is not None:
            try:
                run = self.recorder.services.runs.get(self.recorder.run_id)
                telemetry.set_attributes(self.span, {"agentdeck.run.status": run.status})
                telemetry.end_span(self.span, run.error or None if run.status == "failed" else None)
            except Exception:
                telemetry.end_span(self.span)


def trace_run(recorder: Any) -> RunTrace:
    return RunTrace(recorder)


class _ObservedRole:
    """Mixed in front of a MetaGPT Role class. The role carries its AgentBinding as the extra
    attribute `agentdeck` (annotated for the type checker only: pydantic would make it a required
    field). `super()` is the Role after this mixin in the MRO, unknown to the type checker."""

    if TYPE_CHECKING:
        agentdeck: AgentBinding
        agentdeck_last_todo: Any
        rc: Any  # MetaGPT's RoleContext

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
        decided: bool = await super()._think()  # type: ignore[misc]
        return decided

    async def _act(self) -> Message:
        recorder = CURRENT_RECORDER.get()
        todo = self.rc.todo
        action = getattr(todo, "name", "") or type(todo).__name__
        if recorder is not None:
            recorder.on_acting(self.agentdeck)
            recorder.on_activity(self.agentdeck, "acting", {"action": action})
        span = telemetry.start_span(
            f"invoke_agent {self.agentdeck.name}",
            ROUND_SPAN.get() or RUN_SPAN.get(),
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.agentdeck.name,
                "gen_ai.agent.id": str(self.agentdeck.agent_id),
                "agentdeck.action": action,
                "agentdeck.round": CURRENT_ROUND.get(),
            },
        )
        self.agentdeck_last_todo = todo  # what a rejected message is redone with (react)
        tokens = CURRENT_ACTION.set(action), ACTION_SPAN.set(span)
        try:
            message = await super()._act()  # type: ignore[misc]
        except BaseException as exc:
            telemetry.end_span(span, exc)
            raise
        finally:
            CURRENT_ACTION.reset(tokens[0])
            ACTION_SPAN.reset(tokens[1])
        telemetry.end_span(span)
        return message

    async def react(self) -> Message:
        from core.runtime.human import reviewed

        # What react returns is what the role publishes: a member that needs approval publishes
        # only what a person approved; a rejected message is redone by its last action.
        message = await super().react()  # type: ignore[misc]
        last = getattr(self, "agentdeck_last_todo", None)
        token = CURRENT_ACTION.set(getattr(last, "name", "") or type(last).__name__ if last is not None else "")
        try:
            return await reviewed(self, self.agentdeck, message, self._redo_last_action)
        finally:
            CURRENT_ACTION.reset(token)

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
        published: bool = super().publish_message(message, peekable)
        return published

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
