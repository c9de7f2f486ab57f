"""UI tests with NiceGUI's `user` fixture, which runs main.py in-process and reads settings from
the environment. The autouse fixture below points that environment at this test's data dir and
fresh database before `user` starts the app (autouse fixtures are set up first).

`@pytest.mark.dashboard_password("secret")` turns dashboard auth on for a test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nicegui.testing.general_fixtures import get_path_to_main_file
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dashboard_password(value): start the app with this dashboard password")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.dashboard)


@pytest.fixture
async def user(caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> AsyncIterator[User]:
    """NiceGUI's `user` fixture with its check for ERROR logs moved after the app has stopped.
    NiceGUI fails the test inside the app's lifespan, whose shutdown then never runs: the app
    stays "started" and every later `user` test errors with "NiceGUI has already been started"."""
    async with user_simulation(main_file=get_path_to_main_file(request)) as simulated:
        yield simulated
    if any(record.levelname == "ERROR" for record in caplog.get_records("call")):
        pytest.fail("There were unexpected ERROR logs.", pytrace=False)


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
    # The app the `user` fixture ran is gone: close its connection pool (PostgreSQL counts them) and
    # take its services off the app, so nothing of a later test can reach them.
    services = getattr(_app.state, "services", None)
    if services is not None:
        services.db.dispose()
        del _app.state.services
