"""Executing team runs and chat answers as durable workflows on DBOS Transact.

- A team run is one workflow (its id is the run's id) on the `agentdeck-runs` queue, at most
  `AGENTDECK_MAX_RUNS` at once per process; each MetaGPT round is one step. After a round the
  team is checkpointed in the run's folder (core/runtime/checkpoint.py) before the step's result
  is saved, so after a graceful stop or a SIGKILL the next start resumes at the next round and no
  LLM call of a finished round is made again (a round cut short is played again; its messages
  have deterministic ids and are stored once).
- A chat answer is one workflow per message on the `agentdeck-chat` queue, partitioned by agent
  with one at a time per agent: messages waiting for an answer survive a restart and are answered
  in order.
- DBOS keeps its state in a system database of its own: `<data dir>/dbos.sqlite` on SQLite (it
  polls with BEGIN IMMEDIATE, so not in agentdeck.db), the `dbos` schema of the app's database
  on PostgreSQL. Its application version is AgentDeck's (not a hash of the source: a code change
  must not orphan pending runs) and its executor id is stable per process (`--worker-id`,
  default: host + data dir), so a restarted process recovers its own workflows.
- DBOS is one per process: `DurableHost.launch` makes this Services' host the process's one
  (tests build many Services in one process; launching a new one destroys the previous one).
- Cancel: our own signal stops the round in progress at once (no LLM request afterwards); DBOS's
  cancel keeps a queued workflow from starting and a running one from taking another step.
- Not resuming (`--no-resume`, AGENTDECK_RESUME=false): before DBOS launches (and recovers this
  executor's pending workflows), each pending run workflow is cancelled in DBOS and its run marked
  `interrupted`, members freed: nothing of it executes. Chat answers still resume. A person may
  resume such a run later (`resume_point` + `resume`): DBOS resumes its cancelled workflow on the
  run queue, which replays the rounds it recorded and plays the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS, DBOSClient, DBOSConfig, SetEnqueueOptions, SetWorkflowID
from dbos._error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

from core.errors import Conflict, NotFound
from core.runtime.checkpoint_files import checkpoint_exists
from core.status import RUN_FINISHED, AgentStatus, RunStatus
from core.version import VERSION

if TYPE_CHECKING:
    from dbos import Queue

    from core.runs import RunPublic
    from core.runtime.engine import TeamSession
    from core.services import Services

log = logging.getLogger(__name__)


class _CancelIsNotAnError(logging.Filter):
    """A person cancelling a run is not an error: DBOS logs the cancelled workflow's end as one."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, DBOSAwaitedWorkflowCancelledError | DBOSWorkflowCancelledError)


logging.getLogger("dbos").addFilter(_CancelIsNotAnError())

APP_NAME = "agentdeck"
RUN_QUEUE = "agentdeck-runs"
CHAT_QUEUE = "agentdeck-chat"
RUN_WORKFLOW = "agentdeck.team_run"
CHAT_WORKFLOW = "agentdeck.chat_answer"
ROUND_STEP = "agentdeck.round"
CHAT_CONCURRENCY = 4
SWEEP_SECONDS = 10.0
# How often a run waiting for a slot of this process checks whether the process is stopping.
SLOT_POLL_SECONDS = 1.0
ORPHAN_AGE_SECONDS = 60
LOCK_NAMESPACE = 0x41474454  # "AGDT": advisory locks of AgentDeck executor ids
NOT_RESUMED = "not resumed at start (--no-resume)"


class ExecutorIdInUse(RuntimeError):
    """Another live process executes under this executor id."""


_host_lock = threading.RLock()
_current: DurableHost | None = None


def default_executor_id(data_dir: Path) -> str:
    """Stable across restarts of one installation, distinct between hosts and data dirs."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return f"{socket.gethostname()}-{digest}"


def system_database_url(settings: Any) -> str:
    if settings.is_sqlite:
        return f"sqlite:///{settings.data_dir / 'dbos.sqlite'}"
    return str(settings.resolved_database_url)


def chat_workflow_id(agent_id: uuid.UUID, seq: int) -> str:
    """Sortable within an agent: DBOS breaks ties of enqueue time (ms) by workflow id, and the
    answers of one agent must follow its thread's order."""
    return f"chat-{agent_id}-{seq:012d}"


