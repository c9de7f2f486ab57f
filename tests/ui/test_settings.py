"""Settings (`/settings`): API tokens shown once and revocable, LLM profiles (write-only keys, one
default, the demo-model note) and the workspace's code-execution switch."""

from __future__ import annotations

import pytest
from nicegui import ui
from nicegui.testing import User

from core.errors import Unauthorized
from core.llm_profiles import LlmProfileCreate
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.tokens import PREFIX_CHARS
from tests.llm_server import LlmServer
from tests.ui.running_app import app_services
from tests.waiting import eventually


def only(user: User, marker: str) -> ui.element:
    elements = user.find(marker=marker).elements
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return next(iter(elements))


def workspace() -> WorkspacePublic:
    return app_services().workspaces.create(WorkspaceCreate(slug="team", name="Team"))


def sees(user: User, marker: str) -> bool:
    try:
        user.find(marker=marker)
    except AssertionError:
        return False
    return True


def fill(user: User, marker: str, value: str) -> None:
    with user.client:  # type: ignore[union-attr]
        only(user, marker).value = value  # type: ignore[attr-defined]


# -- API tokens ------------------------------------------------------------------------------


async def test_a_new_token_is_shown_once_and_the_list_shows_only_its_prefix(user: User) -> None:
    ws = workspace()
    await user.open("/settings")
    await user.should_see("No tokens yet.")
    user.find(marker="new-token").click()
    await eventually(lambda: sees(user, "token-name"))
    fill(user, "token-name", "ci")
    user.find(marker="token-create").click()

    await eventually(lambda: sees(user, "token-secret"))
    secret = only(user, "token-secret").text  # type: ignore[attr-defined]
    assert app_services().tokens.authenticate(secret).name == "ci"  # the shown secret is the real one
    (token,) = app_services().tokens.list(ws.id)
    assert only(user, f"token-prefix-{token.id}").text == f"{secret[:PREFIX_CHARS]}…"  # type: ignore[attr-defined]

    user.find(marker="token-done").click()
    await eventually(lambda: not sees(user, "token-secret"))
    await user.should_not_see(secret)  # never again, not even hidden in the page
    await user.open("/settings")
    await user.should_see(marker=f"token-{token.id}")
    await user.should_not_see(secret)


async def test_revoking_a_token_asks_first_and_then_refuses_the_token(user: User) -> None:
    ws = workspace()
    token, secret = app_services().tokens.create(ws.id, "old")
    await user.open("/settings")

    user.find(marker=f"revoke-{token.id}").click()
    await eventually(lambda: sees(user, "confirm-revoke"))
    assert app_services().tokens.get(token.id).revoked_at is None  # nothing before the confirmation
    user.find(marker="confirm-revoke").click()

    await eventually(lambda: sees(user, f"token-revoked-{token.id}"))
    assert app_services().tokens.get(token.id).revoked_at is not None
    with pytest.raises(Unauthorized):
        app_services().tokens.authenticate(secret)
    await user.should_not_see(marker=f"revoke-{token.id}")


# -- LLM profiles ------------------------------------------------------------------------------


async def test_without_a_profile_the_page_says_the_demo_model_is_used(user: User) -> None:
    workspace()
    await user.open("/settings")
    await user.should_see(marker="demo-note")
    await user.should_see("demo model")
    await user.should_see("No profile yet")


async def test_creating_a_profile_keeps_the_key_secret_and_makes_it_the_default(user: User) -> None:
    ws = workspace()
    await user.open("/settings")
    user.find(marker="new-profile").click()
    await eventually(lambda: sees(user, "profile-name"))
    fill(user, "profile-name", "local")
    fill(user, "profile-api-type", "openai")
    fill(user, "profile-model", "llama3.1")
    fill(user, "profile-base-url", "http://localhost:11434/v1")
    fill(user, "profile-api-key", "sk-test-0123456789abcdef")
    user.find(marker="profile-save").click()

    await user.should_see("Profile local saved")
    (profile,) = app_services().llm_profiles.list(ws.id)
    assert profile.is_default  # the first profile of a workspace
    assert app_services().llm_profiles.resolve(ws.id).api_key == "sk-test-0123456789abcdef"
    details = only(user, f"profile-details-{profile.id}")
    await eventually(lambda: "key sk-…cdef" in details.text)  # type: ignore[attr-defined]
    await user.should_not_see("sk-test-0123456789abcdef")
    await user.should_not_see(marker="demo-note")
    await user.should_see(marker="default-profile")


