"""LLM profiles can't be turned against the server or their own key (issue 12, point 5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.config import Settings
from core.errors import InvalidInput
from core.llm_profiles import EndpointPolicy, LlmProfileCreate, LlmProfileUpdate
from core.schemas import WorkspaceCreate
from core.services import Services, build_services
from tests.llm_server import LlmServer

KEY = "sk-only-for-server-a-7f3c"


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"llm_timeout": 5}))
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def test_the_key_is_not_sent_after_a_base_url_change(rt: Services) -> None:
    ws = rt.workspaces.create(WorkspaceCreate(slug="keys"))
    with LlmServer() as a, LlmServer() as b:
        profile = rt.llm_profiles.create(
            ws.id, LlmProfileCreate(name="p", api_type="openai", model="gpt-4o-mini", base_url=a.base_url, api_key=KEY)
        )
        assert rt.runtime.test_llm_profile(profile.id, scope=ws.id).ok
        assert any(KEY in str(r.headers) for r in a.chat_requests)

        moved = rt.llm_profiles.update(profile.id, LlmProfileUpdate(base_url=b.base_url), scope=ws.id)
        assert moved.has_api_key is False, "a key given for one endpoint must not follow the profile elsewhere"
        rt.runtime.test_llm_profile(profile.id, scope=ws.id)
        assert b.requests, "the test connection reached the new endpoint"
        assert not any(KEY in str(r.headers) or KEY.encode() in r.raw for r in b.requests)

        # Sending the key again with the change keeps it.
        again = rt.llm_profiles.update(profile.id, LlmProfileUpdate(base_url=a.base_url, api_key=KEY), scope=ws.id)
        assert again.has_api_key is True
        # So does changing the api_type: it clears the key.
        other = rt.llm_profiles.update(profile.id, LlmProfileUpdate(api_type="ollama"), scope=ws.id)
        assert other.has_api_key is False


def test_errors_never_echo_the_upstream_body(rt: Services) -> None:
    ws = rt.workspaces.create(WorkspaceCreate(slug="errs"))
    with LlmServer() as server:
        server.fail(times=None, status=401, should_retry=False)
        profile = rt.llm_profiles.create(
            ws.id,
            LlmProfileCreate(name="p", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="k"),
        )
        outcome = rt.runtime.test_llm_profile(profile.id, scope=ws.id)
    assert outcome.ok is False
    assert "injected" not in outcome.message and "401" in outcome.message, outcome.message


def test_a_stalled_endpoint_answers_within_the_short_timeout(rt: Services) -> None:
    import asyncio

    from core.runtime.connection import test_connection

    ws = rt.workspaces.create(WorkspaceCreate(slug="slow"))
    with LlmServer() as server:
        server.stall(times=None)
        profile = rt.llm_profiles.create(
            ws.id,
            LlmProfileCreate(name="p", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="k"),
        )
        outcome = asyncio.run(test_connection(rt.runtime, profile.id, ws.id, timeout=1.0))
    assert outcome.ok is False and "no answer" in outcome.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://[fe80::1]/v1",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_link_local_and_metadata_endpoints_are_always_refused(url: str) -> None:
    for policy in (EndpointPolicy(loopback_bind=True), EndpointPolicy(loopback_bind=False, allow_private=True)):
        with pytest.raises(InvalidInput):
            policy.check(url)


def test_private_endpoints_need_the_operators_consent_outside_loopback() -> None:
    server = EndpointPolicy(loopback_bind=False)
    for url in ("http://10.1.2.3/v1", "http://192.168.1.5:11434/v1", "http://127.0.0.1:11434/v1"):
        with pytest.raises(InvalidInput):
            server.check(url)
        EndpointPolicy(loopback_bind=False, allow_private=True).check(url)
    EndpointPolicy(loopback_bind=True).check("http://127.0.0.1:11434/v1")  # a laptop's Ollama


def test_a_non_loopback_server_refuses_a_metadata_base_url_on_create(settings: Settings) -> None:
    built = build_services(settings.model_copy(update={"host": "0.0.0.0", "password": "x"}))
    try:
        ws = built.workspaces.create(WorkspaceCreate(slug="ssrf"))
        with pytest.raises(InvalidInput):
            built.llm_profiles.create(
                ws.id, LlmProfileCreate(name="p", api_type="openai", model="m", base_url="http://10.0.0.5/v1")
            )
    finally:
        built.db.dispose()
