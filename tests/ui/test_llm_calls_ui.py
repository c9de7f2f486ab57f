"""The agent page's "LLM calls" tab and the shared inspector, in the `user` fixture's browser:
calls recorded by core's LlmCallService (as the runtime records them) show up, live, and open."""

from __future__ import annotations

from nicegui import ElementFilter, ui
from nicegui.testing import User

from core.schemas import AgentCreate, WorkspaceCreate
from tests.ui.running_app import app_services
from tests.waiting import eventually


def _rows(user: User) -> list[ui.element]:
    assert user.client is not None
    with user.client:
        return [el for el in ElementFilter(local_scope=False) if "data-call-id" in el.props]


async def test_the_llm_calls_tab_lists_calls_live_and_the_inspector_shows_prompt_and_response(user: User) -> None:
    services = app_services()
    ws = services.workspaces.create(WorkspaceCreate(slug="alpha", name="Alpha"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="scout"))
    first = services.llm_calls.start(
        ws.id,
        [{"role": "system", "content": "You are scout."}, {"role": "user", "content": "Where is the hive?"}],
        agent_id=agent.id,
        agent_name="scout",
        action="Respond",
        model="gpt-4o-mini",
    )
    services.llm_calls.finish(
        first,
        "ok",
        response="**Behind** the barn <script>alert(1)</script>",
        prompt_tokens=9,
        completion_tokens=4,
        latency_ms=812.0,
    )

    await user.open(f"/agents/{agent.id}?tab=llm-calls")
    await eventually(lambda: len(_rows(user)) == 1)
    await user.should_see("Where is the hive?")

    # A call that starts now appears at once as running, and completes when it ends.
    second = services.llm_calls.start(
        ws.id, [{"role": "user", "content": "And the queen?"}], agent_id=agent.id, agent_name="scout", action="Respond"
    )
    await eventually(lambda: len(_rows(user)) == 2, timeout=10)
    row = next(r for r in _rows(user) if r.props["data-call-id"] == str(second))
    assert any(el.props.get("data-outcome") == "running" for el in row.descendants())
    services.llm_calls.finish(second, "error", error="APIConnectionError: boom", latency_ms=5.0)
    await eventually(
        lambda: any(
            el.props.get("data-outcome") == "error"
            for r in _rows(user)
            if r.props["data-call-id"] == str(second)
            for el in r.descendants()
        ),
        timeout=10,
    )

    # Open the first call: the exact prompt as text, the response as sanitized markdown.
    user.find(marker=f"llm-call-{first}").click()
    await user.should_see(marker="llm-call-prompt")
    await user.should_see("You are scout.")
    await user.should_see("812 ms")
    response = user.find(marker="llm-call-response").elements.pop()
    assert "<strong>Behind</strong>" in response.content  # type: ignore[attr-defined]
    assert "<script>" not in response.content  # type: ignore[attr-defined]


async def test_the_analytics_page_charts_llm_latency_per_model_and_error_rate_per_profile(user: User) -> None:
    services = app_services()
    ws = services.workspaces.create(WorkspaceCreate(slug="alpha", name="Alpha"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="scout"))
    for i, outcome in enumerate(("ok", "ok", "ok", "error")):
        call = services.llm_calls.start(
            ws.id, [{"role": "user", "content": "q"}], agent_id=agent.id, model="m<b>x</b>", profile="main"
        )
        services.llm_calls.finish(call, outcome, latency_ms=100.0 * (i + 1))

    await user.open("/analytics")

    def figure(name: str) -> dict:
        [plot] = user.find(marker=f"chart-{name}").elements
        return plot.figure  # type: ignore[attr-defined]

    await eventually(lambda: bool(figure("llm-latency")["data"]), timeout=10)
    latency = figure("llm-latency")["data"]
    assert [t["name"] for t in latency] == ["m&lt;b&gt;x&lt;/b&gt; p50", "m&lt;b&gt;x&lt;/b&gt; p95"]
    assert latency[0]["y"] == [200.0] and latency[1]["y"] == [400.0]
    errors = figure("llm-errors")["data"][0]
    assert errors["x"] == ["main"] and errors["y"] == [0.25] and errors["text"] == ["1 of 4"]
