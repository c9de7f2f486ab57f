"""The analytics page (`/analytics`) in the `user` fixture's simulated browser, on the hand-made
history of tests/test_analytics.py placed in the last day: every chart draws that data, the
headline cards answer "which agent costs most / which is stuck / what failed and when", the
filters change the figures, events update them live but throttled, dark mode switches the plotly
template, and each chart downloads as CSV. The last test does the same in real Chromium.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User

import ui.analytics as page
import ui.analytics_charts as charts
from core.schemas import AgentCreate, WorkspaceCreate
from storage.types import utcnow
from tests.test_analytics import History, write_history
from tests.ui.running_app import app_services
from tests.waiting import eventually

CHARTS = ("messages", "busiest", "status", "spend", "cost", "errors", "runs", "run-cost")


def only(user: User, marker: str) -> Any:
    elements = user.find(marker=marker).elements
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return next(iter(elements))


def figure(user: User, name: str) -> dict[str, Any]:
    plot = only(user, f"chart-{name}")
    assert isinstance(plot, ui.plotly)
    return plot.figure  # type: ignore[return-value]


def traces(user: User, name: str) -> list[dict[str, Any]]:
    return figure(user, name)["data"]


def text(user: User, marker: str) -> str:
    return only(user, marker).text


async def history_of_the_last_day() -> History:
    """The hand-made history with T0 25 hours ago: all of it but carol's change at T0+30h (in
    the future) lies in the last 7 days. Written once the services have started: the runtime's
    start-up sweep marks runs left `running` without a workflow interrupted, and this history's
    hand-written running run must not race it."""
    await eventually(lambda: app_services().ready, timeout=60)
    t0 = utcnow().replace(microsecond=0) - timedelta(hours=25)
    return write_history(app_services(), t0)


async def open_loaded(user: User) -> None:
    await user.open("/analytics")
    await eventually(lambda: bool(traces(user, "busiest")))


async def test_every_chart_renders_the_workspaces_data(user: User) -> None:
    history = await history_of_the_last_day()
    await open_loaded(user)
    plots = user.find(ui.plotly).elements
    assert len(plots) == len(CHARTS) + 2  # + the LLM charts (tests/ui/test_llm_calls_ui.py)
    for name in CHARTS:
        assert traces(user, name), f"chart {name} is empty"
        assert "annotations" not in figure(user, name)["layout"], name
    # Messages over time: one stacked series per agent that wrote messages.
    assert {t["name"] for t in traces(user, "messages")} == {"alice", "bob", "carol"}
    assert figure(user, "messages")["layout"]["barmode"] == "stack"
    # Busiest agents: messages per agent (alice wrote 5 in the last 7 days, one of them before T0).
    busiest = traces(user, "busiest")[0]
    assert dict(zip(busiest["y"], busiest["x"], strict=True)) == {"carol": 1, "bob": 3, "alice": 5}
    # Time in each status: stacked per status, with bob's error time in it.
    status = {t["name"]: t for t in traces(user, "status")}
    assert {"active", "busy", "error", "offline", "idle"} <= set(status)
    assert dict(zip(status["error"]["y"], status["error"]["x"], strict=True))["bob"] > 0
    # Runs: one trace per outcome.
    assert {t["name"] for t in traces(user, "runs")} == {"completed", "failed", "cancelled", "running"}
    # The headlines answer the three questions.
    assert text(user, "headline-cost-answer") == "alice"  # $1.53 of $2.09
    assert text(user, "headline-stuck-answer") == "bob"
    assert "rate limited" in text(user, "headline-stuck-detail")
    assert text(user, "headline-failures-answer") == "5 failures"  # 3 into error, 2 failed runs
    await user.should_see("bob went into error")
    await user.should_see("idea r2 run failed")
    # Workspace B's agent and run show nowhere.
    assert str(history.agents["eve"]) not in only(user, "agent-filter").options
    assert all("eve" not in t["y"] for name in ("busiest", "status") for t in traces(user, name))
    await user.should_not_see("idea rb")


async def test_filters_change_the_figures(user: User) -> None:
    history = await history_of_the_last_day()
    await open_loaded(user)

    with user.client:  # type: ignore[union-attr]
        only(user, "agent-filter").value = [str(history.agents["alice"])]
    await eventually(lambda: traces(user, "busiest")[0]["y"] == ["alice"])
    assert {t["name"] for t in traces(user, "messages")} == {"alice"}
    assert text(user, "headline-stuck-answer") != "bob"

    with user.client:  # type: ignore[union-attr]
        only(user, "agent-filter").value = []
        only(user, "project-filter").value = str(history.project_q)
    await eventually(lambda: "annotations" in figure(user, "busiest")["layout"])
    assert next(t["y"] for t in traces(user, "status")) == ["dave"]
    assert text(user, "headline-cost-answer") == "No spend"

    with user.client:  # type: ignore[union-attr]
        only(user, "project-filter").value = ""
        only(user, "range").value = "24h"
    # The last 24 hours start just after T0 + 1 h: alice's messages at T0 - 1 h and T0 + 1 h are out.
    await eventually(
        lambda: (
            dict(zip(traces(user, "busiest")[0]["y"], traces(user, "busiest")[0]["x"], strict=True)).get("alice") == 3
        )
    )
    assert figure(user, "messages")["layout"]["xaxis"]["type"] == "date"


async def test_a_custom_range_shows_only_those_days(user: User) -> None:
    await history_of_the_last_day()
    await open_loaded(user)
    with user.client:  # type: ignore[union-attr]
        only(user, "range").value = "custom"
    await eventually(lambda: bool(only(user, "custom-range")))
    with user.client:  # type: ignore[union-attr]
        long_ago = utcnow().date() - timedelta(days=200)
        only(user, "custom-range").value = {
            "from": f"{long_ago:%Y/%m/%d}",
            "to": f"{long_ago + timedelta(days=3):%Y/%m/%d}",
        }
    await eventually(lambda: "annotations" in figure(user, "busiest")["layout"])
    assert "No messages in this range" in figure(user, "messages")["layout"]["annotations"][0]["text"]
    await user.should_see("Nothing failed in this range")


async def test_an_empty_workspace_shows_a_friendly_empty_state(user: User) -> None:
    app_services().workspaces.create(WorkspaceCreate(slug="empty", name="Empty"))
    await user.open("/analytics")
    await user.should_see("Nothing to chart yet")
    await user.should_see("Go to agents")
    await user.should_not_see(marker="chart-messages")
    await user.should_not_see(marker="headline-cost")


async def test_events_update_the_charts_live_but_throttled(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page, "THROTTLE_SECONDS", 0.5)
    history = await history_of_the_last_day()
    services = app_services()
    loads: list[int] = []
    original = services.analytics.dashboard

    def counting(query: Any) -> Any:
        loads.append(1)
        return original(query)

    monkeypatch.setattr(services.analytics, "dashboard", counting)
    await open_loaded(user)
    before = len(loads)
    carol = history.agents["carol"]
    for n in range(30):  # a burst of events ...
        services.messages.append(carol, f"burst {n}")
    await eventually(
        lambda: (
            dict(zip(traces(user, "busiest")[0]["y"], traces(user, "busiest")[0]["x"], strict=True)).get("carol") == 31
        )
    )
    # ... is a handful of reloads (one per throttle tick), not one per event.
    assert 1 <= len(loads) - before <= 4, len(loads) - before


async def test_dark_mode_switches_the_chart_template(user: User) -> None:
    await history_of_the_last_day()
    await open_loaded(user)
    light = figure(user, "messages")["layout"]
    assert light["paper_bgcolor"] == "#ffffff"
    assert light["template"]["layout"]["font"]["color"] == "#2a3f5f"  # plotly_white
    user.find(marker="dark-mode").click()
    await eventually(lambda: figure(user, "messages")["layout"]["paper_bgcolor"] == "#1e293b")
    assert figure(user, "messages")["layout"]["template"]["layout"]["font"]["color"] == "#f2f5fa"  # plotly_dark
    assert all(figure(user, name)["layout"]["paper_bgcolor"] == "#1e293b" for name in CHARTS)


async def test_each_chart_downloads_as_csv_and_png(user: User) -> None:
    await history_of_the_last_day()
    await open_loaded(user)
    user.find(marker="csv-spend").click()
    response = await user.download.next()
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["agent", "status", "messages"]
    assert {r[0] for r in rows[1:]} == {"alice", "bob", "carol", "dave"}
    user.find(marker="csv-cost").click()
    rows = list(csv.reader(io.StringIO((await user.download.next()).content.decode())))
    assert rows[0] == ["bucket_utc", "cost", "cumulative_cost"]
    assert float(rows[-1][2]) == pytest.approx(1.0 + 0.03 + 0.5 + 0.056 + 0.5)
    for name in CHARTS:
        config = figure(user, name)["config"]
        assert config["toImageButtonOptions"]["format"] == "png"
        user.find(marker=f"png-{name}").click()  # plotly.js draws the PNG in the browser


def test_csv_cells_that_look_like_formulas_are_defused() -> None:
    rows = list(csv.reader(io.StringIO(charts.csv_bytes(["a", "b"], [["=HYPERLINK()", 3], ["+1", "-x"]]).decode())))
    assert rows[1:] == [["'=HYPERLINK()", "3"], ["'+1", "'-x"]]


# -- real browser ------------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_page_draws_every_chart_in_chromium(tmp_path: Path) -> None:
    """The real app and Chromium: eight plotly charts drawn with data, in light and dark mode."""
    from playwright import sync_api as playwright

    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium (./deck test does)")
    from core.config import Settings
    from core.services import build_services
    from storage.migrate import upgrade
    from tests.app_process import AppProcess
    from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

    data_dir = tmp_path / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        settings = Settings(data_dir=data_dir, database_url=database_url)
        data_dir.mkdir(parents=True)
        services = build_services(settings)
        upgrade(services.db.engine, settings.resolved_database_url)
        from core.registry import sync_definitions

        sync_definitions(services.db)
        t0 = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=25)
        write_history(services, t0)
        services.db.dispose()
        with AppProcess(data_dir, database_url=database_url) as app, playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update"],
            )  # fmt: skip
            errors: list[str] = []
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.goto(f"{app.base_url}/analytics")
            plots = tab.locator(".js-plotly-plot .main-svg")
            tab.locator(".js-plotly-plot .bars .point, .js-plotly-plot .scatterlayer .point").first.wait_for(
                timeout=20_000
            )
            tab.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8", timeout=20_000)
            assert plots.count() >= 8
            assert tab.get_by_text("What failed and when").is_visible()
            assert tab.get_by_text("carol", exact=True).first.is_visible()
            tab.screenshot(path=str(tmp_path / "analytics-light.png"), full_page=True)
            tab.locator("button:has(i:text('dark_mode'))").first.click()
            tab.wait_for_function("document.body.classList.contains('body--dark')", timeout=10_000)
            tab.wait_for_timeout(500)
            tab.screenshot(path=str(tmp_path / "analytics-dark.png"), full_page=True)
            assert not errors, errors
            browser.close()
    finally:
        if database_url:
            drop_pg_database(database_url)


async def test_names_are_shown_as_text_not_markup(user: User) -> None:
    """Plotly renders labels as pseudo-HTML: an agent named with tags shows the tags as text."""
    services = app_services()
    ws = services.workspaces.create(WorkspaceCreate(slug="markup", name="Markup"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="<b>Mallory</b>"))
    services.messages.append(agent.id, "hello")
    await open_loaded(user)
    assert traces(user, "busiest")[0]["y"] == ["&lt;b&gt;Mallory&lt;/b&gt;"]
    assert {t["name"] for t in traces(user, "messages")} == {"&lt;b&gt;Mallory&lt;/b&gt;"}


async def test_a_new_agent_joins_the_agent_filter_live(user: User) -> None:
    history = await history_of_the_last_day()
    await open_loaded(user)
    agent = app_services().agents.create(AgentCreate(workspace_id=history.a, definition="assistant", name="Newcomer"))
    await eventually(lambda: only(user, "agent-filter").options.get(str(agent.id)) == "Newcomer")
    app_services().agents.delete(agent.id)
    await eventually(lambda: str(agent.id) not in only(user, "agent-filter").options)
