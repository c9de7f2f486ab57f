"""The live event stream over WebSocket (SPEC §7).

    /ws/agents/stream?workspace_id=..&run_id=..&since=..   every event of the token's workspace
                                                           (of one run with `run_id`)
    /ws/agents/{agent_id}?since=..                         one agent's events

Handshake: the token comes as `Authorization: Bearer <token>` or as `?token=` (browsers cannot
set headers on a WebSocket). Everything is checked before the connection is accepted, so a
refusal is an ordinary HTTP answer with a JSON `{"detail": ...}` body: 401 for a missing, wrong
or revoked token, 404 for another workspace's (or an unknown) workspace, agent or run, 422 for a
malformed id or `since`.

Frames, server → client, one JSON object per text frame:
- an event: `{"seq", "type", "workspace_id", "agent_id", "run_id", "ts", "data"}` (`EventOut`).
  Without `since` the stream starts where this server's bus has read the log up to (a change
  committed a moment before connecting may still arrive); with `since=N` it first replays every
  stored event after seq N, in order, then continues live, without gaps or duplicates.
  `llm_token` events are pushed only: they have `"seq": null` and are never replayed.
- `{"type": "resume", "seq": null, ..., "data": {"since": N}}`: this client fell behind and its
  backlog was dropped. It is forwarded, not hidden: the stored events after N follow at once
  (nothing stored is lost), but `llm_token` chunks pushed meanwhile are gone, so a client that
  assembles streamed text should re-read the finished message instead.
- `{"type": "ping"}` every `ws_ping_seconds` (20).

Client → server: any frame (`{"type": "pong"}` is the polite one) counts as a sign of life; its
content is ignored. A client silent for `ws_idle_seconds` (60) is closed with code 4408.

Close codes after the handshake (4000 + the HTTP status, as in api/errors.py): 4408 idle,
4401 the token was revoked (checked at every ping), 1011 the server could not read the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.deps import Principal, ServicesDep, WebSocketPrincipal
from api.limits import WS_SLOTS
from core.errors import InvalidInput, NotFound
from core.events import DEFAULT_QUEUE_SIZE, EventFilter, Subscription
from core.services import Services

log = logging.getLogger(__name__)


# Events buffered per client before it counts as fallen behind (see the `resume` frame).
QUEUE_SIZE = DEFAULT_QUEUE_SIZE
CLOSE_TIMEOUT = 5.0

CLOSE_IDLE = 4408
CLOSE_REVOKED = 4401
CLOSE_ERROR = 1011
PING_FRAME = '{"type":"ping"}'

router = APIRouter(tags=["events"])

Since = Annotated[
    str | None,
    Query(description="the last seq the client saw: replay every stored event after it, then go live"),
]


# The stream route comes first: /ws/agents/{agent_id} would match "stream" too.
@router.websocket("/ws/agents/stream")
async def workspace_stream(
    websocket: WebSocket,
    principal: WebSocketPrincipal,
    services: ServicesDep,
    workspace_id: Annotated[str | None, Query(description="the token's own workspace (the default)")] = None,
    run_id: Annotated[str | None, Query(description="only this run's events")] = None,
    since: Since = None,
) -> None:
    """Every event of the token's workspace, or of one of its runs."""
    workspace = principal.workspace(_uuid("workspace_id", workspace_id) if workspace_id else None)
    start = _since(since)
    run = _uuid("run_id", run_id) if run_id else None
    if run is not None:
        await asyncio.to_thread(services.runs.get, run, workspace)
    await stream_events(websocket, services, principal, EventFilter(workspace_id=workspace, run_id=run), start)


@router.websocket("/ws/agents/{agent_id}")
async def agent_stream(
    websocket: WebSocket,
    principal: WebSocketPrincipal,
    services: ServicesDep,
    agent_id: Annotated[str, Path(description="an agent of the token's workspace")],
    since: Since = None,
) -> None:
    """One agent's events."""
    agent = _uuid("agent_id", agent_id)
    start = _since(since)
    await asyncio.to_thread(services.agents.get, agent, principal.workspace_id)
    flt = EventFilter(workspace_id=principal.workspace_id, agent_id=agent)
    await stream_events(websocket, services, principal, flt, start)


