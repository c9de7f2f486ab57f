""" "Test connection" of an LLM profile: one short request, on the caller's event loop.

It never holds a worker thread while the endpoint thinks (the API route awaits it), it gives up
after `TEST_TIMEOUT` seconds, the endpoint is re-checked against the SSRF policy right before
the call (DNS may have changed since the profile was saved), and its report names the error's
kind and HTTP status only: an upstream body can carry anything (a key echoed back, HTML, a
message written to fool whoever reads it), so it is never shown.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from core.errors import DomainError

if TYPE_CHECKING:
    from core.runtime.manager import ConnectionTest

TEST_TIMEOUT = 15.0


def describe_llm_error(error: BaseException) -> str:
    """The kind of failure and its HTTP status, never the upstream's text."""
    inner = getattr(error, "error", error)
    status = getattr(inner, "status_code", None)
    kind = type(inner).__name__
    if isinstance(inner, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {TEST_TIMEOUT:.0f} s"
    return f"{kind} (HTTP {status})" if status else kind


async def test_connection(
    runtime: Any, profile_id: uuid.UUID, scope: uuid.UUID | None, timeout: float = TEST_TIMEOUT
) -> ConnectionTest:
    from core.runtime.manager import ConnectionTest
    from core.runtime.roles import close_llm

    services = runtime.services
    started = time.monotonic()
    try:
        profile = await asyncio.to_thread(services.llm_profiles.get, profile_id, scope)
        await asyncio.to_thread(services.llm_profiles.policy.check, profile.base_url or "")
        await asyncio.to_thread(runtime.ensure_ready)
        choice = await asyncio.to_thread(runtime.llm_choice, profile.workspace_id, profile.name)
        llm = choice.make_llm()
        try:
            async with asyncio.timeout(timeout):
                answer = str(await llm.aask("Reply with the single word OK.", stream=False))
        finally:
            await close_llm(llm)
    except DomainError as exc:
        if exc.__class__.__name__ == "NotFound":
            raise
        return ConnectionTest(ok=False, message=str(exc)[:300], seconds=time.monotonic() - started)
    except BaseException as exc:  # LlmCallFailed is a BaseException; report, never raise
        if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
            raise
        return ConnectionTest(ok=False, message=describe_llm_error(exc), seconds=time.monotonic() - started)
    return ConnectionTest(ok=True, message=answer.strip()[:200], seconds=time.monotonic() - started)
