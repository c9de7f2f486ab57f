"""The runs pages, /runs and /runs/{id}, as a person in the `user` fixture's simulated browser
sees them: starting a team run (demo model or a loopback OpenAI-compatible server), the live run
list, a run's transcript, members, files and cancellation. Changes "someone else" makes go through
the same core services; runs execute for real on MetaGPT."""

from __future__ import annotations

import asyncio
import html as html_module
import json
import uuid
from collections.abc import Iterator

import pytest
from nicegui import ElementFilter, ui
from nicegui.testing import User

from core.events import EventType
from core.llm_profiles import LlmProfileCreate
from core.runs import RunCreate, RunPublic
from core.schemas import AgentCreate, AgentPublic, WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from tests.llm_server import LlmServer
from tests.ui.running_app import app_services
from tests.waiting import eventually
from ui.run_page import _file_nodes, prepare_content
from ui.runs import CODE_OFF, CODE_ON, RUN_CODE_OFF, RUN_SANDBOX

SLOW = 90.0  # MetaGPT's first import in a process takes 20-30 s


def elements(user: User, marker: str) -> list[ui.element]:
    """Elements with this marker, shown or hidden (`user.find` sees shown ones only)."""
    assert user.client is not None
    with user.client:
        return list(ElementFilter(marker=marker, local_scope=False))


def only(user: User, marker: str) -> ui.element:
    found = elements(user, marker)
    assert len(found) == 1, f"{len(found)} elements marked {marker!r}"
    return found[0]


def text(user: User, marker: str) -> str:
    return str(getattr(only(user, marker), "text", ""))


def visible(element: ui.element) -> bool:
    return element.visible and all(parent.visible for parent in element.ancestors())


def causes(user: User) -> list[str]:
    """The cause_by of every message in the transcript, in page order."""
    out = []
    for element in elements(user, "run-message"):
        markers = [m for m in element._markers if m.startswith("message-")]
        out.append(markers[0].removeprefix("message-") if markers else "")
    return out


def workspace(slug: str = "alpha", *, code_execution: bool | None = None) -> WorkspacePublic:
    services = app_services()
    ws = services.workspaces.create(WorkspaceCreate(slug=slug, name=slug.title()))
    if code_execution is not None:
        ws = services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": code_execution}))
    return ws


def agent(ws: WorkspacePublic, definition: str, name: str) -> AgentPublic:
    return app_services().agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))


def team(ws: WorkspacePublic) -> tuple[AgentPublic, AgentPublic]:
    return agent(ws, "product-manager", "Alice"), agent(ws, "architect", "Bob")


def make_run(
    ws: WorkspacePublic, members: list[AgentPublic], idea: str = "a CLI todo app", **fields: object
) -> RunPublic:
    data = RunCreate(workspace_id=ws.id, agent_ids=[a.id for a in members], idea=idea, **fields)  # type: ignore[arg-type]
    return app_services().runs.create(data)


async def metagpt_ready() -> None:
    await asyncio.to_thread(app_services().runtime.ensure_ready)


@pytest.fixture
def slow_llm() -> Iterator[LlmServer]:
    with LlmServer() as server:
        server.token_delay = 0.2
        yield server


# -- /runs -----------------------------------------------------------------------------------
async def test_the_runs_page_lists_runs_newest_first_with_status_idea_members_and_figures(user: User) -> None:
    ws = workspace()
    alice, bob = team(ws)
    older = make_run(ws, [alice], idea="the older idea")
    newer = make_run(ws, [alice, bob], idea="the newer idea")
    runs = app_services().runs
    runs.mark_running(older.id, "demo model")
    runs.finish(older.id, "completed", stop_reason="every role finished its work")

    await user.open("/runs")
    rows = elements(user, "run-row")
    assert [row.props["data-run-id"] for row in rows] == [str(newer.id), str(older.id)]
    await user.should_see("the newer idea")
    await user.should_see("the older idea")
    assert text(user, f"run-status-{older.id}") == "completed"
    assert text(user, f"run-status-{newer.id}") == "queued"
    assert rows[0].props["href"] == f"/runs/{newer.id}"
    header_html = " ".join(el.content for el in rows[0].descendants() if isinstance(el, ui.html))
    assert "Alice" in header_html and "Bob" in header_html
    await user.should_see("every role finished its work")


