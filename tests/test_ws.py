"""The WebSocket event stream (SPEC §7) against the real app process, with a real client.

Changes are made over the REST API where that is the point of the test, otherwise through a
second service container on the same database (as another AgentDeck process would): the server's
bus picks them up from the log (a 1 s poll on SQLite, LISTEN/NOTIFY on PostgreSQL), so both paths
end in the same stream. Two app processes: `deck` pings every second with the default idle limit,
`brisk` also closes clients silent for 3 s. What only the server's memory can show (the
subscriber count, a client falling behind) is checked in process at the end.

Every await is bounded, so a missing frame fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import api.ws
from api.errors import install_error_handlers
from core.config import Settings
from core.context import ContextUpdate
from core.events import EventType, head_seq
from core.runs import RunCreate
from core.schemas import AgentCreate, AgentPublic, WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from core.services import Services, build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.waiting import wait_until

WAIT = 10.0  # seconds one expected frame may take
RUN_WAIT = 180.0  # seconds a demo-model team run may take
BRISK_IDLE = 3.0
FRAME_KEYS = {"seq", "type", "workspace_id", "agent_id", "run_id", "ts", "data"}


@dataclass
class Deck:
    """A running app and a second service container on its database."""

    app: AppProcess
    services: Services

    def url(self, path: str, **params: object) -> str:
        query = urlencode({k: str(v) for k, v in params.items() if v is not None})
        return f"ws://127.0.0.1:{self.app.port}{path}" + (f"?{query}" if query else "")

    def workspace(self, **settings: object) -> WorkspacePublic:
        ws = self.services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))
        if settings:
            ws = self.services.workspaces.update(ws.id, WorkspaceUpdate(settings=settings))
        return ws

    def token(self, ws: WorkspacePublic) -> str:
        return self.services.tokens.create(ws.id, "ws-test")[1]

    def agent(self, ws: WorkspacePublic, name: str, definition: str = "assistant") -> AgentPublic:
        return self.services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))

    def head(self) -> int:
        return head(self.services)

    def rest(self, secret: str) -> httpx.AsyncClient:
        # Generous: the server may be importing MetaGPT in the background, which holds the GIL.
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.AsyncClient(base_url=self.app.base_url, headers=headers, timeout=60)


def head(services: Services) -> int:
    """The newest seq in the log: connect with `since=head(...)` to get exactly what follows.

    (Without `since` a stream starts where the server's bus has read up to, so a change made a
    moment before connecting may still arrive.)
    """
    with services.db.read() as session:
        return head_seq(session)


@contextmanager
def running_app(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]) -> Iterator[Deck]:
    data_dir = tmp_path_factory.mktemp(name) / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env=env) as app:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            try:
                yield Deck(app, services)
            finally:
                services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    with running_app(tmp_path_factory, "ws", {"AGENTDECK_WS_PING_SECONDS": "1"}) as app:
        yield app


@pytest.fixture(scope="module")
def brisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    env = {
        "AGENTDECK_WS_PING_SECONDS": "1",
        "AGENTDECK_WS_IDLE_SECONDS": str(BRISK_IDLE),
        "AGENTDECK_PRELOAD_RUNTIME": "false",
    }
    with running_app(tmp_path_factory, "ws-brisk", env) as app:
        yield app


# -- the client side ---------------------------------------------------------------------------------
class Stream:
    """One client connection: reads frames, answers pings, tells events from pings."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.pings = 0

    async def frame(self, timeout: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return json.loads(await self.conn.recv())

    async def event(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame that is not a ping (each ping is answered with a pong)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                if frame["type"] != "ping":
                    return frame
                self.pings += 1
                await self.conn.send('{"type":"pong"}')

    async def events(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        return [await self.event(timeout) for _ in range(count)]

    async def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> list[dict[str, Any]]:
        """Events up to and including the first one `done` accepts."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while not seen or not done(seen[-1]):
                seen.append(await self.event(timeout))
        return seen

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Events that arrive within `seconds` (pings answered and left out)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(await self.event(left))
            except TimeoutError:
                break
        return seen


@asynccontextmanager
async def stream(url: str, secret: str | None = None) -> AsyncIterator[Stream]:
    """A connection; the token goes in the Authorization header when given here."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else None
    async with connect(url, additional_headers=headers, open_timeout=WAIT, close_timeout=2, ping_interval=None) as conn:
        yield Stream(conn)


async def refusal(url: str, secret: str | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body that refused the handshake."""
    with pytest.raises(InvalidStatus) as refused:
        async with stream(url, secret):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


def is_(type_: str, **where: object) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == type_ and all(f[k] == str(v) for k, v in where.items())


# -- events arrive, in order ---------------------------------------------------------------------------
async def test_workspace_stream_delivers_rest_changes_in_seq_order_as_spec_frames(deck: Deck) -> None:
    ws = deck.workspace()
    secret = deck.token(ws)
    async with stream(deck.url("/ws/agents/stream"), secret) as events, deck.rest(secret) as client:
        created = await client.post(
            "/api/agents", json={"workspace_id": str(ws.id), "definition": "assistant", "name": "a"}
        )
        assert created.status_code == 201, created.text
        agent_id = created.json()["id"]
        for response in (
            await client.post(f"/api/agents/{agent_id}/context", json={"data": {"goal": "ship"}}),
            await client.post(f"/api/agents/{agent_id}/messages", json={"content": "hello"}),
            await client.post(f"/api/agents/{agent_id}/status", json={"status": "offline", "reason": "break"}),
        ):
            assert response.status_code in (200, 201), response.text
        frames = await events.events(4)

    assert [f["type"] for f in frames] == [
        "agent_created",
        "agent_context_updated",
        "agent_message",
        "agent_status_changed",
    ]
    assert all(set(f) == FRAME_KEYS for f in frames)
    assert seqs(frames) == sorted(set(seqs(frames)))
    assert {(f["workspace_id"], f["agent_id"], f["run_id"]) for f in frames} == {(str(ws.id), agent_id, None)}
    assert all(datetime.fromisoformat(f["ts"]) for f in frames)
    assert frames[2]["data"]["message"]["content"] == "hello"
    assert (frames[3]["data"]["from"], frames[3]["data"]["to"]) == ("idle", "offline")


@pytest.mark.slow
async def test_agent_stream_carries_llm_tokens_live_then_the_stored_reply(deck: Deck) -> None:
    ws = deck.workspace()
    secret = deck.token(ws)
    agent = deck.agent(ws, "talker")
    deck.services.agents.activate(agent.id)
    # The token as a query parameter, as a browser sends it.
    url = deck.url(f"/ws/agents/{agent.id}", token=secret, since=deck.head())
    async with stream(url) as events, deck.rest(secret) as client:
        sent = await client.post(f"/api/agents/{agent.id}/messages", json={"content": "tell me a story"})
        assert sent.status_code == 201, sent.text
        frames = await events.until(
            lambda f: f["type"] == "agent_message" and f["data"]["message"]["role"] == "assistant", timeout=60
        )

    assert all(f["agent_id"] == str(agent.id) for f in frames)
    tokens = [f for f in frames if f["type"] == "llm_token"]
    assert tokens and all(f["seq"] is None and set(f) == FRAME_KEYS for f in tokens)
    reply = frames[-1]["data"]["message"]["content"]
    assert reply.startswith("(demo model)")
    assert "".join(t["data"]["text"] for t in tokens).strip() == reply.strip()
    stored = [f for f in frames if f["seq"] is not None]
    assert seqs(stored) == sorted(set(seqs(stored)))
    assert stored[0]["type"] == "agent_message" and stored[0]["data"]["message"]["content"] == "tell me a story"


async def test_agent_stream_never_carries_other_agents_events(deck: Deck) -> None:
    ws = deck.workspace()
    secret = deck.token(ws)
    mine, other = deck.agent(ws, "mine"), deck.agent(ws, "other")
    s = deck.services
    async with stream(deck.url(f"/ws/agents/{mine.id}", since=deck.head()), secret) as events:
        s.messages.append(other.id, "not for you")
        s.agents.activate(other.id)
        s.messages.append(mine.id, "first")
        s.contexts.update(other.id, ContextUpdate(data={"x": 1}))
        s.agents.activate(mine.id)
        frames = await events.until(is_("agent_status_changed"))
        assert await events.quiet(1.5) == []

    assert [f["type"] for f in frames] == ["agent_message", "agent_status_changed"]
    assert {f["agent_id"] for f in frames} == {str(mine.id)}


# -- resuming ---------------------------------------------------------------------------------------
async def test_reconnecting_with_since_replays_exactly_the_missed_events_then_continues_live(deck: Deck) -> None:
    ws = deck.workspace()
    secret = deck.token(ws)
    agent = deck.agent(ws, "resumer")
    messages = deck.services.messages
    async with stream(deck.url("/ws/agents/stream", since=deck.head()), secret) as events:
        messages.append(agent.id, "seen")
        [seen] = await events.events(1)
    missed = [messages.append(agent.id, f"missed {i}") for i in range(3)]

    async with stream(deck.url("/ws/agents/stream", since=seen["seq"]), secret) as events:
        replayed = await events.events(3)
        messages.append(agent.id, "live")
        [live] = await events.events(1)
        assert await events.quiet(1.5) == []

    assert [f["data"]["message"]["id"] for f in replayed] == [str(m.id) for m in missed]
    assert seqs(replayed) == sorted(seqs(replayed)) and replayed[0]["seq"] > seen["seq"]
    assert live["data"]["message"]["content"] == "live" and live["seq"] > replayed[-1]["seq"]


async def test_since_zero_replays_the_whole_workspace_log_and_nothing_of_other_workspaces(deck: Deck) -> None:
    ws, other = deck.workspace(), deck.workspace()
    secret = deck.token(ws)
    deck.agent(other, "theirs-before")
    deck.agent(ws, "mine")
    deck.agent(other, "theirs-after")
    async with stream(deck.url("/ws/agents/stream", since=0), secret) as events:
        [created] = await events.events(1)
        deck.agent(other, "theirs-live")
        deck.services.workspaces.update(other.id, WorkspaceUpdate(settings={"x": 1}))
        assert await events.quiet(2.5) == []
    assert created["type"] == "agent_created" and created["data"]["agent"]["name"] == "mine"
    assert created["workspace_id"] == str(ws.id)


# -- runs -------------------------------------------------------------------------------------------
async def test_the_run_filter_follows_one_run_and_nothing_else(deck: Deck) -> None:
    ws = deck.workspace()
    secret = deck.token(ws)
    agent = deck.agent(ws, "runner")
    runs = deck.services.runs
    run = runs.create(RunCreate(workspace_id=ws.id, agent_ids=[agent.id], idea="x"))
    head = deck.services.bus._head_seq()
    async with stream(deck.url("/ws/agents/stream", run_id=run.id, since=head), secret) as events:
        other_run = runs.create(RunCreate(workspace_id=ws.id, agent_ids=[agent.id], idea="y"))
        runs.mark_running(other_run.id, "demo model")
        runs.mark_running(run.id, "demo model")
        deck.services.messages.append(agent.id, "outside the run")
        runs.record_round(run.id, 1)
        runs.finish(other_run.id, "cancelled")
        runs.finish(run.id, "completed")
        frames = await events.until(is_("run_finished"))
        assert await events.quiet(1.5) == []

    assert [f["type"] for f in frames] == ["run_started", "run_round", "run_finished"]
    assert {f["run_id"] for f in frames} == {str(run.id)}  # not the other run's run_created either
    assert frames[-1]["data"]["run"]["status"] == "completed"


@pytest.mark.slow
async def test_a_demo_model_run_is_replayed_from_since_0_then_followed_live_to_run_finished(deck: Deck) -> None:
    ws = deck.workspace(code_execution=False)
    secret = deck.token(ws)
    team = [deck.agent(ws, name, slug) for slug, name in [("product-manager", "Alice"), ("architect", "Bob")]]
    for member in team:
        deck.services.agents.activate(member.id)
    # Started through the server (the one process that executes runs on this SQLite data dir)...
    async with deck.rest(secret) as client:
        started = await client.post(
            "/api/runs", json={"workspace_id": str(ws.id), "agent_ids": [str(a.id) for a in team], "idea": "a todo app"}
        )
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    # ... and connected after the start: `since=0` replays what already happened, then the rest is live.
    async with stream(deck.url("/ws/agents/stream", run_id=run_id, since=0), secret) as events:
        frames = await events.until(is_("run_finished"), timeout=RUN_WAIT)

    assert {f["run_id"] for f in frames} == {run_id}
    stored = [f for f in frames if f["seq"] is not None]  # llm_token frames are live only
    assert seqs(stored) == sorted(set(seqs(stored)))
    # Queued (while the runtime sets up) before it starts, and other tabs see it from creation.
    assert [f["type"] for f in stored[:2]] == ["run_created", "run_started"]
    assert stored[0]["data"]["run"]["status"] == "queued"
    assert frames[-1]["data"]["run"]["status"] == "completed", frames[-1]["data"]["run"]["error"]
    assert {"run_round", "agent_message", "agent_activity"} <= {f["type"] for f in frames}


@pytest.mark.slow
async def test_a_run_started_over_the_api_is_followed_on_the_stream_to_run_finished(deck: Deck) -> None:
    """The whole path through the server: POST /api/runs (202), the server's own runtime executes
    the run with the demo model, and its events reach the WebSocket client live."""
    ws = deck.workspace(code_execution=False)
    secret = deck.token(ws)
    team = [deck.agent(ws, name, slug) for slug, name in [("product-manager", "Priya"), ("architect", "Arjun")]]
    head = deck.services.bus._head_seq()
    async with stream(deck.url("/ws/agents/stream", since=head), secret) as events:
        async with deck.rest(secret) as client:
            started = await client.post(
                "/api/runs",
                json={"workspace_id": str(ws.id), "agent_ids": [str(a.id) for a in team], "idea": "a todo app"},
            )
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        frames = await events.until(lambda f: f["type"] == "run_finished" and f["run_id"] == run_id, timeout=RUN_WAIT)

    run_frames = [f for f in frames if f["run_id"] == run_id]
    assert [f["type"] for f in run_frames[:2]] == ["run_created", "run_started"]
    assert run_frames[-1]["data"]["run"]["status"] == "completed", run_frames[-1]["data"]["run"]["error"]
    senders = {f["data"]["message"]["sender"] for f in run_frames if f["type"] == "agent_message"}
    assert {"Priya", "Arjun"} <= senders
    assert any(f["type"] == "llm_token" for f in run_frames)  # streamed live, never stored
    stored = [f["seq"] for f in frames if f["seq"] is not None]
    assert stored == sorted(set(stored)) and stored[0] > head


# -- who may listen ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ws/agents/stream", "/ws/agents/{agent}"])
async def test_a_missing_wrong_or_revoked_token_is_refused_with_401(deck: Deck, path: str) -> None:
    ws = deck.workspace()
    url = deck.url(path.format(agent=deck.agent(ws, "guarded").id))
    token, secret = deck.services.tokens.create(ws.id, "soon revoked")
    for secret_given in (None, "adk_not-a-token"):
        status, body = await refusal(url, secret_given)
        assert status == 401 and body["detail"]
    status, _ = await refusal(url + "?token=adk_not-a-token")
    assert status == 401

    deck.services.tokens.revoke(token.id)
    status, body = await refusal(url, secret)
    assert status == 401 and "revoked" in body["detail"]
    status, _ = await refusal(url + f"?token={secret}")
    assert status == 401


async def test_another_workspaces_workspace_agent_or_run_is_refused_like_an_unknown_one(deck: Deck) -> None:
    ws, other = deck.workspace(), deck.workspace()
    secret = deck.token(ws)
    theirs = deck.agent(other, "theirs")
    their_run = deck.services.runs.create(RunCreate(workspace_id=other.id, agent_ids=[theirs.id], idea="x"))
    for url in (
        deck.url("/ws/agents/stream", workspace_id=other.id),
        deck.url("/ws/agents/stream", workspace_id=uuid.uuid4()),
        deck.url("/ws/agents/stream", run_id=their_run.id),
        deck.url("/ws/agents/stream", run_id=uuid.uuid4()),
        deck.url(f"/ws/agents/{theirs.id}"),
        deck.url(f"/ws/agents/{uuid.uuid4()}"),
    ):
        status, body = await refusal(url, secret)
        assert status == 404 and body["detail"], url
    # Naming its own workspace is fine.
    async with stream(deck.url("/ws/agents/stream", workspace_id=ws.id), secret) as events:
        deck.agent(ws, "mine")
        assert (await events.event())["type"] == "agent_created"


async def test_malformed_ids_and_since_are_refused_with_422(deck: Deck) -> None:
    secret = deck.token(deck.workspace())
    for url in (
        deck.url("/ws/agents/stream", since=-1),
        deck.url("/ws/agents/stream", since="latest"),
        deck.url("/ws/agents/stream", workspace_id="nope"),
        deck.url("/ws/agents/stream", run_id="nope"),
        deck.url("/ws/agents/not-an-id"),
    ):
        status, body = await refusal(url, secret)
        assert status == 422 and body["detail"], url


async def test_a_token_revoked_while_connected_is_closed_at_the_next_ping(deck: Deck) -> None:
    ws = deck.workspace()
    token, secret = deck.services.tokens.create(ws.id, "revoked mid-stream")
    async with stream(deck.url("/ws/agents/stream"), secret) as events:
        assert (await events.frame())["type"] == "ping"
        deck.services.tokens.revoke(token.id)
        with pytest.raises(ConnectionClosed) as closed:
            await events.quiet(WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# -- keeping the connection alive -------------------------------------------------------------------
async def test_the_server_pings_every_interval(deck: Deck) -> None:
    secret = deck.token(deck.workspace())
    async with stream(deck.url("/ws/agents/stream"), secret) as events:
        started = time.monotonic()
        frames = [await events.frame(3) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert frames == [{"type": "ping"}] * 3
    assert 1.5 < elapsed < 6


async def test_a_silent_client_is_closed_after_the_idle_limit(brisk: Deck) -> None:
    secret = brisk.token(brisk.workspace())
    async with stream(brisk.url("/ws/agents/stream"), secret) as events:
        started = time.monotonic()
        pings = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # read, never answer
                pings += (await events.frame(BRISK_IDLE + WAIT))["type"] == "ping"
        elapsed = time.monotonic() - started
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    assert BRISK_IDLE - 0.5 < elapsed < BRISK_IDLE + 2.5
    assert pings >= 2


async def test_a_client_that_answers_is_kept_however_long_it_stays(brisk: Deck) -> None:
    ws = brisk.workspace()
    secret = brisk.token(ws)
    async with stream(brisk.url("/ws/agents/stream"), secret) as events:
        assert await events.quiet(2 * BRISK_IDLE) == []
        brisk.agent(ws, "still listening")
        assert (await events.event())["type"] == "agent_created"
    assert events.pings >= 4


# -- in process: what only the server's memory shows ------------------------------------------------------
@pytest.fixture
def local(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Services]]:
    """The WebSocket routes in a bare FastAPI app on `services`; its bus runs on the app's loop."""
    services.settings.ws_ping_seconds = 0.2
    services.settings.ws_idle_seconds = 2.0

    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    app = FastAPI(lifespan=asynccontextmanager(lifespan))
    install_error_handlers(app)
    app.include_router(api.ws.router)
    app.state.services = services  # as main.py does: the API reads them from the app
    with TestClient(app) as client:
        yield client, services


def receive_until(socket: Any, done: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> list[dict[str, Any]]:
    """Frames other than pings up to the first one `done` accepts; answers each. The server pings
    every 0.2 s, so the deadline is checked at least that often."""
    deadline = time.monotonic() + timeout
    frames: list[dict[str, Any]] = []
    while not frames or not done(frames[-1]):
        assert time.monotonic() < deadline, f"no matching frame in {timeout} s; got {frames[-5:]}"
        frame = socket.receive_json()
        socket.send_text('{"type":"pong"}')
        if frame["type"] != "ping":
            frames.append(frame)
    return frames


def local_setup(services: Services) -> tuple[WorkspacePublic, str, AgentPublic]:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="local"))
    return ws, services.tokens.create(ws.id, "local")[1], agent


def test_every_way_a_connection_ends_unsubscribes_it(local: tuple[TestClient, Services]) -> None:
    client, services = local
    _, secret, agent = local_setup(services)
    bus = services.bus
    before = bus.subscriber_count

    with client.websocket_connect(f"/ws/agents/stream?token={secret}") as one:
        with client.websocket_connect(f"/ws/agents/{agent.id}?token={secret}"):
            assert bus.subscriber_count == before + 2
        wait_until(lambda: bus.subscriber_count == before + 1, WAIT)
        one.send_text('{"type":"pong"}')
    wait_until(lambda: bus.subscriber_count == before, WAIT)

    # Refused handshakes never subscribe.
    with pytest.raises(WebSocketDenialResponse), client.websocket_connect(f"/ws/agents/{uuid.uuid4()}?token={secret}"):
        pass
    with pytest.raises(WebSocketDenialResponse), client.websocket_connect("/ws/agents/stream"):
        pass
    assert bus.subscriber_count == before

    # Closed by the server for silence.
    with client.websocket_connect(f"/ws/agents/stream?token={secret}") as silent:
        assert silent.receive_json() == {"type": "ping"}
        deadline = time.monotonic() + WAIT
        with pytest.raises(WebSocketDisconnect) as closed:
            while time.monotonic() < deadline:  # read, never answer
                silent.receive_json()
        assert closed.value.code == 4408
    wait_until(lambda: bus.subscriber_count == before, WAIT)


def test_a_client_that_falls_behind_is_told_to_resume_and_loses_no_stored_event(
    local: tuple[TestClient, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = local
    ws, secret, agent = local_setup(services)
    monkeypatch.setattr(api.ws, "QUEUE_SIZE", 4)
    # Live from the start (no `since`): while replaying, an overflow is absorbed, not reported.
    with client.websocket_connect(f"/ws/agents/stream?token={secret}") as socket:
        # A burst of pushed-only chunks overflows the 4-slot queue before the sender runs.
        for i in range(2000):
            services.bus.publish_ephemeral(
                EventType.LLM_TOKEN, ws.id, {"text": f"{i} ", "agent_name": "tester"}, agent_id=agent.id
            )
        message = services.messages.append(agent.id, "stored meanwhile")
        frames = receive_until(socket, lambda f: f["type"] == "agent_message")

    resumes = [f for f in frames if f["type"] == "resume"]
    assert resumes and all(f["seq"] is None and isinstance(f["data"]["since"], int) for f in resumes)
    tokens = [f for f in frames if f["type"] == "llm_token"]
    assert len(tokens) < 2000  # some chunks were dropped, the rest arrive in order
    assert [int(t["data"]["text"]) for t in tokens] == sorted(int(t["data"]["text"]) for t in tokens)
    stored = [f for f in frames if f["seq"] is not None]
    assert seqs(stored) == sorted(set(seqs(stored)))
    # (The agent's creation may come first: the bus may not have read it when the client connected.)
    assert [f["type"] for f in stored][-1:] == ["agent_message"]
    assert stored[-1]["data"]["message"]["id"] == str(message.id)


def test_pushed_only_tokens_reach_only_the_streams_they_belong_to(local: tuple[TestClient, Services]) -> None:
    client, services = local
    ws, secret, agent = local_setup(services)
    other = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="other"))
    with client.websocket_connect(f"/ws/agents/{agent.id}?token={secret}&since={head(services)}") as socket:
        services.bus.publish_ephemeral(
            EventType.LLM_TOKEN, ws.id, {"text": "no", "agent_name": "tester"}, agent_id=other.id
        )
        services.bus.publish_ephemeral(
            EventType.LLM_TOKEN, ws.id, {"text": "yes", "agent_name": "tester"}, agent_id=agent.id
        )
        [frame] = receive_until(socket, lambda f: True)
    assert (frame["type"], frame["seq"], frame["agent_id"], frame["data"]) == (
        "llm_token",
        None,
        str(agent.id),
        {"text": "yes", "agent_name": "tester"},
    )
