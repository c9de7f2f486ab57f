"""The API's lane (api/lane.py): API requests skip the dashboard's middlewares, never the guards."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.lane import install_api_lane, is_api_lane


def marker(name: str) -> type:
    """A pure ASGI middleware that notes, in the request's scope, that it ran."""

    class Marker:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in {"http", "websocket"}:
                scope.setdefault("state", {}).setdefault("ran", []).append(name)
            await self.app(scope, receive, send)

    Marker.__name__ = name
    return Marker


Guard, Dashboard = marker("Guard"), marker("Dashboard")


def app_with_lane(*, dashboard_inside: bool = False) -> FastAPI:
    app = FastAPI()

    @app.get("/api/things")
    @app.get("/metrics")
    @app.get("/page")
    @app.get("/apiary")
    def ran(request: Request) -> list[str]:
        return request.state.ran

    @app.websocket("/ws/events")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(websocket.state.ran)
        await websocket.close()

    # As in production: the guards first (innermost), the dashboard's middlewares later (ui.run).
    app.add_middleware(Dashboard if dashboard_inside else Guard)
    install_api_lane(app, (Guard,))
    app.add_middleware(Guard if dashboard_inside else Dashboard)
    return app


def test_api_requests_skip_the_dashboard_middlewares_and_pass_the_guards() -> None:
    with TestClient(app_with_lane()) as client:
        assert client.get("/api/things").json() == ["Guard"]
        assert client.get("/metrics").json() == ["Guard"]
        with client.websocket_connect("/ws/events") as ws:
            assert ws.receive_json() == ["Guard"]


def test_everything_else_passes_the_dashboard_middlewares_then_the_guards() -> None:
    with TestClient(app_with_lane()) as client:
        assert client.get("/page").json() == ["Dashboard", "Guard"]
        assert client.get("/apiary").json() == ["Dashboard", "Guard"]


def test_a_dashboard_middleware_inside_a_guard_is_refused_not_reordered() -> None:
    with pytest.raises(RuntimeError, match="innermost"), TestClient(app_with_lane(dashboard_inside=True)):
        pass


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/api", True),
        ("/api/agents/x/messages", True),
        ("/ws/events", True),
        ("/metrics", True),
        ("/apiary", False),
        ("/", False),
        ("/_nicegui_ws/socket.io/", False),
        ("/docs", False),
        ("/openapi.json", False),
        ("/metrics/x", False),
    ],
)
def test_which_paths_take_the_api_lane(path: str, api: bool) -> None:
    assert is_api_lane(path) is api


def test_api_only_middlewares_run_for_the_api_lane_alone() -> None:
    app = FastAPI()
    Compress = marker("Compress")

    @app.get("/api/things")
    @app.get("/page")
    def ran(request: Request) -> list[str]:
        return request.state.ran

    app.add_middleware(Guard)
    install_api_lane(app, (Guard,), api=[Middleware(Compress)])
    app.add_middleware(Dashboard)
    with TestClient(app) as client:
        assert client.get("/api/things").json() == ["Compress", "Guard"]
        assert client.get("/page").json() == ["Dashboard", "Guard"]