async def test_runs_are_paged_with_load_more(user: User) -> None:
    ws = workspace()
    (alice,) = [agent(ws, "product-manager", "Alice")]
    for i in range(23):
        # Finished as made: a workspace may have only a few runs queued or running at once.
        made = make_run(ws, [alice], idea=f"idea number {i}")
        app_services().runs.finish(made.id, "cancelled", stop_reason="made for the list")
    await user.open("/runs")
    assert len(elements(user, "run-row")) == 20
    user.find(marker="runs-load-more").click()
    await eventually(lambda: len(elements(user, "run-row")) == 23)
    assert not visible(only(user, "runs-load-more"))
    await user.should_see("idea number 0")


async def test_the_run_list_follows_run_events_live(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    await user.open("/runs")
    await user.should_see(marker="runs-empty")

    runs = app_services().runs
    run = make_run(ws, [alice], idea="started by someone else")  # run_created: it appears, queued
    await eventually(lambda: bool(elements(user, f"run-status-{run.id}")))
    assert text(user, f"run-status-{run.id}") == "queued"
    runs.mark_running(run.id, "demo model")
    await eventually(lambda: text(user, f"run-status-{run.id}") == "running")
    runs.finish(run.id, "failed", stop_reason="error", error="LLM said no")
    await eventually(lambda: text(user, f"run-status-{run.id}") == "failed")
    await user.should_see("LLM said no")


async def test_the_start_card_shows_the_demo_model_and_code_execution_off_by_default(user: User) -> None:
    ws = workspace()
    team(ws)
    await user.open("/runs")
    await user.should_see(marker="demo-model-chip")
    assert text(user, "code-execution-notice") == CODE_OFF
    app_services().workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": True}))
    await user.open("/runs")
    assert text(user, "code-execution-notice") == CODE_ON
    assert "bubblewrap sandbox" in CODE_ON


async def test_a_run_page_says_which_sandbox_mode_the_run_used(user: User) -> None:
    ws = workspace(code_execution=True)
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.set_sandbox(run.id, "unsandboxed")
    await user.open(f"/runs/{run.id}")
    assert text(user, "code-execution-notice") == RUN_SANDBOX["unsandboxed"]


async def test_code_execution_off_says_generated_code_will_not_be_executed(user: User) -> None:
    ws = workspace(code_execution=False)
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    await user.open("/runs")
    assert text(user, "code-execution-notice") == CODE_OFF
    assert "generated code will not be executed" in CODE_OFF
    await user.open(f"/runs/{run.id}")
    assert text(user, "code-execution-notice") == RUN_CODE_OFF


async def test_a_run_page_shows_the_code_execution_the_run_was_created_with(user: User) -> None:
    ws = workspace(code_execution=False)
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    # Turned on afterwards: the run was created with it off, and its page says so.
    app_services().workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": True}))
    assert app_services().runs.get(run.id).code_execution is False
    await user.open(f"/runs/{run.id}")
    assert text(user, "code-execution-notice") == RUN_CODE_OFF
    await user.open("/runs")
    assert text(user, "code-execution-notice") == CODE_ON  # the start card: what a new run gets


async def test_the_start_card_shows_the_default_llm_profile(user: User) -> None:
    ws = workspace()
    team(ws)
    app_services().llm_profiles.create(
        ws.id, LlmProfileCreate(name="local", api_type="openai", model="llama3", base_url="http://127.0.0.1:11434/v1")
    )
    await user.open("/runs")
    assert text(user, "llm-label") == "openai · llama3 (profile: local)"
    await user.should_not_see(marker="demo-model-chip")


async def test_two_agents_of_one_role_kind_are_refused_with_cores_reason(user: User) -> None:
    ws = workspace()
    agent(ws, "product-manager", "Alice")
    agent(ws, "product-manager", "Paula")
    await user.open("/runs")
    user.find(marker="run-agents").click()
    user.find("Alice · ProductManager").click()
    user.find("Paula · ProductManager").click()
    user.find(marker="run-idea").type("a CLI todo app")
    user.find(marker="run-start").click()
    await eventually(lambda: visible(only(user, "run-start-error")))
    assert "at most one agent of each MetaGPT role kind" in text(user, "run-start-error")
    assert app_services().runs.list(ws.id).items == []


async def test_starting_without_agents_or_idea_explains_on_the_fields(user: User) -> None:
    ws = workspace()
    team(ws)
    await user.open("/runs")
    user.find(marker="run-start").click()
    members = only(user, "run-agents")
    await eventually(lambda: members.error is not None)  # type: ignore[attr-defined]
    assert members.error == "Choose at least one agent"  # type: ignore[attr-defined]
    assert only(user, "run-idea").error == "Describe what the team should build"  # type: ignore[attr-defined]
    assert app_services().runs.list(ws.id).items == []


# -- /runs/{id} ------------------------------------------------------------------------------
async def test_an_unknown_malformed_or_foreign_run_id_is_a_friendly_not_found(user: User) -> None:
    workspace("alpha")
    beta = workspace("beta")
    foreign = make_run(beta, [agent(beta, "product-manager", "Secret")], idea="beta's secret idea")
    await user.open(f"/runs/{uuid.uuid4()}")
    await user.should_see(marker="run-not-found")
    await user.open("/runs/not-a-uuid")
    await user.should_see(marker="run-not-found")
    await user.open(f"/runs/{foreign.id}")  # the user is in alpha, the first workspace
    await user.should_see(marker="run-not-found")
    await user.should_not_see("beta's secret idea")


async def test_the_run_page_shows_what_happened_so_far_then_follows_live(user: User) -> None:
    ws = workspace()
    alice, bob = team(ws)
    services = app_services()
    run = make_run(ws, [alice, bob], n_rounds=4)
    services.runs.mark_running(run.id, "demo model")
    services.runs.record_round(run.id, 1)
    services.messages.append(
        alice.id, "a CLI todo app", sender="user", role="user", run_id=run.id, cause_by="UserRequirement"
    )
    services.messages.append(
        alice.id,
        "## PRD\nthe product",
        sender="Alice",
        role="assistant",
        run_id=run.id,
        cause_by="WritePRD",
        prompt_tokens=100,
        completion_tokens=20,
    )

    await user.open(f"/runs/{run.id}")
    assert text(user, "run-status") == "running"
    assert text(user, "run-rounds") == "Round 1 of 4"
    assert causes(user) == ["UserRequirement", "WritePRD"]
    await user.should_see(marker="demo-model-chip")
    assert visible(only(user, "run-cancel"))
    await user.should_see("a CLI todo app")

    # Live: a round, a streamed answer, activity, the stored message, then the end of the run.
    services.runs.record_round(run.id, 2)
    await eventually(lambda: text(user, "run-rounds") == "Round 2 of 4")
    with services.db.write() as session:
        from core.events import append_event

        append_event(
            session,
            EventType.AGENT_ACTIVITY,
            ws.id,
            {"activity": "acting", "agent_name": "Bob", "action": "WriteDesign"},
            agent_id=bob.id,
            run_id=run.id,
        )
    await eventually(lambda: text(user, f"member-activity-{bob.id}") == "working on WriteDesign…")
    services.bus.publish_ephemeral(
        EventType.LLM_TOKEN, ws.id, {"text": "Designing the ", "agent_name": "Bob"}, agent_id=bob.id, run_id=run.id
    )
    services.bus.publish_ephemeral(
        EventType.LLM_TOKEN, ws.id, {"text": "system", "agent_name": "Bob"}, agent_id=bob.id, run_id=run.id
    )
    await eventually(lambda: text(user, f"member-stream-{bob.id}") == "Designing the system")
    assert visible(only(user, f"member-stream-{bob.id}"))
    services.messages.append(
        bob.id,
        "the design",
        sender="Bob",
        role="assistant",
        run_id=run.id,
        cause_by="WriteDesign",
        prompt_tokens=50,
        completion_tokens=10,
    )
    await eventually(lambda: causes(user) == ["UserRequirement", "WritePRD", "WriteDesign"])
    await eventually(lambda: not visible(only(user, f"member-stream-{bob.id}")))
    services.agents.set_status(bob.id, "active", reason="joined")
    await eventually(lambda: text(user, f"member-status-{bob.id}") == "active")

    services.runs.finish(run.id, "completed", stop_reason="every role finished its work")
    await eventually(lambda: text(user, "run-status") == "completed")
    assert not visible(only(user, "run-cancel"))
    await user.should_see("Stopped: every role finished its work")


async def test_member_figures_and_totals_follow_the_run(user: User) -> None:
    ws = workspace()
    alice, bob = team(ws)
    services = app_services()
    run = make_run(ws, [alice, bob])
    services.runs.mark_running(run.id, "demo model")
    await user.open(f"/runs/{run.id}")
    assert text(user, "run-tokens") == "0"
    with services.db.write() as session:
        services.runs.add_usage_in(session, run.id, alice.id, 1200, 300, 0.25)
    services.messages.append(alice.id, "prd", sender="Alice", role="assistant", run_id=run.id, cause_by="WritePRD")
    # The message triggers a (throttled) re-read of the run's figures.
    await eventually(lambda: text(user, "run-tokens") == "1,500")
    assert text(user, "run-cost") == "$0.25"
    assert text(user, f"member-figures-{alice.id}").startswith("1,500 tokens (1,200 prompt + 300 completion)")


async def test_a_reopened_page_shows_a_finished_run_with_its_error(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    services = app_services()
    run = make_run(ws, [alice])
    services.runs.mark_running(run.id, "openai · gpt-4o-mini (profile: loopback)")
    services.runs.finish(run.id, "failed", stop_reason="error", error="InternalServerError: injected HTTP 500")
    await user.open(f"/runs/{run.id}")
    assert text(user, "run-status") == "failed"
    assert text(user, "run-error") == "InternalServerError: injected HTTP 500"
    assert text(user, "llm-label") == "openai · gpt-4o-mini (profile: loopback)"
    assert not visible(only(user, "run-cancel"))


async def test_long_and_json_messages_fold_and_agent_markup_is_sanitized(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    services = app_services()
    run = make_run(ws, [alice])
    goals = json.dumps({"Goals": [f"goal {i}" for i in range(30)]})
    doc = json.dumps({"docs": {"1.json": {"root_path": "docs/prd", "filename": "1.json", "content": goals}}})
    services.messages.append(alice.id, doc, sender="Alice", role="assistant", run_id=run.id, cause_by="WritePRD")
    services.messages.append(
        alice.id,
        'hi <img src=x onerror="alert(1)"><script>alert(2)</script>',
        sender="Alice",
        role="assistant",
        run_id=run.id,
        cause_by="Chat",
    )
    await user.open(f"/runs/{run.id}")
    expansion = only(user, "message-expansion")
    assert "document: docs/prd/1.json" in expansion.props["label"]
    assert not [el for el in expansion.descendants() if isinstance(el, ui.html)]  # built when opened
    expansion.value = True  # type: ignore[attr-defined]
    await eventually(lambda: any(isinstance(el, ui.html) for el in expansion.descendants()))
    body = next(el for el in expansion.descendants() if isinstance(el, ui.html))
    # The nested JSON document is decoded and pretty-printed (quotes may or may not be escaped).
    assert '"Goals"' in html_module.unescape(body.content)
    contents = [el.props.get("innerHTML", "") for el in elements(user, "message-content")]
    html = " ".join(contents)
    assert "<img" not in html and "<script" not in html
    assert '&lt;img src=x onerror="alert(1)"&gt;' in html  # shown as text


async def test_the_files_of_a_run_are_listed_and_shown_as_code(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    services = app_services()
    run = make_run(ws, [alice])
    root = services.runtime.run_dir(run.id) / "workspace" / "todo"
    (root / "docs" / "prd").mkdir(parents=True)
    (root / "docs" / "prd" / "1.json").write_text('{"Goals": ["ship"]}')
    (root / "todo").mkdir()
    (root / "todo" / "main.py").write_text("print('hello')\n")
    await user.open(f"/runs/{run.id}")
    assert text(user, "file-count") == "2 files"
    tree = only(user, "file-tree-nodes")
    labels = {node["label"] for node in tree.nodes()}  # type: ignore[attr-defined]
    assert {"todo", "docs", "prd", "1.json", "main.py"} <= labels
    user.find(marker="file-tree-nodes").trigger("update:selected", "todo/todo/main.py")
    await eventually(lambda: bool(elements(user, "file-code")))
    assert text(user, "file-name") == "todo/todo/main.py"
    assert only(user, "file-code").content == "print('hello')"  # type: ignore[attr-defined]

    # A file written later shows up on refresh (the page also refreshes when the run finishes).
    (root / "todo" / "app.py").write_text("x = 1\n")
    user.find(marker="files-refresh").click()
    await eventually(lambda: text(user, "file-count") == "3 files")


def test_file_nodes_put_folders_first_and_keep_full_paths_as_keys() -> None:
    nodes = _file_nodes(["p/b.py", "p/docs/a.md", "top.txt"])
    assert [n["label"] for n in nodes] == ["p", "top.txt"]
    assert [c["label"] for c in nodes[0]["children"]] == ["docs", "b.py"]
    assert nodes[0]["children"][0]["children"][0]["id"] == "p/docs/a.md"


def test_prepare_content_pretty_prints_json_and_summarizes_text() -> None:
    body, summary = prepare_content('{"a": "[1, 2]"}')
    assert body.startswith("```json\n") and '"a": [\n' in body
    assert summary.startswith("JSON")
    body, summary = prepare_content("# Title\nmore text")
    assert body == "# Title\nmore text" and summary.startswith("Title ·")


# -- real runs -------------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_demo_model_run_starts_from_the_page_and_its_messages_arrive_live(user: User) -> None:
    ws = workspace(code_execution=False)
    team(ws)
    await metagpt_ready()
    await user.open("/runs")
    await user.should_see(marker="demo-model-chip")
    user.find(marker="run-agents").click()
    user.find("Alice · ProductManager").click()
    user.find("Bob · Architect").click()
    user.find(marker="run-idea").type("a CLI todo app")
    user.find(marker="run-start").click()

    await user.should_see(marker="run-header", retries=int(SLOW * 10))
    (run,) = app_services().runs.list(ws.id).items
    await eventually(lambda: text(user, "run-status") == "completed", timeout=SLOW)
    await eventually(lambda: causes(user) == ["UserRequirement", "WritePRD", "WriteDesign"], timeout=10)
    await user.should_see("WritePRD")
    await user.should_see("WriteDesign")
    await user.should_see("Stopped: every role finished its work")
    assert text(user, "code-execution-notice") == RUN_CODE_OFF
    await eventually(lambda: text(user, "run-tokens") == f"{app_services().runs.get(run.id).tokens:,}")
    await eventually(lambda: bool(elements(user, "file-tree-nodes")), timeout=10)

    # Reopening the page (a new tab) shows the same run from the stored records.
    await user.open(f"/runs/{run.id}")
    assert text(user, "run-status") == "completed"
    assert causes(user) == ["UserRequirement", "WritePRD", "WriteDesign"]
    await user.open("/runs")
    assert text(user, f"run-status-{run.id}") == "completed"


@pytest.mark.slow
async def test_a_running_run_is_cancelled_from_its_page(user: User, slow_llm: LlmServer) -> None:
    ws = workspace(code_execution=False)
    alice, _ = team(ws)
    services = app_services()
    services.llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name="loopback", api_type="openai", model="gpt-4o-mini", base_url=slow_llm.base_url, api_key="sk-test"
        ),
    )
    await metagpt_ready()
    run = await asyncio.to_thread(
        services.runtime.start_run, RunCreate(workspace_id=ws.id, agent_ids=[alice.id], idea="x")
    )
    await user.open(f"/runs/{run.id}")
    await eventually(lambda: text(user, "run-status") == "running", timeout=SLOW)
    await eventually(lambda: bool(slow_llm.chat_requests), timeout=SLOW)
    assert text(user, "llm-label") == "openai · gpt-4o-mini (profile: loopback)"
    await eventually(lambda: text(user, f"member-stream-{alice.id}") != "", timeout=30)  # tokens trickle in

    user.find(marker="run-cancel").click()
    user.find(marker="run-cancel-confirm").click()
    await eventually(lambda: text(user, "run-status") == "cancelled", timeout=15)
    assert services.runs.get(run.id).status == "cancelled"
    assert "cancelled by user" in text(user, "run-stop-reason")
    assert not visible(only(user, "run-cancel"))
    await eventually(lambda: services.agents.get(alice.id).status == "active", timeout=10)