# Ids and `since` are parsed here rather than typed in the signature: FastAPI's validation error
# on a WebSocket refuses the handshake with a bare 403, a DomainError with the REST API's JSON 422.
def _uuid(name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput(f"{name} is not a valid UUID: {value[:60]!r}") from exc


def _since(value: str | None) -> int | None:
    if not value:
        return None
    try:
        seq = int(value)
    except ValueError as exc:
        raise InvalidInput(f"since must be a seq (an integer >= 0), not {value[:60]!r}") from exc
    if seq < 0:
        raise InvalidInput("since must be >= 0")
    return seq


async def stream_events(
    websocket: WebSocket, services: Services, principal: Principal, flt: EventFilter, since: int | None
) -> None:
    """Accept, then forward the subscription until either side ends it; always unsubscribes."""
    # Subscribed before the client sees the connection open: whatever it does next is delivered.
    if not WS_SLOTS.acquire(principal.token_id, services.settings.max_ws_per_token):
        await websocket.close(code=1008, reason="too many open streams for this token")
        return
    subscription = services.bus.subscribe(flt, since, maxsize=QUEUE_SIZE)
    try:
        await websocket.accept()
        await _Connection(websocket, services, principal).serve(subscription)
    finally:
        subscription.close()
        WS_SLOTS.release(principal.token_id)


class _Connection:
    """Three tasks on one socket: forward events, listen to the client, ping and watch for idleness.

    The first one to finish decides how the connection ends; the other two are cancelled.
    """

    def __init__(self, websocket: WebSocket, services: Services, principal: Principal) -> None:
        self.websocket = websocket
        self.services = services
        # Settings (AGENTDECK_WS_self.ping_seconds / AGENTDECK_WS_self.idle_seconds) so tests can shrink them.
        self.ping_seconds = float(services.settings.ws_ping_seconds)
        self.idle_seconds = float(services.settings.ws_idle_seconds)
        self.principal = principal
        self.loop = asyncio.get_running_loop()
        self.last_heard = self.loop.time()
        self.send_lock = asyncio.Lock()

    async def serve(self, subscription: Subscription) -> None:
        tasks = [
            asyncio.create_task(self._forward(subscription)),
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._keep_alive()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            # Not gather(): if this task is cancelled meanwhile, gather raises a child's
            # CancelledError instead of ours, and the canceller would not recognise it.
            await asyncio.wait(tasks)
        outcomes = [_outcome(task) for task in tasks]
        close = next((outcome for task, outcome in zip(tasks, outcomes, strict=True) if task in done and outcome), None)
        if close is not None and self._open():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(*close), CLOSE_TIMEOUT)

    def _open(self) -> bool:
        ws = self.websocket
        return ws.client_state == WebSocketState.CONNECTED and ws.application_state == WebSocketState.CONNECTED

    async def _send(self, text: str) -> bool:
        """False when the client is gone, or has not taken a frame for as long as it may be silent."""
        async with self.send_lock:
            try:
                await asyncio.wait_for(self.websocket.send_text(text), self.idle_seconds)
            except (TimeoutError, OSError, RuntimeError, WebSocketDisconnect):
                return False
        return True

    async def _forward(self, subscription: Subscription) -> tuple[int, str] | None:
        events = aiter(subscription)
        try:
            while True:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return None
                except Exception:
                    log.exception("event stream could not read the event log")
                    return CLOSE_ERROR, "could not read the event log"
                if not await self._send(event.model_dump_json()):
                    return None
        finally:
            with contextlib.suppress(RuntimeError):
                await events.aclose()

    async def _listen(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.last_heard = self.loop.time()

    async def _keep_alive(self) -> tuple[int, str] | None:
        next_ping = self.loop.time() + self.ping_seconds
        while True:
            await asyncio.sleep(max(0.0, min(next_ping, self.last_heard + self.idle_seconds) - self.loop.time()))
            now = self.loop.time()
            if now - self.last_heard >= self.idle_seconds:
                return CLOSE_IDLE, f"no frame from the client for {self.idle_seconds:g} s"
            if now >= next_ping:
                if not await self._token_is_live():
                    return CLOSE_REVOKED, "the token has been revoked"
                if not await self._send(PING_FRAME):
                    return None
                next_ping = now + self.ping_seconds

    async def _token_is_live(self) -> bool:
        try:
            token = await asyncio.to_thread(self.services.tokens.get, self.principal.token_id)
        except NotFound:
            return False
        except Exception:  # a database blip does not end a stream that was allowed
            log.warning("could not re-check the token of an event stream", exc_info=True)
            return True
        return not token.revoked


def _outcome(task: asyncio.Task[tuple[int, str] | None]) -> tuple[int, str] | None:
    """How a finished task wants the connection closed (None: no close frame to send)."""
    if task.cancelled():
        return None
    if (error := task.exception()) is not None:
        log.error("event stream task failed", exc_info=error)
        return CLOSE_ERROR, "internal error"
    return task.result()
