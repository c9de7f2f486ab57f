"""Live updates for dashboard pages: the event bus, scoped to one browser client.

    live.subscribe(services.bus, EventFilter(workspace_id=ws.id), on_event)

The handler runs inside the client's context (so it can update elements) for every event that
matches, in seq order, including pushed-only `llm_token` events. The subscription ends when the
client is deleted (tab closed or navigated away), so nothing keeps stale clients alive. A handler
that raises is logged and the stream goes on. A `resume` event means the client fell behind and
was re-synced from the log: pages that keep derived state may reload what they show.

Batching per client and tick comes from the two queues involved: the subscription's queue hands
over every event already waiting without yielding to the event loop, so a burst is handled in one
go, and NiceGUI's outbox then sends the client one update for all of it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from nicegui import background_tasks, context

from core.events import EventBus, EventFilter, EventOut

log = logging.getLogger(__name__)

Handler = Callable[[EventOut], Awaitable[None] | None]


def subscribe(bus: EventBus, flt: EventFilter, handler: Handler, since: int | None = None) -> None:
    """Deliver matching events of `bus` to `handler` in the current client's context until it goes."""
    client = context.client
    subscription = bus.subscribe(flt, since)

    async def pump() -> None:
        async for event in subscription:
            if client.is_deleted:  # the page is gone; stop quietly
                break
            try:
                with client:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                log.exception("live handler failed for %s", event.type)

    task = background_tasks.create(pump(), name=f"live-{flt}")

    def stop() -> None:
        subscription.close()
        task.cancel()

    client.on_delete(stop)
