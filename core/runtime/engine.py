"""Executing chats and team runs on MetaGPT. Runs in a worker thread with its own event loop
(see core/runtime/manager.py), so MetaGPT's blocking calls (subprocesses, file writes) never
stall the dashboard; every database write here is a short synchronous core-service call.

A team run, step by step (SPEC §9):
1. resolve the workspace's LLM (profile or the offline demo model) and prepare the run folder
   (MetaGPT's project files) and, when code execution is on, the run's own virtual environment;
2. build a fresh Team in a RecordingEnvironment from the members' roles, each with the run's
   context, its own LLM object and its AgentDeck binding; invest the money budget;
3. publish the idea and drive the rounds ourselves (Team.run would swallow every error): stop when
   all roles are idle, at n_rounds, or when the budget is spent;
4. record the outcome: completed (with the stop reason), failed (LLM or other error; the failing
   agent goes to `error`), or cancelled. Members never stay `busy`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metagpt.actions import UserRequirement
from metagpt.config2 import Config
from metagpt.context import Context
from metagpt.schema import Message
from metagpt.team import Team
from metagpt.utils.common import NoMoneyException, any_to_str

from core.context import ContextUpdate
from core.errors import DomainError
from core.events import EventType, append_event
from core.runtime import sandbox as sandboxing
from core.runtime.observe import (
    CURRENT_RECORDER,
    AgentBinding,
    LlmCallFailed,
    RecordingCostManager,
    RecordingEnvironment,
    Tallies,
    install_stream_hook,
)
from core.runtime.roles import (
    HISTORY_MESSAGES,
    LlmChoice,
    build_chat_role,
    build_team_role,
    split_context_update,
)
from core.status import AgentStatus

log = logging.getLogger(__name__)

UNLIMITED_BUDGET = 1e9


class SandboxedContext(Context):
    """A MetaGPT context whose subprocess environment is the run's sandbox (RunCode asks the
    context for it), so `python` and `pip` resolve to the run's own virtual environment."""

    sandbox_env: dict[str, str] | None = None

    def new_environ(self) -> dict[str, str]:
        if self.sandbox_env is None:
            return super().new_environ()
        return dict(self.sandbox_env)


def _short(cause_by: str) -> str:
    return cause_by.rsplit(".", 1)[-1] if cause_by else ""


