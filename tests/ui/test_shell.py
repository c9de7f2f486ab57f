"""The dashboard shell: navigation, the per-user workspace switcher, the new-workspace dialog and
dark mode, as a person using the `user` fixture's simulated browser sees them."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing import User

from core.schemas import WorkspaceCreate
from tests.ui.running_app import app_services
from tests.waiting import eventually
from ui.theme import NAV


def only(user: User, marker: str) -> ui.element:
    elements = user.find(marker=marker).elements
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return next(iter(elements))


def shown_workspace(user: User) -> str:
    return only(user, "current-workspace").text  # type: ignore[attr-defined]


def slugs() -> list[str]:
    return [ws.slug for ws in app_services().workspaces.list()]


async def test_shell_shows_every_section_link_and_the_workspace_switcher(user: User) -> None:
    await user.open("/")
    for item in NAV:
        await user.should_see(marker=f"nav-{item.label.lower()}")
        await user.should_see(item.label)
    links = {el.props["href"] for el in user.find(marker="nav").elements}
    assert links == {"/", "/catalog", "/runs", "/analytics", "/settings"}
    await user.should_see(marker="workspace-switcher")
    await user.should_see(marker="page-title")


async def test_a_new_user_on_an_empty_database_lands_in_a_default_workspace(user: User) -> None:
    assert slugs() == []
    await user.open("/")
    assert slugs() == ["default"]
    assert shown_workspace(user) == "Default"


async def test_the_chosen_workspace_is_kept_for_the_user(user: User) -> None:
    workspaces = app_services().workspaces
    workspaces.create(WorkspaceCreate(slug="alpha", name="Alpha"))
    beta = workspaces.create(WorkspaceCreate(slug="beta", name="Beta"))
    await user.open("/")
    assert shown_workspace(user) == "Alpha"  # the first one, when nothing was chosen yet

    user.find(marker="workspace-switcher").click()
    user.find("Beta").click()
    await eventually(lambda: shown_workspace(user) == "Beta")

    await user.open("/")
    assert shown_workspace(user) == "Beta"
    assert only(user, "workspace-switcher").value == str(beta.id)  # type: ignore[attr-defined]


async def test_a_deleted_workspace_falls_back_to_another_one(user: User) -> None:
    workspaces = app_services().workspaces
    workspaces.create(WorkspaceCreate(slug="alpha", name="Alpha"))
    gone = workspaces.create(WorkspaceCreate(slug="gone", name="Gone"))
    await user.open("/")
    user.find(marker="workspace-switcher").click()
    user.find("Gone").click()
    await eventually(lambda: shown_workspace(user) == "Gone")

    workspaces.delete(gone.id)
    await user.open("/")
    assert shown_workspace(user) == "Alpha"


async def test_creating_a_workspace_from_the_dialog_switches_to_it(user: User) -> None:
    await user.open("/")
    user.find(marker="new-workspace").click()
    user.find(marker="new-workspace-slug").type("research")
    user.find(marker="new-workspace-name").type("Research team")
    user.find(marker="new-workspace-create").click()

    await eventually(lambda: shown_workspace(user) == "Research team")
    assert "research" in slugs()
    await user.should_see("Workspace research created")


async def test_a_bad_slug_is_explained_on_the_field_and_creates_nothing(user: User) -> None:
    await user.open("/")
    before = slugs()
    user.find(marker="new-workspace").click()
    slug = only(user, "new-workspace-slug")
    user.find(marker="new-workspace-slug").type("Not A Slug!")
    user.find(marker="new-workspace-create").click()

    await eventually(lambda: slug.error is not None)  # type: ignore[attr-defined]
    assert "lowercase letters, digits and dashes" in slug.error  # type: ignore[attr-defined]
    assert slugs() == before


async def test_a_taken_slug_is_refused_on_the_field(user: User) -> None:
    app_services().workspaces.create(WorkspaceCreate(slug="taken"))
    await user.open("/")
    user.find(marker="new-workspace").click()
    slug = only(user, "new-workspace-slug")
    user.find(marker="new-workspace-slug").type("taken")
    user.find(marker="new-workspace-create").click()

    await eventually(lambda: slug.error is not None)  # type: ignore[attr-defined]
    assert "already exists" in slug.error  # type: ignore[attr-defined]
    assert slugs() == ["taken"]


async def test_dark_mode_toggle_is_kept_for_the_user(user: User) -> None:
    await user.open("/")
    dark = next(iter(user.find(ui.dark_mode).elements))
    assert dark.value is False

    user.find(marker="dark-mode").click()
    assert dark.value is True

    await user.open("/")
    assert next(iter(user.find(ui.dark_mode).elements)).value is True
    user.find(marker="dark-mode").click()
    await user.open("/")
    assert next(iter(user.find(ui.dark_mode).elements)).value is False


async def test_without_a_password_there_is_no_login(user: User) -> None:
    await user.open("/")
    await user.should_see(marker="page-title")
    await user.should_not_see(marker="logout")
    await user.open("/login")  # nothing to log in to: straight on to the dashboard
    await user.should_see(marker="page-title")


async def test_the_current_section_is_marked_in_the_navigation(user: User) -> None:
    await user.open("/")
    assert only(user, "nav-agents").props.get("aria-current") == "page"
    assert "aria-current" not in only(user, "nav-runs").props
