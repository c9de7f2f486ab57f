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
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Coroutine
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
from core.runtime import checkpoint
from core.runtime import sandbox as sandboxing
from core.runtime.human import CURRENT_GATE, NO_ANSWER, NoAnswer, PersonGate, PersonLLM
from core.runtime.observe import (
    CURRENT_RECORDER,
    AgentBinding,
    RecordingCostManager,
    RecordingEnvironment,
    RunTrace,
    Tallies,
    install_stream_hook,
    trace_run,
)
from core.runtime.outcomes import LlmCallFailed, RunSuspended, describe_error
from core.runtime.roles import (
    HISTORY_MESSAGES,
    LlmChoice,
    build_chat_role,
    build_team_role,
    close_llm,
    split_context_update,
)
from core.status import AgentStatus, RunStatus

log = logging.getLogger(__name__)

UNLIMITED_BUDGET = 1e9


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
        # A run's messages get ids derived from (run, round, agent, n-th message of the agent in
        # the round): a round replayed after a restart finds them stored and stores nothing twice.
        self.round_no = 0
        self._published: dict[tuple[int, uuid.UUID], int] = {}
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

    def on_rejected(self, agent: AgentBinding, message: Message, decision: Any) -> None:
        """A message a person sent back stays in the transcript, marked, with the feedback."""
        self.record_message(
            agent,
            message.content,
            sender=agent.name,
            role="assistant",
            cause_by=_short(message.cause_by),
            send_to=sorted(message.send_to),
            metadata={"rejected": True, "feedback": decision.answer, "input_id": str(decision.id)},
        )

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
        message_id: uuid.UUID | None = None,
    ) -> Any:
        with self._lock:
            usage = self.tallies.of(agent.agent_id).take() if role == "assistant" else None
            if message_id is None and self.run_id is not None:
                key = (self.round_no, agent.agent_id)
                n = self._published.get(key, 0)
                self._published[key] = n + 1
                message_id = uuid.uuid5(self.run_id, f"round/{self.round_no}/{agent.agent_id}/{n}")
        meta = {"llm": self.choice.label, "demo_model": self.choice.is_demo, **(metadata or {})}
        if self.run_id is not None:
            meta["round"] = self.round_no  # 0: the idea, published before round 1
        limit = self.services.messages.max_content_chars
        if len(content) > limit:
            # An LLM can write more than a message may hold; keep the start and say so.
            meta["truncated_from_chars"] = len(content)
            content = content[: limit - 40] + "\n\n[… truncated by AgentDeck]"
        with self.services.db.write() as session:
            if message_id is not None and self.services.messages.exists_in(session, message_id):
                return None  # stored by an earlier execution of this round, with its usage
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
                message_id=message_id,
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


def _make_context(choice: LlmChoice, project_root: Path | None, budget: float) -> Context:
    config = Config.from_llm_config(choice.llm_config().model_dump(exclude_none=True))
    if project_root is not None:
        config.workspace.path = project_root
    # Diagrams stay as Mermaid source in the run folder; rendering them needs a browser toolchain.
    config.mermaid.engine = "none"
    ctx = Context(config=config)
    ctx.cost_manager = RecordingCostManager(max_budget=budget)
    return ctx


def chat_reply_id(message_id: uuid.UUID) -> uuid.UUID:
    """The id of the answer to a message: an answer replayed after a restart is stored once."""
    return uuid.uuid5(message_id, "reply")


async def execute_chat(services: Any, agent_id: uuid.UUID, message_id: uuid.UUID, choice: LlmChoice) -> None:
    """The agent answers its latest message (SPEC §9 chat): active → busy → active. `busy` is
    accepted as a start too: an answer resumed after a restart finds the agent as the dead
    process left it."""
    install_stream_hook()
    binding = binding_for(services, agent_id)
    recorder = RuntimeRecorder(services, binding.workspace_id, choice, None)
    CURRENT_RECORDER.set(recorder)
    reply_id = chat_reply_id(message_id)
    with services.db.read() as session:
        answered = services.messages.exists_in(session, reply_id)
    if answered:
        recorder.set_status(binding, AgentStatus.ACTIVE, "", only_from={AgentStatus.BUSY})
        return
    if not recorder.set_status(
        binding, AgentStatus.BUSY, "answering", only_from={AgentStatus.ACTIVE, AgentStatus.BUSY}
    ):
        return
    if binding.config.get("approve_replies"):
        # Each reply waits for a person's approval before it is stored (core/runtime/human.py).
        CURRENT_GATE.set(
            PersonGate(
                services,
                binding.workspace_id,
                run_id=None,
                scope_key=f"chat:{message_id}",
                approvers=frozenset({binding.agent_id}),
            )
        )
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
        llm = choice.make_llm()
        try:
            role = build_chat_role(binding, ctx, llm, history)
            reply = await role.run(with_message=Message(content=latest.content, cause_by=UserRequirement))
        finally:
            await close_llm(llm)
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
        recorder.record_message(
            binding, text, sender=binding.name, role="assistant", metadata=metadata, message_id=reply_id
        )
        recorder.set_status(binding, AgentStatus.ACTIVE, "", only_from={AgentStatus.BUSY})
    except NoAnswer:
        recorder.set_status(binding, AgentStatus.ACTIVE, "reply not approved", only_from={AgentStatus.BUSY})
    except (Exception, LlmCallFailed) as exc:
        prefix = "LLM call failed" if isinstance(exc, LlmCallFailed) else "answer failed"
        reason = f"{prefix}: {describe_error(exc)}"
        log.warning("chat of agent %s failed: %s", binding.name, reason)
        recorder.set_status(binding, AgentStatus.ERROR, reason, only_from={AgentStatus.BUSY, AgentStatus.ACTIVE})
    except asyncio.CancelledError:
        recorder.set_status(binding, AgentStatus.ACTIVE, "answer cancelled", only_from={AgentStatus.BUSY})
        raise


