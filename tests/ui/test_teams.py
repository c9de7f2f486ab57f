"""Issue 17 in the dashboard (`user` fixture): a team in one click from the empty board and the
empty runs page, templates on the catalog, "save as template", and bundles from Settings."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile

from nicegui import ui
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing import User

from core.schemas import AgentCreate, WorkspaceCreate, WorkspacePublic
from core.templates import BUILTIN_BY_SLUG, SOFTWARE_COMPANY
from tests.ui.running_app import app_services
from tests.waiting import eventually


def only(user: User, marker: str) -> ui.element:
    elements = user.find(marker=marker).elements
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return next(iter(elements))


def workspace(slug: str = "team") -> WorkspacePublic:
    return app_services().workspaces.create(WorkspaceCreate(slug=slug, name=slug.title()))


def agent_names(ws: WorkspacePublic) -> list[str]:
    return [a.name for a in app_services().agents.list(ws.id, limit=500).items]


async def test_the_empty_board_creates_the_software_company_team_in_one_click(user: User) -> None:
    ws = workspace()
    await user.open("/")
    await user.should_see("No agents yet")
    await user.should_see("Create the software-company team")
    await user.should_see("Create the assistant-pair team")

    user.find(marker="create-team-software-company").click()
    await user.should_see("Start a team run", retries=100)  # now on /runs
    template = BUILTIN_BY_SLUG[SOFTWARE_COMPANY]
    assert agent_names(ws) == [m.name for m in template.members]
    members = only(user, "run-agents")
    team = {str(a.id) for a in app_services().agents.list(ws.id).items}
    assert set(members.value) == team  # type: ignore[attr-defined]
    assert only(user, "run-idea").value == template.idea  # type: ignore[attr-defined]
    assert only(user, "run-rounds").value == template.n_rounds  # type: ignore[attr-defined]

    user.find(marker="run-start").click()
    await eventually(lambda: len(app_services().runs.list(ws.id).items) == 1)
    (run,) = app_services().runs.list(ws.id).items
    assert {m.agent_name for m in run.members} == {m.name for m in template.members}
    assert run.idea == template.idea
    # With the demo model (no profile in this workspace) the run completes, and its page says so.
    await user.should_see(marker="run-header", retries=100)
    assert await asyncio.to_thread(app_services().runtime.wait_for_run, run.id, 150)
    assert app_services().runs.get(run.id).status == "completed"
    await eventually(lambda: only(user, "run-status").text == "completed", timeout=10)  # type: ignore[attr-defined]


async def test_the_offer_hides_while_filters_are_on_and_the_empty_runs_page_offers_it_too(user: User) -> None:
    ws = workspace()
    await user.open("/runs")
    await user.should_see("This workspace has no agents yet.")
    user.find(marker="create-team-assistant-pair").click()
    idea = BUILTIN_BY_SLUG["assistant-pair"].idea
    await eventually(lambda: only(user, "run-idea").value == idea, timeout=30)  # type: ignore[attr-defined]
    assert len(agent_names(ws)) == 2
    assert len(only(user, "run-agents").value) == 2  # type: ignore[attr-defined]

    await user.open("/")
    await user.should_see("Ada (Drafter)")
    await user.should_not_see(marker="team-offer")  # the board is not empty


async def test_a_second_click_creates_a_second_team_with_numbered_names(user: User) -> None:
    ws = workspace()
    app_services().templates.instantiate("assistant-pair", ws.id)
    await user.open("/catalog")
    await user.should_see("Team templates")
    await user.should_see("Software company")
    user.find(marker="create-team-assistant-pair").click()
    await user.should_see("Start a team run", retries=100)
    assert sorted(agent_names(ws)) == ["Ada (Drafter)", "Ada (Drafter) 2", "Grace (Critic)", "Grace (Critic) 2"]


async def test_a_hand_picked_set_is_saved_as_a_template_on_the_catalog(user: User) -> None:
    ws = workspace()
    pm = app_services().agents.create(AgentCreate(workspace_id=ws.id, definition="product-manager", name="<b>Pia</b>"))
    await user.open("/catalog")
    await user.should_see("New template from agents")
    user.find(marker="new-template").click()
    await user.should_see("Save as a team template", retries=50)
    with user.client:  # type: ignore[union-attr]
        only(user, "template-members").value = [str(pm.id)]  # type: ignore[attr-defined]
    user.find(marker="template-name").type("Just Pia")
    user.find(marker="template-slug").type("just-pia")
    user.find(marker="template-save").click()
    await user.should_see("Template Just Pia saved", retries=50)
    await eventually(lambda: [t.slug for t in app_services().templates.list(ws.id)][-1] == "just-pia")
    await user.should_see(marker="template-just-pia")
    await user.should_see("<b>Pia</b> · product-manager")  # shown as text, never as HTML


async def test_a_runs_team_is_saved_as_a_template_from_its_page(user: User) -> None:
    ws = workspace()
    team = app_services().templates.instantiate("assistant-pair", ws.id)
    from core.runs import RunCreate

    run = app_services().runs.create(RunCreate(workspace_id=ws.id, agent_ids=[a.id for a in team], idea="plan it"))
    app_services().runs.finish(run.id, "cancelled", stop_reason="test")
    await user.open(f"/runs/{run.id}")
    await user.should_see("Save team as template")
    user.find(marker="run-save-template").click()
    await user.should_see("Save as a team template", retries=50)
    user.find(marker="template-name").type("Pair again")
    user.find(marker="template-slug").type("pair-again")
    user.find(marker="template-save").click()
    await user.should_see("Template Pair again saved", retries=50)
    saved = app_services().templates.get("pair-again", ws.id)
    assert [m.name for m in saved.members] == [a.name for a in team] and saved.idea == "plan it"


async def test_settings_downloads_the_bundle_and_imports_one_with_progress(user: User) -> None:
    ws = workspace()
    app_services().templates.instantiate(SOFTWARE_COMPANY, ws.id)
    await user.open("/settings")
    await user.should_see("Export and import")
    user.find(marker="bundle-export").click()
    response = await user.download.next(timeout=10)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert len(zf.read("agent_instances.jsonl").splitlines()) == 5
    bundle = response.content

    user.find(marker="bundle-import-slug").type("team-copy")
    upload = only(user, "bundle-upload")
    await upload.handle_uploads([SmallFileUpload("team.agentdeck", "application/zip", bundle)])  # type: ignore[attr-defined]
    await user.should_see("Imported workspace team-copy", retries=100)
    copy = app_services().workspaces.get_by_slug("team-copy")
    assert len(agent_names(copy)) == 5
    assert only(user, "bundle-import-progress").value == 1  # type: ignore[attr-defined]

    # The same bundle again without a new slug: refused with the reason, nothing written.
    with user.client:  # type: ignore[union-attr]
        only(user, "bundle-import-slug").value = ""  # type: ignore[attr-defined]
    before = len(app_services().workspaces.list())
    await upload.handle_uploads([SmallFileUpload("team.agentdeck", "application/zip", bundle)])  # type: ignore[attr-defined]
    await user.should_see("Not imported: a workspace with slug 'team' already exists")
    assert len(app_services().workspaces.list()) == before
    await upload.handle_uploads([SmallFileUpload("bad.agentdeck", "application/zip", b"garbage" + uuid.uuid4().bytes)])  # type: ignore[attr-defined]
    await user.should_see("Not imported: not a bundle")
