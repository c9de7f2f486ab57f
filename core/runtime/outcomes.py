"""How a round or an answer ends abnormally, without importing MetaGPT.

The durable layer needs these before MetaGPT is imported, and must not import it lazily from a
workflow thread on its own: MetaGPT's modules import each other, and two threads importing them at
once deadlock (`_DeadlockError`). MetaGPT is imported only by `LlmAccess.ensure_ready`, under its lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.runtime.observe import AgentBinding


class LlmCallFailed(BaseException):
    """An LLM request failed after the client's own retries; ends the chat or run."""

    def __init__(self, agent: AgentBinding | None, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.agent = agent
        self.error = error


class RunSuspended(BaseException):
    """The process is stopping: the round in progress is abandoned without recording anything,
    so the run's workflow stays pending and resumes at this round at the next start. A
    BaseException: DBOS records a step's `Exception` as its outcome, never this."""


def describe_error(error: BaseException) -> str:
    inner = error.error if isinstance(error, LlmCallFailed) else error
    text = f"{type(inner).__name__}: {inner}".strip()
    return text[:2000]
