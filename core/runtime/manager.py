"""The runtime as the dashboard and the API see it: send a message, start or cancel a run.

Each chat answer and each team run executes in its own worker thread with its own event loop:
MetaGPT makes blocking calls (subprocesses with timeouts, pip installs, file writes) that would
otherwise freeze every dashboard client. Runs belong to the server, not to a browser tab: closing
the page changes nothing, and reopening it shows the stored messages, then live events.

This module does not import metagpt at load time; the first chat or run (or the warm-up at
startup) configures and imports it (core/runtime/bootstrap.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from core.errors import Conflict, NotFound
from core.runs import FINISHED, RunCreate, RunPublic
from core.status import AgentStatus

if TYPE_CHECKING:
    from core.runtime.roles import LlmChoice
    from core.services import Services

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024
MAX_FILES_LISTED = 500


class ConnectionTest(BaseModel):
    ok: bool
    message: str
    seconds: float


class _Worker:
    """One chat answer or run: a thread running one coroutine on its own loop, cancellable."""

    def __init__(self, name: str, make: Callable[[_Worker], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._make = make
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason = ""
        self._cancel_requested = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        async def runner() -> None:
            self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
            if self._cancel_requested.is_set():
                raise asyncio.CancelledError
            await self._make(self)

        try:
            asyncio.run(runner())
        except asyncio.CancelledError:
            pass
        except BaseException:
            log.exception("runtime worker %s crashed", self.name)
        finally:
            self.done.set()

    def cancel(self, reason: str) -> None:
        self.cancel_reason = self.cancel_reason or reason
        self._cancel_requested.set()
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)


class Runtime:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self._runs: dict[uuid.UUID, _Worker] = {}
        self._chats: dict[uuid.UUID, _Worker] = {}  # agent -> the worker answering its queue
        self._chat_queues: dict[uuid.UUID, deque[uuid.UUID]] = {}  # agent -> messages waiting to be answered
        self._chat_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready = threading.Event()

    # -- set-up ----------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        """Configure and import MetaGPT once (idempotent, thread-safe)."""
        if self._ready.is_set():
            return
        with self._lock:
            if not self._ready.is_set():
                from core.runtime.bootstrap import configure_metagpt

                configure_metagpt(self.settings.data_dir)
                self._ready.set()

    def warm_up(self) -> threading.Thread:
        """Import MetaGPT in the background so the first run doesn't wait ~10 s for it."""
        thread = threading.Thread(target=self.ensure_ready, name="agentdeck-metagpt-import", daemon=True)
        thread.start()
        return thread

    def recover(self) -> int:
        """Startup: runs a dead process left unfinished are `interrupted`; agents it left
        `busy` are `active` again."""
        return self.services.runs.interrupt_unfinished()

    # -- LLM -------------------------------------------------------------------------------
    def llm_choice(self, workspace_id: uuid.UUID, profile: str | None = None) -> LlmChoice:
        self.ensure_ready()
        from core.runtime.roles import demo_choice, profile_choice

        resolved = self.services.llm_profiles.resolve(workspace_id, profile or None)
        if resolved is None:
            return demo_choice()
        return profile_choice(
            resolved.label,
            resolved.api_type,
            resolved.model,
            resolved.base_url,
            resolved.api_key,
            timeout=self.settings.llm_timeout,
        )

    def test_llm_profile(self, profile_id: uuid.UUID, scope: uuid.UUID | None = None) -> ConnectionTest:
        """Blocking form of core/runtime/connection.py's test (short timeout, no upstream text)."""
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
        message = self.services.messages.append(
            agent_id, content, sender="user", role="user", metadata=metadata, actor=actor, scope=scope
        )
        agent = self.services.agents.get(agent_id, scope=scope)
        if agent.status == AgentStatus.ACTIVE or (agent.status == AgentStatus.BUSY and self.chat_in_progress(agent_id)):
            self._queue_chat(agent_id, message.id)
        return message

    def _queue_chat(self, agent_id: uuid.UUID, message_id: uuid.UUID) -> None:
        with self._chat_lock:
            self._chat_queues.setdefault(agent_id, deque()).append(message_id)
            if self._chat_worker(agent_id) is not None:  # it takes the message when done with the current one
                return
            worker = _Worker(f"agentdeck-chat-{agent_id}", partial(self._answer_queue, agent_id))
            self._chats[agent_id] = worker
        worker.start()

    def _next_in_queue(self, agent_id: uuid.UUID) -> uuid.UUID | None:
        """The next message to answer, or None; then the worker is gone (under the same lock as
        `_queue_chat`, so a message queued at that moment starts a new worker instead)."""
        with self._chat_lock:
            queue = self._chat_queues.get(agent_id)
            if queue:
                return queue.popleft()
            self._chat_queues.pop(agent_id, None)
            self._chats.pop(agent_id, None)
            return None

    async def _answer_queue(self, agent_id: uuid.UUID, worker: _Worker) -> None:
        try:
            self.ensure_ready()  # MetaGPT must be configured before engine imports it
            from core.runtime.engine import execute_chat

            while (message_id := self._next_in_queue(agent_id)) is not None:
                agent = self.services.agents.get(agent_id)
                choice = self.llm_choice(agent.workspace_id, agent.config.get("llm_profile"))
                await execute_chat(self.services, agent_id, message_id, choice)
        finally:
            with self._chat_lock:  # cancelled or crashed: what was queued stays in the thread, unanswered
                if self._chats.get(agent_id) is worker:
                    self._chats.pop(agent_id, None)
                    self._chat_queues.pop(agent_id, None)

    def _chat_worker(self, agent_id: uuid.UUID) -> _Worker | None:
        # A worker cancelled before it started never ran its cleanup: `done` tells it is gone.
        worker = self._chats.get(agent_id)
        return worker if worker is not None and not worker.done.is_set() else None

    def wait_for_chat(self, agent_id: uuid.UUID, timeout: float) -> bool:
        """Wait until the agent has answered every queued message."""
        deadline = time.monotonic() + timeout
        while (worker := self._chat_worker(agent_id)) is not None:
            if not worker.done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def chat_in_progress(self, agent_id: uuid.UUID) -> bool:
        with self._chat_lock:
            return self._chat_worker(agent_id) is not None

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, data: RunCreate, actor: str = "user", scope: uuid.UUID | None = None) -> RunPublic:
        run = self.services.runs.create(data, actor=actor, scope=scope)
        run_dir = self.run_dir(run.id)

        async def execute(worker: _Worker) -> None:
            self.ensure_ready()  # MetaGPT must be configured before engine imports it
            from core.runtime.engine import execute_run

            choice = self.llm_choice(run.workspace_id)
            try:
                async with asyncio.timeout(self.settings.run_time_limit):
                    await execute_run(
                        self.services,
                        run.id,
                        choice,
                        run_dir,
                        run.code_execution,
                        self.settings.sandbox_timeout,
                        cancel_reason=lambda: worker.cancel_reason,
                    )
            except TimeoutError:
                limit = self.settings.run_time_limit
                self.services.runs.finish(
                    run.id, "failed", stop_reason="time limit", error=f"ran longer than {limit} s"
                )

        worker = _Worker(f"agentdeck-run-{run.id}", execute)
        with self._lock:
            self._runs[run.id] = worker
        worker.start()
        return run

    def cancel_run(self, run_id: uuid.UUID, actor: str = "user", scope: uuid.UUID | None = None) -> RunPublic:
        run = self.services.runs.get(run_id, scope=scope)
        if run.status in FINISHED:
            raise Conflict(f"the run is already {run.status}", status=run.status)
        worker = self._runs.get(run_id)
        if worker is None or worker.done.is_set():
            # Nobody in this process is executing it (e.g. another process's run): record it.
            return self.services.runs.finish(run_id, "cancelled", stop_reason=f"cancelled by {actor}")
        worker.cancel(f"cancelled by {actor}")
        self._kill_sandbox(run_id)
        worker.done.wait(timeout=5)
        return self.services.runs.get(run_id)

    def _kill_sandbox(self, run_id: uuid.UUID) -> None:
        venv = self.run_dir(run_id) / "venv"
        if venv.exists():
            from core.runtime.sandbox import Sandbox

            Sandbox(venv=venv, timeout=0).kill_processes()

    def wait_for_run(self, run_id: uuid.UUID, timeout: float) -> bool:
        worker = self._runs.get(run_id)
        return worker is None or worker.done.wait(timeout)

    def run_dir(self, run_id: uuid.UUID) -> Path:
        return self.settings.data_dir / "runs" / str(run_id)

    # -- run files -------------------------------------------------------------------------
    def run_files(self, run_id: uuid.UUID, scope: uuid.UUID | None = None) -> list[str]:
        """MetaGPT's project files of a run, relative to its workspace folder."""
        self.services.runs.get(run_id, scope=scope)
        root = self.run_dir(run_id) / "workspace"
        if not root.exists():
            return []
        files: list[str] = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".git" not in path.relative_to(root).parts:
                files.append(str(path.relative_to(root)))
                if len(files) >= MAX_FILES_LISTED:
                    break
        return files

    def read_run_file(self, run_id: uuid.UUID, relative: str, scope: uuid.UUID | None = None) -> str:
        self.services.runs.get(run_id, scope=scope)
        root = (self.run_dir(run_id) / "workspace").resolve()
        if len(relative) > 1024 or "\x00" in relative:
            raise NotFound("run file", relative[:100])
        try:
            target = (root / relative).resolve()
            if root not in target.parents or not target.is_file():
                raise NotFound("run file", relative)
            with target.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES)  # never more than the limit, however big the file
        except OSError as exc:
            raise NotFound("run file", relative[:100]) from exc
        return data.decode("utf-8", errors="replace")

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            workers = [w for w in self._runs.values() if not w.done.is_set()]
        with self._chat_lock:
            workers += [w for w in self._chats.values() if not w.done.is_set()]
        for worker in workers:
            worker.cancel("server shutting down")
        for worker in workers:
            worker.done.wait(timeout)
