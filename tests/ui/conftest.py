"""UI tests with NiceGUI's `user` fixture, which runs main.py in-process and reads settings from
the environment. The autouse fixture below points that environment at this test's data dir and
fresh database before `user` starts the app (autouse fixtures are set up first).

`@pytest.mark.dashboard_password("secret")` turns dashboard auth on for a test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.services import get_services


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dashboard_password(value): start the app with this dashboard password")


@pytest.fixture(autouse=True)
def ui_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    monkeypatch.setenv("AGENTDECK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("AGENTDECK_PASSWORD", raising=False)
    monkeypatch.delenv("AGENTDECK_DEMO", raising=False)
    # NiceGUI's `user` fixture talks to the app as http://test.
    monkeypatch.setenv("AGENTDECK_ALLOWED_HOSTS", "test")
    marker = request.node.get_closest_marker("dashboard_password")
    if marker is not None:
        monkeypatch.setenv("AGENTDECK_PASSWORD", marker.args[0])
    from nicegui import app as _app
    from nicegui import background_tasks

    # NiceGUI keeps its background tasks in module-level collections. A previous test's app that
    # did not shut down cleanly leaves tasks of its (now closed) event loop there, and the next
    # app's shutdown would wait for them forever: drop them.
    for task in list(background_tasks.running_tasks):
        if task.get_loop().is_closed():
            background_tasks.running_tasks.discard(task)
    for name, task in list(background_tasks.lazy_tasks_running.items()):
        if task.get_loop().is_closed():
            background_tasks.lazy_tasks_running.pop(name, None)

    # Each test re-runs main.py, and every include_router wraps the app's lifespan once more;
    # without putting the original back, a few dozen tests exceed the recursion limit.
    saved = _app.router.lifespan_context
    yield
    _app.router.lifespan_context = saved
    # The app the `user` fixture ran is gone; close its connection pool (PostgreSQL counts them).
    with contextlib.suppress(RuntimeError):
        get_services().db.dispose()