def _host() -> DurableHost:
    host = _current
    if host is None:
        raise RuntimeError("no AgentDeck durable host is launched in this process")
    return host


class DurableHost:
    """The executing part of the runtime: DBOS, its queues, and the team sessions in progress."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self._base_executor_id = self.settings.worker_id or default_executor_id(self.settings.data_dir)
        self.executor_id = self._base_executor_id
        self.sessions: dict[uuid.UUID, TeamSession] = {}
        # (checkpoint seconds, round seconds incl. the checkpoint) of every round played here (bench/).
        self.round_stats: list[tuple[float, float]] = []
        # agent -> the answers this process is writing: (loop, task) to stop them at shutdown
        self.chat_tasks: dict[uuid.UUID, list[tuple[Any, Any]]] = {}
        self._lock = threading.Lock()
        self.launched = False
        self.stopping = False
        # DBOS counts a worker's running workflows only once their thread runs, so two polls of
        # the queue can admit more than AGENTDECK_MAX_RUNS (seen with runs taken over together
        # from a dead process, and with runs queued together under load): a slot of our own,
        # taken before anything of a run executes, keeps the limit exact. A run admitted beyond it
        # waits here, counted by DBOS as running, and stays pending in DBOS if the process stops.
        self._run_slots = threading.BoundedSemaphore(max(1, self.settings.max_runs))
        # Those runs, in arrival order: still waiting, so first in line on the pages.
        self._slot_waiters: list[uuid.UUID] = []
        self.run_queue: Queue | None = None
        self.chat_queue: Queue | None = None
        self._liveness: Any = None  # PostgreSQL: the connection holding our executor id's lock
        self._dir_lock: Any = None  # SQLite: the open file holding <data dir>/dbos.lock
        self._sweeper: threading.Thread | None = None
        self._sweep_stop = threading.Event()

    # -- liveness and takeover (PostgreSQL) ------------------------------------------------
    # Open-source DBOS has no dead-executor detection. On PostgreSQL each executing process holds
    # a session advisory lock on its executor id for as long as it lives: the database releases
    # it the moment the process dies (SIGKILL included). Every SWEEP_SECONDS a live process tries
    # the locks of the executors that own pending workflows; one it can take is dead, and its
    # workflows are re-enqueued for the live ones (DBOS's own recovery, which admits one runner).
    def _claim_executor_id(self) -> None:
        if self.settings.is_sqlite or not self.settings.executor:
            return
        import sqlalchemy as sa

        conn = self.services.db.engine.connect()
        taken = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:ns, hashtext(:id))"), {"ns": LOCK_NAMESPACE, "id": self.executor_id}
        ).scalar()
        conn.commit()
        if not taken:
            conn.invalidate()
            conn.close()
            raise ExecutorIdInUse(
                f"executor id {self.executor_id!r} belongs to another live AgentDeck process on this database; "
                "give each process its own with --worker-id (AGENTDECK_WORKER_ID)"
            )
        self._liveness = conn

    def _claim_sqlite_data_dir(self) -> bool:
        """SQLite: one executing process per data dir, held by an OS file lock (released when the
        process dies). False if another live process holds it."""
        if not self.settings.is_sqlite:
            return True
        if self._dir_lock is not None:
            return True
        handle = (self.settings.data_dir / "dbos.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._dir_lock = handle
        return True

    def _release_sqlite_data_dir(self) -> None:
        handle, self._dir_lock = self._dir_lock, None
        if handle is not None:
            handle.close()  # closing drops the lock

    def check_executor_id_free(self) -> None:
        """At startup, before serving: ExecutorIdInUse if a live process executes under our id."""
        self._claim_executor_id()
        self._release_executor_id()

    def _release_executor_id(self) -> None:
        conn, self._liveness = self._liveness, None
        if conn is not None:
            try:
                conn.invalidate()  # ends the session (not back to the pool): the lock goes with it
                conn.close()
            except Exception:
                log.debug("closing the liveness connection", exc_info=True)

    def _sweep_loop(self) -> None:
        self._sweep_stop.clear()
        while not self._sweep_stop.wait(SWEEP_SECONDS):
            try:
                self.take_over_dead_executors()
            except Exception:
                log.exception("takeover sweep failed; retrying")

    def take_over_dead_executors(self) -> list[str]:
        """Re-enqueue the pending workflows of executors that are no longer alive."""
        import sqlalchemy as sa

        pending = DBOS.list_workflows(status=["PENDING"], app_version=VERSION, load_input=False, load_output=False)
        owners = sorted({w.executor_id for w in pending if w.executor_id and w.executor_id != self.executor_id})
        taken: list[str] = []
        for owner in owners:
            with self.services.db.engine.connect() as conn:
                args = {"ns": LOCK_NAMESPACE, "id": owner}
                if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:ns, hashtext(:id))"), args).scalar():
                    continue  # alive
                try:
                    log.warning("executor %s is gone: taking over its workflows", owner)
                    DBOS._recover_pending_workflows([owner])
                    taken.append(owner)
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, hashtext(:id))"), args)
                    conn.commit()
        return taken

    # -- cancel from any process -------------------------------------------------------------
    async def follow_finished_runs(self) -> None:
        """A run finished elsewhere (cancelled through another process) stops here at once: the
        bus carries its `run_finished` event (LISTEN/NOTIFY on PostgreSQL)."""
        from core.events import EventFilter, EventType

        async with self.services.bus.subscribe(EventFilter(types=frozenset({EventType.RUN_FINISHED}))) as sub:
            async for event in sub:
                with self._lock:
                    session = self.sessions.get(event.run_id) if event.run_id else None
                if session is not None:
                    reason = str((event.data.get("run") or {}).get("stop_reason") or "finished elsewhere")
                    session.abort(reason)

    # -- lifecycle -------------------------------------------------------------------------
    def launch(self) -> None:
        """Make DBOS this process's, launched for these services (idempotent). DBOS recovers the
        workflows this executor left pending: they resume where they stopped."""
        global _current
        with _host_lock:
            if self.launched and _current is self:
                return
            if _current is not None and _current is not self:
                _current.destroy()
            settings = self.settings
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            max_runs = max(1, settings.max_runs)
            config: DBOSConfig = {
                "name": APP_NAME,
                "system_database_url": system_database_url(settings),
                "application_version": VERSION,
                "executor_id": self.executor_id,
                # Each running workflow holds a thread; the queues bound how many run at once.
                "max_executor_threads": max_runs + CHAT_CONCURRENCY + 8,
                "log_level": "WARNING",
            }
            self.executor_id = self._base_executor_id
            config["executor_id"] = self.executor_id
            executing = settings.executor and self._claim_sqlite_data_dir()
            if settings.executor and not executing:
                # Another live process executes this data dir's runs (SQLite is one executor):
                # this one only queues, cancels and reads, under an id of its own.
                config["executor_id"] = self.executor_id = f"{self._base_executor_id}-client-{os.getpid()}"
            DBOS(config=config)
            try:
                if not executing:
                    DBOS.listen_queues([])  # serves, enqueues and cancels; executes nothing
                self._claim_executor_id()
                if executing and not settings.resume:
                    # Before launch: DBOS.launch() re-enqueues this executor's pending workflows
                    # and queues persist, so its run queue would start them at once.
                    self._decline_resumption()
                DBOS.launch()
                self.run_queue = DBOS.register_queue(RUN_QUEUE, worker_concurrency=max_runs, polling_interval_sec=0.5)
                self.chat_queue = DBOS.register_queue(
                    CHAT_QUEUE,
                    worker_concurrency=CHAT_CONCURRENCY,
                    partition_concurrency=1,
                    polling_interval_sec=0.5,
                )
            except BaseException:
                DBOS.destroy()
                self._release_sqlite_data_dir()
                raise
            self.launched, self.stopping = True, False
            _current = self
            if executing:
                self._close_orphans()
            if self._liveness is not None and executing:
                self._sweeper = threading.Thread(target=self._sweep_loop, name="agentdeck-takeover", daemon=True)
                self._sweeper.start()
            log.info("durable execution launched (executor %s, version %s)", self.executor_id, VERSION)

    def destroy(self, timeout: float = 5.0) -> None:
        """Stop: rounds and answers in progress are abandoned unrecorded (they resume at the next
        start); DBOS stops."""
        global _current
        with _host_lock:
            if not self.launched:
                return
            self.stopping = True
            with self._lock:
                sessions = list(self.sessions.values())
            for session in sessions:
                session.suspend()
            with self._lock:
                chats = [entry for entries in self.chat_tasks.values() for entry in entries]
            for loop, task in chats:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(task.cancel)
            deadline = time.monotonic() + timeout
            while (self.sessions or self.chat_tasks) and time.monotonic() < deadline:
                time.sleep(0.02)
            self._sweep_stop.set()
            if self._sweeper is not None:
                self._sweeper.join(timeout=5)
                self._sweeper = None
            DBOS.destroy(workflow_completion_timeout_sec=0)
            self._release_executor_id()
            self._release_sqlite_data_dir()
            self.launched = False
            if _current is self:
                _current = None

    def _system_database_exists(self) -> bool:
        if self.settings.is_sqlite:
            return (self.settings.data_dir / "dbos.sqlite").is_file()
        import sqlalchemy as sa

        with self.services.db.engine.connect() as conn:
            return conn.execute(sa.text("SELECT to_regclass('dbos.workflow_status')")).scalar() is not None

    def _decline_resumption(self) -> list[uuid.UUID]:
        """`--no-resume`: the runs this start would resume are `interrupted` instead, their members
        freed and their workflows cancelled in DBOS (kept, so a person can resume them later, and
        never recovered by a later start). Those are this executor's pending run workflows, and on
        SQLite (one executing process per data dir) also the started runs waiting in the queue
        (re-enqueued for recovery or resumed by a person, not picked up yet). Runs never started
        and chat answers are left to run."""
        if not self._system_database_exists():
            return []
        client = DBOSClient(system_database_url=system_database_url(self.settings), application_name=APP_NAME)
        declined: list[uuid.UUID] = []
        try:
            common: dict[str, Any] = {
                "name": RUN_WORKFLOW,
                "app_version": VERSION,
                "load_input": False,
                "load_output": False,
            }
            ids = [
                w.workflow_id for w in client.list_workflows(status="PENDING", executor_id=self.executor_id, **common)
            ]
            if self.settings.is_sqlite:
                for waiting in client.list_workflows(status="ENQUEUED", queue_name=RUN_QUEUE, **common):
                    try:
                        run = self.services.runs.get(uuid.UUID(waiting.workflow_id))
                    except NotFound:
                        continue
                    if run.attempts > 0:
                        ids.append(waiting.workflow_id)
            for workflow_id in ids:
                run_id = uuid.UUID(workflow_id)
                # The terminal status first: if this process dies before the cancel, the workflow
                # finds its run interrupted and cancels itself (play_round).
                declined_run: RunPublic | None
                try:
                    declined_run = self.services.runs.finish(run_id, RunStatus.INTERRUPTED, stop_reason=NOT_RESUMED)
                except NotFound:
                    declined_run = None
                client.cancel_workflow(workflow_id)
                if declined_run is not None and declined_run.status == RunStatus.INTERRUPTED:
                    self._release_members(run_id, "run not resumed")
                    declined.append(run_id)
                    log.warning("run %s not resumed (--no-resume): marked interrupted", run_id)
        finally:
            client.destroy()
        return declined

    def _close_orphans(self) -> None:
        """Runs left queued/running with no workflow at all (written by an AgentDeck without
        durable runs, or created by a process that died before queueing them) cannot resume:
        `interrupted`, with the reason, and their members are freed. Young runs are left alone
        (another process may be queueing them right now)."""
        from datetime import UTC, datetime, timedelta

        cutoff = datetime.now(UTC) - timedelta(seconds=ORPHAN_AGE_SECONDS)
        for run in self.services.runs.unfinished():
            if run.created_at > cutoff:
                continue
            if DBOS.list_workflows(workflow_ids=[str(run.id)], load_input=False, load_output=False):
                continue
            log.warning("run %s has no workflow to resume; marked interrupted", run.id)
            self.services.runs.finish(
                run.id, RunStatus.INTERRUPTED, stop_reason="left unfinished by a process that could not resume it"
            )
            self._release_members(run.id, "run interrupted")

    # -- runs ------------------------------------------------------------------------------
    def enqueue_run(self, run_id: uuid.UUID, start_round: int = 1) -> None:
        self.launch()
        assert self.run_queue is not None
        with SetWorkflowID(str(run_id)):
            self.run_queue.enqueue(team_run_workflow, start_round)

    def resume_point(self, run_id: uuid.UUID) -> tuple[int, bool]:
        """Where an interrupted run can continue: (round, whether its workflow is kept). Its
        cancelled workflow continues after the rounds it recorded; a run without a workflow (the
        orphan sweep's) after its last checkpointed round. Conflict if neither exists."""
        self.launch()
        found = DBOS.list_workflows(workflow_ids=[str(run_id)], load_input=False, load_output=False)
        if found:
            workflow = found[0]
            if workflow.status != "CANCELLED":
                raise Conflict(f"the run's workflow is {workflow.status.lower()}; there is nothing to resume")
            if workflow.app_version != VERSION:
                raise Conflict(
                    f"the run was executed by AgentDeck {workflow.app_version}; only that version can resume it"
                )
            steps = DBOS.list_workflow_steps(str(run_id), load_output=True)
            rounds = [
                s
                for s in steps
                if s["function_name"] == ROUND_STEP
                and s["error"] is None
                and isinstance(s["output"], tuple | list)
                and len(s["output"]) > 0
                and s["output"][0] == "continue"
            ]
            return len(rounds) + 1, True
        run_dir = self.services.runtime.run_dir(run_id)
        last = 0
        while checkpoint_exists(run_dir, last + 1):
            last += 1
        if last == 0:
            raise Conflict("the run has no saved round to resume from")
        return last + 1, False

    def resume(self, run_id: uuid.UUID, round_no: int, kept: bool) -> None:
        """Queue a reopened run again (after `resume_point`): its own workflow, or a new one
        starting at `round_no` from the checkpoint before it."""
        if kept:
            DBOS.resume_workflow(str(run_id), queue_name=RUN_QUEUE)
        else:
            self.enqueue_run(run_id, start_round=round_no)

    def fork_start_step(self, parent_id: uuid.UUID, round_no: int) -> int | None:
        """The workflow step a fork from round `round_no` starts at (the one after that round's), or
        None if the parent never completed that round."""
        self.launch()
        steps = DBOS.list_workflow_steps(str(parent_id), load_output=True)
        rounds = [s for s in steps if s["function_name"] == ROUND_STEP and s["error"] is None]
        if len(rounds) < round_no:
            return None
        done = rounds[round_no - 1]
        output = done["output"]
        if not (isinstance(output, tuple | list) and output and output[0] == "continue"):
            return None
        return int(done["function_id"]) + 1

    def enqueue_fork(self, parent_id: uuid.UUID, fork_id: uuid.UUID, start_step: int) -> None:
        """DBOS copies the parent's steps before `start_step` (its rounds 1..k, no LLM call) and
        queues the rest under the fork's id."""
        with SetWorkflowID(str(fork_id)):
            DBOS.fork_workflow(str(parent_id), start_step, application_version=VERSION, queue_name=RUN_QUEUE)

    def cancel_run(self, run_id: uuid.UUID, reason: str) -> None:
        """Stop the run's round in progress here at once, and its workflow wherever it is."""
        with self._lock:
            session = self.sessions.get(run_id)
        if session is not None:
            session.abort(reason)
        if self.launched:
            try:
                DBOS.cancel_workflow(str(run_id))
            except Exception:
                log.debug("no workflow to cancel for run %s", run_id, exc_info=True)

    def wait_for_run(self, run_id: uuid.UUID, timeout: float) -> bool:
        """Until the run is finished and nothing of it executes here any more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.services.runs.get(run_id).status in RUN_FINISHED and run_id not in self.sessions:
                return True
            time.sleep(0.05)
        return False

    def queue_position(self, run_id: uuid.UUID) -> int | None:
        """How many runs wait before this one (0: next), or None when it does not wait."""
        return self.queue_positions().get(run_id)

    def queue_positions(self) -> dict[uuid.UUID, int]:
        """Every waiting run's place (0: next), in one read of the queue: first the runs this
        process admitted that wait for one of its slots, then the queue's. (Another process's
        slot waiters are not seen from here: pages it serves place them.)"""
        if not self.launched:
            return {}
        waiting = DBOS.list_workflows(
            status=["ENQUEUED"], queue_name=RUN_QUEUE, sort_desc=False, load_input=False, load_output=False
        )
        with self._lock:
            ahead = list(self._slot_waiters)
        positions: dict[uuid.UUID, int] = {run_id: i for i, run_id in enumerate(ahead)}
        for w in waiting:
            with contextlib.suppress(ValueError):  # a run's workflow id is its run id
                positions.setdefault(uuid.UUID(w.workflow_id), len(positions))
        return positions

    def active_sessions(self) -> list[uuid.UUID]:
        with self._lock:
            return list(self.sessions)

    # -- chat ------------------------------------------------------------------------------
    def enqueue_chat(self, agent_id: uuid.UUID, message_id: uuid.UUID, seq: int) -> None:
        self.launch()
        assert self.chat_queue is not None
        with SetWorkflowID(chat_workflow_id(agent_id, seq)), SetEnqueueOptions(queue_partition_key=str(agent_id)):
            self.chat_queue.enqueue(chat_answer_workflow, str(agent_id), str(message_id))

    def chats_pending(self, agent_id: uuid.UUID) -> bool:
        """Answers of this agent queued or in progress (any process)."""
        if not self.launched:
            return False
        with self._lock:
            if self.chat_tasks.get(agent_id):
                return True
        pending = DBOS.list_workflows(
            status=["ENQUEUED", "PENDING"],
            workflow_id_prefix=f"chat-{agent_id}-",
            limit=1,
            load_input=False,
            load_output=False,
        )
        return bool(pending)

    # -- the workflow bodies (in a DBOS executor thread) -----------------------------------
    def run_body(self, run_id: uuid.UUID, start_round: int = 1) -> str:
        from core.runtime.outcomes import RunSuspended

        if not self._run_slots.acquire(blocking=False):
            with self._lock:
                self._slot_waiters.append(run_id)
            try:
                while not self._run_slots.acquire(timeout=SLOT_POLL_SECONDS):
                    if self.stopping:
                        raise RunSuspended
            finally:
                with self._lock:
                    self._slot_waiters.remove(run_id)
        try:
            return self._run_rounds(run_id, start_round)
        finally:
            self._run_slots.release()

    def _run_rounds(self, run_id: uuid.UUID, start_round: int) -> str:
        try:
            n_rounds = _start_step(str(run_id))
            if n_rounds < 0:
                return "failed"
            stop_reason = f"reached n_rounds ({n_rounds})"
            for round_no in range(start_round, n_rounds + 1):
                kind, reason = _round_step(str(run_id), round_no)
                if kind == "stop":
                    stop_reason = reason
                    break
                if kind in ("failed", "cancelled"):
                    return kind
            _complete_step(str(run_id), stop_reason)
            return "completed"
        except DBOSWorkflowCancelledError:
            # Cancelled from another process: that process recorded it; free the members here.
            self._release_members(run_id, "run cancelled")
            raise
        except Exception as exc:  # DBOS's own signals (ownership lost, cancel) are BaseExceptions: not here
            # Anything else that escaped the steps: the run must not stay `running`.
            from core.runtime.outcomes import describe_error

            log.exception("run %s failed outside a round", run_id)
            self.services.runs.finish(run_id, RunStatus.FAILED, stop_reason="error", error=describe_error(exc))
            self._release_members(run_id, "run failed")
            return "failed"
        finally:
            with self._lock:
                session = self.sessions.pop(run_id, None)
            if session is not None:
                self.round_stats.extend(zip(session.checkpoint_seconds, session.round_seconds, strict=False))
                session.close()

    def start(self, run_id: uuid.UUID) -> int:
        """Check that the run can execute at all (MetaGPT imports, its LLM resolves); a failure
        here makes it `failed` with the reason instead of leaving it queued."""
        run = self.services.runs.get(run_id)
        if run.status in RUN_FINISHED:
            return -1  # cancelled while it waited
        try:
            self.services.runtime.ensure_ready()
            self.services.runtime.llm_choice(run.workspace_id, run.llm_profile)
        except Exception as exc:
            from core.runtime.outcomes import describe_error

            error = describe_error(exc)
            log.warning("run %s cannot start: %s", run_id, error)
            self.services.runs.finish(run_id, RunStatus.FAILED, stop_reason="error", error=error)
            return -1
        return run.n_rounds

    def play_round(self, run_id: uuid.UUID, round_no: int) -> tuple[str, str]:
        run = self.services.runs.get(run_id)
        if run.status == RunStatus.INTERRUPTED:
            # Not to be resumed now, yet resumable later: the workflow ends cancelled, not finished.
            self._release_members(run_id, "run interrupted")
            DBOS.cancel_workflow(str(run_id))
            raise DBOSWorkflowCancelledError(f"run {run_id} is interrupted")
        if run.status in RUN_FINISHED:
            self._release_members(run_id, "run ended")
            return ("cancelled" if run.status == RunStatus.CANCELLED else "failed", run.stop_reason)
        if self.stopping:
            from core.runtime.outcomes import RunSuspended

            raise RunSuspended
        session = self.sessions.get(run_id)
        if session is None or session.rounds_done != round_no - 1:
            session = self._open_session(run, round_no)
            if session is None:
                return ("failed", "error")
        return session.play(round_no, self._deadline(run_id))

    def complete(self, run_id: uuid.UUID, stop_reason: str) -> None:
        session = self.sessions.get(run_id)
        if session is not None:
            session.end(RunStatus.COMPLETED, stop_reason)
        else:
            self.services.runs.finish(run_id, RunStatus.COMPLETED, stop_reason=stop_reason)
            self._release_members(run_id, "run ended")

    def _open_session(self, run: Any, round_no: int) -> TeamSession | None:
        from core.runtime.outcomes import describe_error

        runtime = self.services.runtime
        try:
            # A resumed workflow replays its start step without running it: import here too.
            runtime.ensure_ready()
            from core.runtime.engine import TeamSession

            choice = runtime.llm_choice(run.workspace_id, run.llm_profile)  # the run's own, after a resume too
            session = TeamSession(
                self.services, run.id, choice, runtime.files.run_dir(run.id), self.settings.sandbox_timeout
            )
        except Exception as exc:
            self.services.runs.finish(run.id, RunStatus.FAILED, stop_reason="error", error=describe_error(exc))
            self._release_members(run.id, "run failed")
            return None
        with self._lock:
            old = self.sessions.pop(run.id, None)
            self.sessions[run.id] = session
        if old is not None:
            old.close()
        first = run.attempts == 0  # a run resumed by a person is queued again, and not its first
        try:
            self.services.runs.mark_running(run.id, choice.label, resumed_at_round=None if first else round_no)
            if not first:
                log.warning("run %s resumed at round %d", run.id, round_no)
            session.build(round_no - 1)
        except Exception as exc:
            session.fail(exc)
            return None
        return session

    def _deadline(self, run_id: uuid.UUID) -> float:
        run = self.services.runs.get(run_id)
        started = run.started_at.timestamp() if run.started_at else time.time()
        return started + self.settings.run_time_limit

    def _release_members(self, run_id: uuid.UUID, reason: str) -> None:
        for agent_id in self.services.runs.busy_members(run_id):
            try:
                self.services.agents.set_status(agent_id, AgentStatus.ACTIVE, reason=reason, actor="runtime")
            except Exception:
                log.info("agent %s of run %s not released", agent_id, run_id, exc_info=True)

    def answer(self, agent_id: uuid.UUID, message_id: uuid.UUID) -> None:
        """One chat answer, on a loop of its own in this workflow thread. At shutdown it is
        cancelled (a BaseException, not recorded by DBOS): it is answered again at the next start."""
        import asyncio

        from core.runtime.outcomes import describe_error

        runtime = self.services.runtime
        if self.stopping:
            raise asyncio.CancelledError
        try:
            runtime.ensure_ready()
            from core.runtime.engine import execute_chat

            agent = self.services.agents.get(agent_id)
            if agent.status not in (AgentStatus.ACTIVE, AgentStatus.BUSY):
                return  # stopped meanwhile: the message stays unanswered, like one sent to an inactive agent
            choice = runtime.llm_choice(agent.workspace_id, agent.config.get("llm_profile"))
        except Exception as exc:
            reason = f"answer failed: {describe_error(exc)}"
            log.warning("chat of agent %s cannot start: %s", agent_id, reason)
            try:
                self.services.agents.set_status(agent_id, AgentStatus.ERROR, reason=reason[:500], actor="runtime")
            except Exception:
                log.info("agent %s not put in error", agent_id, exc_info=True)
            return
        loop = asyncio.new_event_loop()
        task = loop.create_task(execute_chat(self.services, agent_id, message_id, choice))
        entry = (loop, task)
        with self._lock:
            self.chat_tasks.setdefault(agent_id, []).append(entry)
        try:
            loop.run_until_complete(task)
        finally:
            with self._lock:
                entries = self.chat_tasks.get(agent_id, [])
                if entry in entries:
                    entries.remove(entry)
                if not entries:
                    self.chat_tasks.pop(agent_id, None)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


# -- workflows and steps (registered with DBOS at import; bodies in DurableHost) -------------


@DBOS.workflow(name=RUN_WORKFLOW)
def team_run_workflow(start_round: int = 1) -> str:
    """`start_round` > 1 only for a run resumed from its checkpoints without a workflow of its own."""
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    return _host().run_body(uuid.UUID(workflow_id), start_round)


@DBOS.step(name="agentdeck.run_start")
def _start_step(run_id: str) -> int:
    return _host().start(uuid.UUID(run_id))


@DBOS.step(name=ROUND_STEP)
def _round_step(run_id: str, round_no: int) -> tuple[str, str]:
    return _host().play_round(uuid.UUID(run_id), round_no)


@DBOS.step(name="agentdeck.run_complete")
def _complete_step(run_id: str, stop_reason: str) -> None:
    _host().complete(uuid.UUID(run_id), stop_reason)


@DBOS.workflow(name=CHAT_WORKFLOW)
def chat_answer_workflow(agent_id: str, message_id: str) -> None:
    _answer_step(agent_id, message_id)


@DBOS.step(name="agentdeck.answer")
def _answer_step(agent_id: str, message_id: str) -> None:
    _host().answer(uuid.UUID(agent_id), uuid.UUID(message_id))