RoundOutcome = tuple[str, str]  # ("continue" | "stop" | "failed" | "cancelled", reason)


class TeamSession:
    """One run's MetaGPT team in this process, kept between its rounds.

    Built fresh for round 1 (the idea is published), or restored from the checkpoint of the last
    round done (after a restart, a takeover or for a fork). Each `play` drives one MetaGPT round on
    the session's own event loop (the caller is the run's workflow thread) and checkpoints it.
    Cancel (`abort`) and shutdown (`suspend`) come from other threads and stop the round at once.
    """

    def __init__(self, services: Any, run_id: uuid.UUID, choice: LlmChoice, run_dir: Path, sandbox_timeout: float):
        self.services = services
        self.run_id = run_id
        self.choice = choice
        self.run_dir = run_dir
        self.sandbox_timeout = sandbox_timeout
        self.loop = asyncio.new_event_loop()
        self.rounds_done = 0
        self.cancel_reason = ""
        self.suspending = False
        self.checkpoint_seconds: list[float] = []
        self.round_seconds: list[float] = []
        self._task: asyncio.Task[Any] | None = None
        self._lock = threading.Lock()
        self.team: Team | None = None
        self.gate: PersonGate | None = None
        self.trace: RunTrace | None = None
        self.bindings: list[AgentBinding] = []
        self.recorder = RuntimeRecorder(services, uuid.UUID(int=0), choice, run_id)
        self._context = contextvars.copy_context()

    # -- from other threads ----------------------------------------------------------------
    def abort(self, reason: str) -> None:
        with self._lock:
            self.cancel_reason = self.cancel_reason or reason
            self._cancel_task()

    def suspend(self) -> None:
        with self._lock:
            self.suspending = True
            self._cancel_task()

    def _cancel_task(self) -> None:
        task = self._task
        if task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(task.cancel)

    # -- in the workflow thread ------------------------------------------------------------
    def _drive(self, coro: Coroutine[Any, Any, Any]) -> Any:
        with self._lock:
            if self.suspending or self.cancel_reason:
                coro.close()
                raise asyncio.CancelledError
            # One context for every task of the session: what _build sets (recorder, gate, the
            # run folder confinement, trace) holds in every round's task.
            self._task = self.loop.create_task(coro, context=self._context)
        try:
            return self.loop.run_until_complete(self._task)
        finally:
            with self._lock:
                self._task = None

    def build(self, from_round: int) -> None:
        """Round 0: a fresh team and the idea published; k > 0: the team as checkpointed after round k."""
        self._drive(self._build(from_round))

    async def _build(self, from_round: int) -> None:
        install_stream_hook()
        CURRENT_RECORDER.set(self.recorder)
        run = self.services.runs.get(self.run_id)
        self.bindings = [binding_for(self.services, m.agent_id) for m in run.members if m.agent_id is not None]
        self.recorder.workspace_id = run.workspace_id
        if self.trace is None:  # metrics and OpenTelemetry: run in progress, run/round spans
            self.trace = trace_run(self.recorder)
        if from_round > 0:
            # The project files as round k left them: not what an interrupted round half wrote,
            # and for a fork its parent's files of round k (core/runtime/checkpoint_files.py).
            await asyncio.to_thread(checkpoint.restore_files, self.run_dir, from_round)
        # Confines MetaGPT's file writes to the run folder (for every round: the session's tasks
        # share one context, see _drive) and decides how generated code runs (core/runtime/sandbox.py).
        mode, sandbox = await sandboxing.prepare(
            self.services, self.run_id, run.workspace_id, self.run_dir, run.code_execution, self.sandbox_timeout
        )
        ctx = _make_context(self.choice, self.run_dir / "workspace", run.investment)
        env = RecordingEnvironment(context=ctx, desc=f"an AgentDeck team run on: {run.idea[:200]}")
        # People in the run: members they play answer through PersonLLM; members needing approval
        # publish only what a person approved (core/runtime/human.py).
        self.gate = PersonGate(
            self.services,
            run.workspace_id,
            run_id=self.run_id,
            scope_key=f"run:{self.run_id}",
            timeout_seconds=run.input_timeout,
            approvers=frozenset(m.agent_id for m in run.members if m.needs_approval and m.agent_id),
            on_rejected=self.recorder.on_rejected,
        )
        CURRENT_GATE.set(self.gate)
        played = {m.agent_id for m in run.members if m.played_by_human}
        roles = [
            build_team_role(b, ctx, PersonLLM() if b.agent_id in played else self.choice.make_llm())
            for b in self.bindings
        ]
        for role in roles:
            sandboxing.contain(role, mode, sandbox)
        team = Team(env=env, context=ctx)
        team.hire(roles)
        team.invest(run.investment)
        self.recorder.human_recipient = next(
            (b for b, r in zip(self.bindings, roles, strict=True) if r.is_watch(any_to_str(UserRequirement))),
            self.bindings[0],
        )
        for binding in self.bindings:
            self.recorder.set_status(binding, AgentStatus.ACTIVE, f"joined run {self.run_id}", only_from=None)
        if from_round == 0:
            self.recorder.round_no = 0
            team.run_project(run.idea)
        else:
            checkpoint.restore(team, self.run_dir, from_round)
            if run.fork_round == from_round and run.parent_run_id is not None and run.attempts <= 1:
                parent = self.services.runs.get(run.parent_run_id)
                if run.idea != parent.idea:
                    # A fork with a new idea: the team hears it as the human's next requirement.
                    self.recorder.round_no = from_round
                    team.env.publish_message(Message(content=run.idea, cause_by=UserRequirement))
        self.team = team
        self.rounds_done = from_round

    def play(self, round_no: int, deadline: float) -> RoundOutcome:
        """Drive round `round_no` (the rounds before it are done); checkpoint it when it ran."""
        started = time.perf_counter()
        try:
            outcome: RoundOutcome = self._drive(self._play(round_no, deadline - time.time()))
        except asyncio.CancelledError:
            if self.suspending:
                raise RunSuspended from None
            reason = self.cancel_reason or "cancelled"
            self.end(RunStatus.CANCELLED, reason)
            return ("cancelled", reason)
        except TimeoutError:
            limit = self.services.settings.run_time_limit
            self.end(RunStatus.FAILED, "time limit", error=f"ran longer than {limit} s")
            return ("failed", "time limit")
        except NoAnswer as exc:
            error = f"{NO_ANSWER}: nobody answered {exc.request.agent_name}'s request in time"
            self.end(RunStatus.FAILED, NO_ANSWER, error=error)
            return ("failed", NO_ANSWER)
        except (Exception, LlmCallFailed) as exc:
            return ("failed", self.fail(exc))
        if outcome[0] == "continue":
            assert self.team is not None
            self.checkpoint_seconds.append(checkpoint.save(self.team, self.run_dir, round_no))
            self.rounds_done = round_no
            self.round_seconds.append(time.perf_counter() - started)
        return outcome

    async def _play(self, round_no: int, remaining: float) -> RoundOutcome:
        CURRENT_RECORDER.set(self.recorder)
        team = self.team
        assert team is not None
        if remaining <= 0:
            raise TimeoutError
        if team.env.is_idle:
            return ("stop", "every role finished its work")
        try:
            team._check_balance()
        except NoMoneyException:
            ctx = team.env.context
            investment = ctx.cost_manager.max_budget
            return (
                "stop",
                f"budget exhausted: spent ${ctx.cost_manager.total_cost:.4f} of ${investment:.4f} investment",
            )
        self.services.runs.record_round(self.run_id, round_no)
        self.recorder.round_no = round_no
        # Requests to people are keyed by round (CURRENT_ROUND): a replayed round finds its answers.
        CURRENT_GATE.set(self.gate)
        assert self.trace is not None
        self.trace.round(round_no)
        async with asyncio.timeout(remaining):
            try:
                await team.env.run()
            except BaseExceptionGroup as group:
                raise _first_cause(group) from group
        return ("continue", "")

    def fail(self, exc: BaseException) -> str:
        """Record the run `failed` with the error; the failing agent goes to `error`."""
        failed_agent = exc.agent if isinstance(exc, LlmCallFailed) else None
        if failed_agent is None and self.recorder.failure is not None:
            failed_agent = self.recorder.failure[0]
        error = describe_error(exc)
        log.warning("run %s failed: %s", self.run_id, error)
        if failed_agent is not None:
            prefix = "LLM call failed" if isinstance(exc, LlmCallFailed) else "run failed"
            self.recorder.set_status(failed_agent, AgentStatus.ERROR, f"{prefix}: {error}", only_from=None)
        self.end(RunStatus.FAILED, "error", error=error)
        return error

    def end(self, status: RunStatus, stop_reason: str, error: str = "") -> None:
        self.recorder.flush_usage()
        self.services.runs.finish(self.run_id, status, stop_reason=stop_reason, error=error)
        _release(self.recorder, self.bindings)
        if self.trace is not None:
            self.trace.end()

    def close(self) -> None:
        if self.trace is not None:
            self.trace.end()
        if self.loop.is_closed():
            return
        try:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            if self.team is not None:
                for role in self.team.env.roles.values():
                    self.loop.run_until_complete(close_llm(role.llm))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        except Exception:
            log.debug("closing the loop of run %s", self.run_id, exc_info=True)
        finally:
            self.loop.close()


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
