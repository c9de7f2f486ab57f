"""Waiting for something that happens elsewhere (another process, thread or the event loop):
poll a condition until it holds or a timeout fails the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.25) -> Any:
    """Poll from synchronous code; returns the predicate's first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll inside the event loop (the `user` fixture's app runs there). Until the timeout, an
    element not found yet counts as False; after it, the condition's own failure is the test's."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if condition():
                return
        except (AssertionError, LookupError):
            pass
        await asyncio.sleep(0.05)
    assert condition()