async def test_editing_with_a_blank_key_keeps_the_key(user: User) -> None:
    ws = workspace()
    profiles = app_services().llm_profiles
    profile = profiles.create(
        ws.id, LlmProfileCreate(name="cloud", api_type="openai", model="gpt-4o-mini", api_key="sk-keep-me-please-1234")
    )
    await user.open("/settings")
    user.find(marker=f"edit-{profile.id}").click()
    await eventually(lambda: sees(user, "profile-api-key"))
    assert only(user, "profile-api-key").value == ""  # type: ignore[attr-defined]
    fill(user, "profile-model", "gpt-4o")
    user.find(marker="profile-save").click()

    await user.should_see("Profile cloud saved")
    assert profiles.get(profile.id).model == "gpt-4o"
    assert profiles.resolve(ws.id).api_key == "sk-keep-me-please-1234"


async def test_a_bad_base_url_is_explained_on_the_field_and_changes_nothing(user: User) -> None:
    ws = workspace()
    await user.open("/settings")
    user.find(marker="new-profile").click()
    await eventually(lambda: sees(user, "profile-name"))
    fill(user, "profile-name", "bad")
    fill(user, "profile-model", "m")
    fill(user, "profile-base-url", "ftp://example.com")
    user.find(marker="profile-save").click()

    base_url = only(user, "profile-base-url")
    await eventually(lambda: base_url.error is not None)  # type: ignore[attr-defined]
    assert "http" in base_url.error  # type: ignore[attr-defined]
    assert app_services().llm_profiles.list(ws.id) == []


async def test_the_star_switches_the_default_and_delete_asks_first(user: User) -> None:
    ws = workspace()
    profiles = app_services().llm_profiles
    first = profiles.create(ws.id, LlmProfileCreate(name="a", api_type="openai", model="m1"))
    second = profiles.create(ws.id, LlmProfileCreate(name="b", api_type="ollama", model="m2"))
    await user.open("/settings")
    assert profiles.get(first.id).is_default

    user.find(marker=f"default-{second.id}").click()
    await eventually(lambda: profiles.get(second.id).is_default)
    assert not profiles.get(first.id).is_default
    await eventually(lambda: "default-profile" in only(user, f"default-{second.id}")._markers)

    user.find(marker=f"delete-{second.id}").click()
    await eventually(lambda: sees(user, "confirm-delete"))
    assert len(profiles.list(ws.id)) == 2
    user.find(marker="confirm-delete").click()
    await eventually(lambda: [p.name for p in profiles.list(ws.id)] == ["a"])
    await user.should_see("No default profile")  # the default is gone: back to the demo model


# -- workspace -----------------------------------------------------------------------------------


async def test_the_code_execution_switch_persists(user: User) -> None:
    ws = workspace()
    await user.open("/settings")
    switch = only(user, "code-execution")
    assert switch.value is False  # type: ignore[attr-defined]  # off for a new workspace (issue 12)
    await user.should_see("bubblewrap sandbox")  # says what the sandbox allows

    user.find(marker="code-execution").click()
    await eventually(lambda: app_services().workspaces.get(ws.id).settings.get("code_execution") is True)
    await user.open("/settings")
    assert only(user, "code-execution").value is True  # type: ignore[attr-defined]

    user.find(marker="code-execution").click()
    await eventually(lambda: app_services().workspaces.get(ws.id).settings.get("code_execution") is False)


@pytest.mark.slow  # the first LLM call imports MetaGPT
async def test_test_connection_reports_success_and_failure(user: User) -> None:
    ws = workspace()
    profiles = app_services().llm_profiles
    with LlmServer() as server:
        good = profiles.create(
            ws.id, LlmProfileCreate(name="loopback", api_type="openai", model="gpt-4o-mini", base_url=server.base_url)
        )
        await user.open("/settings")
        marker = f"test-result-{good.id}"

        def result() -> str:
            return only(user, marker).text if sees(user, marker) else ""  # type: ignore[attr-defined]

        user.find(marker=f"test-{good.id}").click()
        await eventually(lambda: result().startswith("Connected"), timeout=60)

        server.fail(times=None)
        user.find(marker=f"test-{good.id}").click()
        await eventually(lambda: result().startswith("Failed"), timeout=60)
