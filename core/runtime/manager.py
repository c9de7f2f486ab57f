"""The runtime as the dashboard and the API see it: send a message, start, cancel or fork a run.

It is a façade over parts a reader can find on their own:
- executing: core/runtime/durable.py — team runs and chat answers as durable DBOS workflows
  (they survive restarts and SIGKILLs, resume at their next round, wait in queues);
- the chat queue: `send_message` / `chat_in_progress` / `wait_for_chat` below, over durable's
  per-agent chat queue (one answer at a time per agent, in order);
- run files: core/runtime/files.py;
- the LLM of a chat or run and a profile's connection test: core/runtime/llm.py.

Runs belong to the server, not to a browser tab: closing the page changes nothing, and reopening
it shows the stored messages, then live events.

This module does not import metagpt at load time; the first chat or run (or the warm-up at
startup) configures and imports it (core/runtime/bootstrap.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import Conflict, InvalidInput
from core.runs import FINISHED, RunCreate, RunPublic
from core.runtime.checkpoint_files import checkpoint_exists, copy_checkpoint
from core.runtime.durable import DurableHost
from core.runtime.files import MAX_FILE_BYTES, MAX_FILES_LISTED, RunFiles
from core.runtime.llm import ConnectionTest, LlmAccess
from core.schemas import Page
from core.status import AgentStatus, RunStatus

if TYPE_CHECKING:
    from core.runtime.roles import LlmChoice
    from core.services import Services

__all__ = ["MAX_FILES_LISTED", "MAX_FILE_BYTES", "ConnectionTest", "Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.llm = LlmAccess(services)
        self.files = RunFiles(services)
        self.durable = DurableHost(services)

    # -- set-up ----------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        """Configure and import MetaGPT once (idempotent, thread-safe)."""
        self.llm.ensure_ready()

    def warm_up(self) -> threading.Thread:
        """Import MetaGPT in the background so the first run doesn't wait ~10 s for it."""
        thread = threading.Thread(target=self.ensure_ready, name="agentdeck-metagpt-import", daemon=True)
        thread.start()
        return thread

    def launch(self) -> None:
        """Start DBOS: an executing process resumes the runs and answers it left unfinished; a
        `--no-executor` one only queues, cancels and reads them."""
        self.durable.launch()

    # -- LLM -------------------------------------------------------------------------------
    def llm_choice(self, workspace_id: uuid.UUID, profile: str | None = None) -> LlmChoice:
        return self.llm.choice(workspace_id, profile)

    def test_llm_profile(self, profile_id: uuid.UUID, scope: uuid.UUID | None = None) -> ConnectionTest:
        """Core/runtime/connection.py's test: short timeout, no upstream text in the answer."""
        from core.runtime.connection import test_connection

        return asyncio.run(test_connection(self, profile_id, scope))

    # -- chat ------------------------------------------------------------------------------
    def send_message(
        self,
        agent_id: uuid.UUID,
        content: str,
        metadata: dict[str, Any] | None = None,
        actor: str = "user",
        scope: uuid.UUID | None = None,
    ) -> Any:
        """Store the user's message; an active agent then answers it in the background. While the
        agent is answering an earlier message, this one waits its turn and is answered next."""
        message, status = self.services.messages.append_with_status(
            agent_id, content, sender="user", role="user", metadata=metadata, actor=actor, scope=scope
        )
        if status == AgentStatus.ACTIVE or (status == AgentStatus.BUSY and self.chat_in_progress(agent_id)):
            self.durable.enqueue_chat(agent_id, message.id, message.seq)
        return message

    def chat_in_progress(self, agent_id: uuid.UUID) -> bool:
        return self.durable.chats_pending(agent_id)

    def wait_for_chat(self, agent_id: uuid.UUID, timeout: float) -> bool:
        """Wait until the agent has answered every queued message."""
        deadline = time.monotonic() + timeout
        while self.chat_in_progress(agent_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, data: RunCreate, actor: str = "user", scope: uuid.UUID | None = None) -> RunPublic:
        run = self.services.runs.create(data, actor=actor, scope=scope)
        try:
            self.durable.enqueue_run(run.id)
        except Exception as exc:
            log.exception("run %s could not be queued", run.id)
            return self.services.runs.finish(
                run.id, RunStatus.FAILED, stop_reason="error", error=f"could not be queued: {exc}"
            )
        return run

    def get_run(self, run_id: uuid.UUID, scope: uuid.UUID | None = None) -> RunPublic:
        """The run, with its place in the queue while it waits."""
        run = self.services.runs.get(run_id, scope=scope)
        if run.status == RunStatus.QUEUED:
            run.queue_position = self.durable.queue_position(run_id)
        return run

    def list_runs(
        self, workspace_id: uuid.UUID, limit: int | None = None, cursor: str | None = None, status: str | None = None
    ) -> Page[RunPublic]:
        """A page of the workspace's runs (RunService.list), the queued ones with their place in the
        queue: one read of the queue for the whole page."""
        page = self.services.runs.list(workspace_id, limit=limit, cursor=cursor, status=status)
        self.add_queue_positions(page.items)
        return page

    def add_queue_positions(self, runs: list[RunPublic]) -> list[RunPublic]:
        """Fill in `queue_position` of the queued runs among `runs` (one read of the queue)."""
        queued = [r for r in runs if r.status == RunStatus.QUEUED]
        if queued:
            positions = self.durable.queue_positions()
            for r in queued:
                r.queue_position = positions.get(r.id)
        return runs

    def cancel_run(self, run_id: uuid.UUID, actor: str = "user", scope: uuid.UUID | None = None) -> RunPublic:
        run = self.services.runs.get(run_id, scope=scope)
        if run.status in FINISHED:
            raise Conflict(f"the run is already {run.status}", status=run.status)
        reason = f"cancelled by {actor}"
        # The terminal status first: whatever the executing process does next, the run stays cancelled.
        self.services.runs.finish(run_id, RunStatus.CANCELLED, stop_reason=reason)
        self.durable.cancel_run(run_id, reason)
        self._kill_sandbox(run_id)
        self.durable.wait_for_run(run_id, timeout=5)
        return self.services.runs.get(run_id)

    def resume_run(self, run_id: uuid.UUID, actor: str = "user", scope: uuid.UUID | None = None) -> RunPublic:
        """A person resumes an `interrupted` run: it is queued again and continues at the round
        after its last checkpointed one (no LLM call of a finished round is made again). Any other
        status, or nothing saved to continue from, is a Conflict and changes nothing."""
        run = self.services.runs.get(run_id, scope=scope)
        if run.status != RunStatus.INTERRUPTED:
            raise Conflict(f"the run is {run.status}; only an interrupted run can be resumed", status=run.status)
        round_no, kept = self.durable.resume_point(run_id)
        reopened = self.services.runs.reopen(run_id, round_no, actor=actor, scope=scope)
        try:
            self.durable.resume(run_id, round_no, kept)
        except Exception as exc:
            log.exception("run %s could not be resumed", run_id)
            return self.services.runs.finish(
                run_id, RunStatus.INTERRUPTED, stop_reason=run.stop_reason, error=f"could not be resumed: {exc}"
            )
        log.info("run %s resumed by %s at round %d", run_id, actor, round_no)
        return reopened

    def fork_run(
        self,
        run_id: uuid.UUID,
        round_no: int,
        idea: str | None = None,
        actor: str = "user",
        scope: uuid.UUID | None = None,
        llm_profile: str | None = None,
    ) -> RunPublic:
        """A new run from `run_id`'s state after round `round_no`: its rounds 1..k are copied (their
        messages too), not played again; it continues from round k+1, on `idea` if given, with the
        LLM profile `llm_profile` if given (else the parent's choice)."""
        parent = self.services.runs.get(run_id, scope=scope)
        if round_no < 1 or not checkpoint_exists(self.run_dir(run_id), round_no):
            raise InvalidInput(f"round {round_no} of this run has no saved state to start from", round=round_no)
        start_step = self.durable.fork_start_step(run_id, round_no)
        if start_step is None:
            raise InvalidInput(f"round {round_no} of this run did not complete", round=round_no)
        data = RunCreate(
            workspace_id=parent.workspace_id,
            agent_ids=[m.agent_id for m in parent.members if m.agent_id is not None],
            idea=idea if idea is not None else parent.idea,
            n_rounds=parent.n_rounds,
            investment=parent.investment,
            project_id=parent.project_id,
            llm_profile=llm_profile if llm_profile is not None else parent.llm_profile,
        )
        fork = self.services.runs.create(data, actor=actor, scope=scope, parent_run_id=run_id, fork_round=round_no)
        try:
            copy_checkpoint(self.run_dir(run_id), self.run_dir(fork.id), round_no)
            self._copy_rounds(run_id, fork.id, round_no)
            self.durable.enqueue_fork(run_id, fork.id, start_step)
        except Exception as exc:
            log.exception("fork %s of run %s could not be queued", fork.id, run_id)
            return self.services.runs.finish(
                fork.id, RunStatus.FAILED, stop_reason="error", error=f"could not be queued: {exc}"
            )
        return fork

    def _copy_rounds(self, parent_id: uuid.UUID, fork_id: uuid.UUID, round_no: int) -> None:
        """The parent's messages of rounds 0..k, into the fork (ids derived from the originals, so
        a retried fork copies nothing twice; no usage: the fork did not pay for them)."""
        messages = self.services.messages
        cursor: str | None = None
        while True:
            page = messages.list_run(parent_id, limit=200, cursor=cursor)
            with self.services.db.write() as session:
                for m in page.items:
                    copied_round = m.metadata.get("round")
                    if not isinstance(copied_round, int) or copied_round > round_no or m.agent_id is None:
                        continue
                    copy_id = uuid.uuid5(fork_id, str(m.id))
                    if messages.exists_in(session, copy_id):
                        continue
                    messages.append_in(
                        session,
                        m.agent_id,
                        m.content,
                        sender=m.sender,
                        role=m.role,
                        metadata={**m.metadata, "copied_from": str(m.id)},
                        run_id=fork_id,
                        cause_by=m.cause_by,
                        send_to=m.send_to,
                        actor="runtime",
                        message_id=copy_id,
                    )
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        self.services.runs.skip_rounds(fork_id, round_no)

    def _kill_sandbox(self, run_id: uuid.UUID) -> None:
        venv = self.run_dir(run_id) / "venv"
        if venv.exists():
            from core.runtime.sandbox import Sandbox

            Sandbox(venv=venv, timeout=0).kill_processes()

    def wait_for_run(self, run_id: uuid.UUID, timeout: float) -> bool:
        return self.durable.wait_for_run(run_id, timeout)

    # -- run files -------------------------------------------------------------------------
    def run_dir(self, run_id: uuid.UUID) -> Path:
        return self.files.run_dir(run_id)

    def run_files(self, run_id: uuid.UUID, scope: uuid.UUID | None = None) -> list[str]:
        return self.files.list(run_id, scope)

    def read_run_file(self, run_id: uuid.UUID, relative: str, scope: uuid.UUID | None = None) -> str:
        return self.files.read(run_id, relative, scope)

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop executing; runs and answers in progress resume at the next start."""
        self.durable.destroy(timeout)