class RuntimeRecorder:
    """Writes what the observation hooks report: activity events, statuses, messages, usage.

    Called from the worker thread's event loop; each call is one short write transaction.
    """

    def __init__(self, services: Any, workspace_id: uuid.UUID, choice: LlmChoice, run_id: uuid.UUID | None) -> None:
        self.services = services
        self.workspace_id = workspace_id
        self.choice = choice
        self.run_id = run_id
        self.tallies = Tallies()
        self.bindings: dict[uuid.UUID, AgentBinding] = {}
        self.human_recipient: AgentBinding | None = None
        self.failure: tuple[AgentBinding | None, BaseException] | None = None
        self.messages_recorded = 0
        self._lock = threading.Lock()

    # -- hooks -----------------------------------------------------------------------------
    def on_activity(self, agent: AgentBinding, activity: str, detail: dict[str, Any]) -> None:
        with self.services.db.write() as session:
            append_event(
                session,
                EventType.AGENT_ACTIVITY,
                agent.workspace_id,
                {"activity": activity, "agent_name": agent.name, **detail},
                agent_id=agent.agent_id,
                run_id=self.run_id,
            )

    def on_acting(self, agent: AgentBinding) -> None:
        self.set_status(agent, AgentStatus.BUSY, "working", only_from={AgentStatus.ACTIVE})

    def on_role_done(self, agent: AgentBinding) -> None:
        # A chat stores the reply first and then goes back to active itself.
        if self.run_id is not None:
            self.set_status(agent, AgentStatus.ACTIVE, "", only_from={AgentStatus.BUSY})

    def on_usage(self, agent: AgentBinding | None, prompt: int, completion: int, cost: float) -> None:
        if agent is not None:
            with self._lock:
                self.tallies.of(agent.agent_id).add(prompt, completion, cost)

    def on_token(self, agent: AgentBinding, text: str) -> None:
        self.services.bus.publish_ephemeral(
            EventType.LLM_TOKEN,
            agent.workspace_id,
            {"text": text, "agent_name": agent.name},
            agent_id=agent.agent_id,
            run_id=self.run_id,
        )

    def on_published(self, agent: AgentBinding | None, message: Message) -> None:
        if agent is None:
            # The human's requirement: kept in the thread of the member that acts on it first.
            agent, sender, role = self.human_recipient, "user", "user"
            if agent is None:
                return
        else:
            sender, role = agent.name, "assistant"
        self.record_message(
            agent,
            message.content,
            sender=sender,
            role=role,
            cause_by=_short(message.cause_by),
            send_to=sorted(message.send_to),
            metadata={"profile": getattr(message, "role", ""), "sent_from": message.sent_from},
        )

    def on_llm_failure(self, agent: AgentBinding | None, error: BaseException) -> None:
        if self.failure is None:
            self.failure = (agent, error)

    # -- writes ----------------------------------------------------------------------------
    def record_message(
        self,
        agent: AgentBinding,
        content: str,
        *,
        sender: str,
        role: str,
        cause_by: str = "",
        send_to: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        with self._lock:
            usage = self.tallies.of(agent.agent_id).take() if role == "assistant" else None
        meta = {"llm": self.choice.label, "demo_model": self.choice.is_demo, **(metadata or {})}
        limit = self.services.messages.max_content_chars
        if len(content) > limit:
            # An LLM can write more than a message may hold; keep the start and say so.
            meta["truncated_from_chars"] = len(content)
            content = content[: limit - 40] + "\n\n[… truncated by AgentDeck]"
        with self.services.db.write() as session:
            message = self.services.messages.append_in(
                session,
                agent.agent_id,
                content if content.strip() else "(empty)",
                sender=sender,
                role=role,
                metadata=meta,
                run_id=self.run_id,
                cause_by=cause_by,
                send_to=send_to or [],
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cost=usage.cost if usage else 0.0,
            )
            if usage is not None and self.run_id is not None:
                self.services.runs.add_usage_in(
                    session, self.run_id, agent.agent_id, usage.prompt_tokens, usage.completion_tokens, usage.cost
                )
        self.messages_recorded += 1
        return message

    def flush_usage(self) -> None:
        """Usage not yet attached to a message (a failed or cancelled step) still counts."""
        if self.run_id is None:
            return
        with self._lock:
            pending = {agent_id: tally.take() for agent_id, tally in self.tallies.by_agent.items()}
        pending = {k: v for k, v in pending.items() if v.prompt_tokens or v.completion_tokens or v.cost}
        if not pending:
            return
        with self.services.db.write() as session:
            for agent_id, usage in pending.items():
                self.services.runs.add_usage_in(
                    session, self.run_id, agent_id, usage.prompt_tokens, usage.completion_tokens, usage.cost
                )

    def set_status(
        self, agent: AgentBinding, target: AgentStatus, reason: str, only_from: set[AgentStatus] | None = None
    ) -> bool:
        """Best effort: a status someone else changed meanwhile is left alone."""
        try:
            current = self.services.agents.get(agent.agent_id)
            if only_from is not None and current.status not in only_from:
                return False
            if current.status == target:
                return True
            self.services.agents.set_status(agent.agent_id, target, reason=reason, actor="runtime")
            return True
        except DomainError as exc:
            log.info("status of %s not changed to %s: %s", agent.name, target, exc)
            return False


def binding_for(services: Any, agent_id: uuid.UUID) -> AgentBinding:
    agent = services.agents.get(agent_id)
    context = services.contexts.get(agent_id)
    return AgentBinding(
        agent_id=agent.id,
        workspace_id=agent.workspace_id,
        name=agent.name,
        role_kind=agent.role_kind,
        config=agent.config,
        context_version=context.version,
        context=context.data,
    )


def _make_context(choice: LlmChoice, project_root: Path | None, budget: float) -> SandboxedContext:
    config = Config.from_llm_config(choice.llm_config().model_dump(exclude_none=True))
    if project_root is not None:
        config.workspace.path = project_root
    # Diagrams stay as Mermaid source in the run folder; rendering them needs a browser toolchain.
    config.mermaid.engine = "none"
    ctx = SandboxedContext(config=config)
    ctx.cost_manager = RecordingCostManager(max_budget=budget)
    return ctx


def describe_error(error: BaseException) -> str:
    inner = error.error if isinstance(error, LlmCallFailed) else error
    text = f"{type(inner).__name__}: {inner}".strip()
    return text[:2000]


async def execute_chat(services: Any, agent_id: uuid.UUID, message_id: uuid.UUID, choice: LlmChoice) -> None:
    """The agent answers its latest message (SPEC §9 chat): active → busy → active."""
    install_stream_hook()
    binding = binding_for(services, agent_id)
    recorder = RuntimeRecorder(services, binding.workspace_id, choice, None)
    CURRENT_RECORDER.set(recorder)
    if not recorder.set_status(binding, AgentStatus.BUSY, "answering", only_from={AgentStatus.ACTIVE}):
        return
    try:
        latest = services.messages.get(message_id)
        page = services.messages.list(agent_id, limit=HISTORY_MESSAGES)
        # A message that waited its turn sees the replies written meanwhile, not the user's messages
        # queued after it: those get their own answers next.
        history = [
            (m.sender, m.content)
            for m in reversed(page.items)
            if m.id != message_id and not (m.role == "user" and m.seq > latest.seq)
        ]
        ctx = _make_context(choice, None, UNLIMITED_BUDGET)
        role = build_chat_role(binding, ctx, choice.make_llm(), history)
        reply = await role.run(with_message=Message(content=latest.content, cause_by=UserRequirement))
        text = reply.content if reply is not None else ""
        text, patch, problem = split_context_update(text)
        metadata: dict[str, Any] = {"in_reply_to": str(message_id)}
        if patch is not None:
            try:
                updated = services.contexts.update(
                    agent_id, ContextUpdate(patch=patch, reason="written by the agent"), actor=f"agent:{binding.name}"
                )
                metadata["context_version"] = updated.version
            except DomainError as exc:
                problem = f"context update refused: {exc}"
        if problem:
            metadata["context_update_problem"] = problem
        recorder.record_message(binding, text, sender=binding.name, role="assistant", metadata=metadata)
        recorder.set_status(binding, AgentStatus.ACTIVE, "", only_from={AgentStatus.BUSY})
    except (Exception, LlmCallFailed) as exc:
        prefix = "LLM call failed" if isinstance(exc, LlmCallFailed) else "answer failed"
        reason = f"{prefix}: {describe_error(exc)}"
        log.warning("chat of agent %s failed: %s", binding.name, reason)
        recorder.set_status(binding, AgentStatus.ERROR, reason, only_from={AgentStatus.BUSY, AgentStatus.ACTIVE})
    except asyncio.CancelledError:
        recorder.set_status(binding, AgentStatus.ACTIVE, "answer cancelled", only_from={AgentStatus.BUSY})
        raise


async def execute_run(
    services: Any,
    run_id: uuid.UUID,
    choice: LlmChoice,
    run_dir: Path,
    code_execution: bool,
    sandbox_timeout: float,
    cancel_reason: Callable[[], str] = lambda: "",
) -> None:
    install_stream_hook()
    run = services.runs.get(run_id)
    bindings = [binding_for(services, m.agent_id) for m in run.members if m.agent_id is not None]
    recorder = RuntimeRecorder(services, run.workspace_id, choice, run_id)
    CURRENT_RECORDER.set(recorder)
    try:
        mode, sandbox = await sandboxing.prepare(
            services, run_id, run.workspace_id, run_dir, code_execution, sandbox_timeout
        )
        ctx = _make_context(choice, run_dir / "workspace", run.investment)
        env = RecordingEnvironment(context=ctx, desc=f"an AgentDeck team run on: {run.idea[:200]}")
        roles = [build_team_role(b, ctx, choice.make_llm()) for b in bindings]
        for role in roles:
            sandboxing.contain(role, mode, sandbox)
        team = Team(env=env, context=ctx)
        team.hire(roles)
        team.invest(run.investment)
        recorder.human_recipient = next(
            (b for b, r in zip(bindings, roles, strict=True) if r.is_watch(any_to_str(UserRequirement))),
            bindings[0],
        )
        services.runs.mark_running(run_id, choice.label)
        for binding in bindings:
            recorder.set_status(binding, AgentStatus.ACTIVE, f"joined run {run_id}", only_from=None)
        team.run_project(run.idea)
        stop_reason = f"reached n_rounds ({run.n_rounds})"
        for round_no in range(1, run.n_rounds + 1):
            if env.is_idle:
                stop_reason = "every role finished its work"
                break
            try:
                team._check_balance()
            except NoMoneyException:
                stop_reason = (
                    f"budget exhausted: spent ${ctx.cost_manager.total_cost:.4f} of ${run.investment:.4f} investment"
                )
                break
            services.runs.record_round(run_id, round_no)
            try:
                await env.run()
            except BaseExceptionGroup as group:
                raise _first_cause(group) from group
        recorder.flush_usage()
        services.runs.finish(run_id, "completed", stop_reason=stop_reason)
    except asyncio.CancelledError:
        recorder.flush_usage()
        services.runs.finish(run_id, "cancelled", stop_reason=cancel_reason() or "cancelled")
        _release(recorder, bindings)
        raise
    except (Exception, LlmCallFailed) as exc:
        recorder.flush_usage()
        failed_agent = exc.agent if isinstance(exc, LlmCallFailed) else None
        if failed_agent is None and recorder.failure is not None:
            failed_agent = recorder.failure[0]
        error = describe_error(exc)
        log.warning("run %s failed: %s", run_id, error)
        if failed_agent is not None:
            prefix = "LLM call failed" if isinstance(exc, LlmCallFailed) else "run failed"
            recorder.set_status(failed_agent, AgentStatus.ERROR, f"{prefix}: {error}", only_from=None)
        services.runs.finish(run_id, "failed", stop_reason="error", error=error)
    finally:
        _release(recorder, bindings)


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_cause(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


def _release(recorder: RuntimeRecorder, bindings: list[AgentBinding]) -> None:
    for binding in bindings:
        recorder.set_status(binding, AgentStatus.ACTIVE, "run ended", only_from={AgentStatus.BUSY})
