"""LLM profiles and the secret box: keys encrypted at rest and never shown, one default per
workspace, and `resolve` as the runtime sees it (SPEC §8, §9)."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlmodel import col, select

from core.config import Settings
from core.errors import Conflict, InvalidInput, NotFound
from core.llm_profiles import (
    LLM_API_TYPES,
    LlmProfileCreate,
    LlmProfilePublic,
    LlmProfileService,
    LlmProfileUpdate,
    ResolvedLlm,
)
from core.schemas import WorkspaceCreate
from core.secrets import MASKED, SecretBox, SecretKeyChanged, SecretKeyError, mask
from core.services import Services
from storage.models import Event, LlmProfile

KEY = "sk-test-0123456789abcdefWXYZ"
OTHER_KEY = "sk-other-9876543210zyxwvuQRST"


@pytest.fixture
def profiles(services: Services, settings: Settings) -> LlmProfileService:
    return LlmProfileService(services.db, SecretBox(settings))


@pytest.fixture
def ws(services: Services) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug="alpha")).id


@pytest.fixture
def other_ws(services: Services) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug="beta")).id


def make(profiles: LlmProfileService, ws: uuid.UUID, name: str = "work", **fields: Any) -> LlmProfilePublic:
    fields.setdefault("api_type", "openai")
    fields.setdefault("model", "gpt-4o-mini")
    return profiles.create(ws, LlmProfileCreate(name=name, **fields))


def rows(services: Services, ws: uuid.UUID | None = None) -> list[LlmProfile]:
    with services.db.read() as session:
        stmt = select(LlmProfile).order_by(col(LlmProfile.name))
        if ws is not None:
            stmt = stmt.where(LlmProfile.workspace_id == ws)
        return list(session.exec(stmt))


def stored_token(services: Services, profile_id: uuid.UUID) -> str:
    with services.db.read() as session:
        return session.exec(select(LlmProfile.api_key_encrypted).where(LlmProfile.id == profile_id)).one()


def defaults(services: Services, ws: uuid.UUID) -> list[str]:
    return [r.name for r in rows(services, ws) if r.is_default]


# -- the secret box ------------------------------------------------------------------------------


def test_key_file_is_created_0600_on_first_use_and_reused_by_later_boxes(settings: Settings) -> None:
    key_file = settings.data_dir / "secret.key"
    first = SecretBox(settings)
    assert not key_file.exists()  # built lazily: constructing a box writes nothing

    token = first.encrypt(KEY)

    assert key_file.exists()
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    Fernet(content.strip())  # a valid Fernet key
    assert SecretBox(settings).decrypt(token) == KEY
    assert key_file.read_bytes() == content
    assert [p.name for p in settings.data_dir.iterdir()] == ["secret.key"]  # no temp file left


def test_configured_secret_key_is_used_and_no_key_file_is_written(settings: Settings) -> None:
    key = Fernet.generate_key().decode()
    box = SecretBox(settings.model_copy(update={"secret_key": key}))

    token = box.encrypt(KEY)

    assert Fernet(key).decrypt(token.encode()).decode() == KEY
    assert not (settings.data_dir / "secret.key").exists()
    assert key not in repr(box)


def test_malformed_secret_key_is_refused_without_echoing_it(settings: Settings) -> None:
    box = SecretBox(settings.model_copy(update={"secret_key": "hunter2-not-a-fernet-key"}))

    with pytest.raises(SecretKeyError, match="not a valid Fernet key") as info:
        box.ensure_key()

    assert "hunter2" not in str(info.value)


def test_a_different_secret_key_cannot_decrypt_and_says_the_key_changed(settings: Settings) -> None:
    token = SecretBox(settings).encrypt(KEY)
    other = SecretBox(settings.model_copy(update={"secret_key": Fernet.generate_key().decode()}))

    with pytest.raises(SecretKeyChanged, match="not the one it was encrypted with") as info:
        other.decrypt(token)

    assert "AGENTDECK_SECRET_KEY" in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("sk-proj-0123456789abcd", "sk-…abcd"),
        ("gsk_0123456789abcdefWXYZ", "gsk_…WXYZ"),
        ("0123456789abcdefghij", "…ghij"),
        ("sk-12345678", MASKED),  # too short: nothing of it is shown
        ("short", MASKED),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_shows_at_most_a_vendor_prefix_and_the_last_four_characters(secret: str | None, shown: str) -> None:
    assert mask(secret) == shown


# -- the key at rest and in what is returned -----------------------------------------------------


def test_api_key_is_stored_encrypted_and_decrypts_back(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID
) -> None:
    created = make(profiles, ws, api_key=KEY)

    token = stored_token(services, created.id)

    assert token
    assert KEY not in token
    assert "0123456789" not in token
    assert profiles.box.decrypt(token) == KEY
    assert created.has_api_key is True
    assert created.api_key_hint == "sk-…WXYZ"


def test_public_profile_never_contains_the_key(profiles: LlmProfileService, ws: uuid.UUID) -> None:
    created = make(profiles, ws, api_key=KEY)
    updated = profiles.update(created.id, LlmProfileUpdate(api_key=SecretStr(OTHER_KEY), model="gpt-4o"))
    shown = [created, updated, profiles.get(created.id), *profiles.list(ws)]

    for public in shown:
        dumped = public.model_dump_json()
        assert KEY not in dumped
        assert OTHER_KEY not in dumped
    assert not {"api_key", "api_key_encrypted"} & set(LlmProfilePublic.model_fields)
    # The inputs carry the key as a SecretStr: printing or dumping them shows stars.
    request = LlmProfileCreate(name="x", api_type="openai", model="m", api_key=KEY)
    assert KEY not in repr(request)
    assert KEY not in request.model_dump_json()


def test_key_never_reaches_the_logs_or_the_event_log(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    created = make(profiles, ws, api_key=KEY)
    profiles.update(created.id, LlmProfileUpdate(api_key=SecretStr(OTHER_KEY), is_default=True))
    resolved = profiles.resolve(ws)
    with pytest.raises(InvalidInput):
        make(profiles, ws, name="bad", api_type="nope", api_key=KEY)

    assert resolved is not None and resolved.api_key == OTHER_KEY
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text
    assert OTHER_KEY not in repr(resolved) and OTHER_KEY not in str(resolved)
    with services.db.read() as session:
        payloads = [e.payload for e in session.exec(select(Event))]
    assert KEY not in str(payloads) and OTHER_KEY not in str(payloads)


def test_profiles_stay_listable_after_the_secret_key_changed_but_resolve_says_why(
    services: Services, settings: Settings, ws: uuid.UUID
) -> None:
    created = make(LlmProfileService(services.db, SecretBox(settings)), ws, api_key=KEY)
    rekeyed = LlmProfileService(
        services.db, SecretBox(settings.model_copy(update={"secret_key": Fernet.generate_key().decode()}))
    )

    [listed] = rekeyed.list(ws)
    assert listed.has_api_key and listed.api_key_hint == MASKED
    with pytest.raises(SecretKeyChanged, match="enter the API key again"):
        rekeyed.resolve(ws)
    # Entering the key again under the new secret key repairs the profile.
    rekeyed.update(created.id, LlmProfileUpdate(api_key=SecretStr(KEY)))
    assert rekeyed.resolve(ws) == ResolvedLlm("work", "openai", "gpt-4o-mini", "", KEY)


# -- api_key updates ------------------------------------------------------------------------------


def test_api_key_omitted_keeps_empty_clears_and_a_new_value_replaces(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID
) -> None:
    created = make(profiles, ws, api_key=KEY)

    kept = profiles.update(created.id, LlmProfileUpdate(model="gpt-4o"))
    assert kept.has_api_key and kept.api_key_hint == "sk-…WXYZ"
    assert profiles.box.decrypt(stored_token(services, created.id)) == KEY

    replaced = profiles.update(created.id, LlmProfileUpdate(api_key=SecretStr(OTHER_KEY)))
    assert replaced.api_key_hint == "sk-…QRST"
    assert profiles.box.decrypt(stored_token(services, created.id)) == OTHER_KEY

    cleared = profiles.update(created.id, LlmProfileUpdate(api_key=SecretStr("")))
    assert cleared.has_api_key is False and cleared.api_key_hint is None
    assert stored_token(services, created.id) == ""
    assert profiles.resolve(ws) == ResolvedLlm("work", "openai", "gpt-4o", "", "")


def test_a_profile_without_a_key_stores_nothing(services: Services, profiles: LlmProfileService, ws: uuid.UUID) -> None:
    created = make(profiles, ws, name="local", base_url="http://127.0.0.1:11434/v1", api_key="  ")

    assert created.has_api_key is False and created.api_key_hint is None
    assert stored_token(services, created.id) == ""


def test_base_url_empty_clears_it_and_omitted_keeps_it(profiles: LlmProfileService, ws: uuid.UUID) -> None:
    created = make(profiles, ws, base_url="http://127.0.0.1:8000/v1")
    assert created.base_url == "http://127.0.0.1:8000/v1"

    assert profiles.update(created.id, LlmProfileUpdate(model="m2")).base_url == "http://127.0.0.1:8000/v1"
    assert profiles.update(created.id, LlmProfileUpdate(base_url="")).base_url is None


# -- the default ----------------------------------------------------------------------------------


def test_first_profile_of_a_workspace_becomes_the_default(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    first = make(profiles, ws, name="first")
    second = make(profiles, ws, name="second")
    elsewhere = make(profiles, other_ws, name="elsewhere")

    assert first.is_default and not second.is_default
    assert elsewhere.is_default  # the first in its own workspace
    assert defaults(services, ws) == ["first"]


def test_making_a_profile_default_clears_the_other_default_of_its_workspace_only(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    make(profiles, ws, name="a")
    make(profiles, other_ws, name="theirs")
    b = make(profiles, ws, name="b", is_default=True)
    assert defaults(services, ws) == ["b"]

    c = make(profiles, ws, name="c")
    profiles.update(c.id, LlmProfileUpdate(is_default=True))
    assert defaults(services, ws) == ["c"]
    assert not profiles.get(b.id).is_default
    assert defaults(services, other_ws) == ["theirs"]


def test_unsetting_or_deleting_the_default_leaves_the_workspace_on_the_demo_model(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID
) -> None:
    a = make(profiles, ws, name="a")
    b = make(profiles, ws, name="b")

    profiles.update(a.id, LlmProfileUpdate(is_default=False))
    assert defaults(services, ws) == []
    assert profiles.resolve(ws) is None

    profiles.update(b.id, LlmProfileUpdate(is_default=True))
    profiles.delete(b.id)
    assert defaults(services, ws) == []
    assert profiles.resolve(ws) is None
    assert [p.name for p in profiles.list(ws)] == ["a"]


# -- resolve ----------------------------------------------------------------------------------------


def test_resolve_picks_the_named_profile_then_the_default_then_none(
    profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    assert profiles.resolve(ws) is None  # no profile: the offline demo model

    make(profiles, ws, name="work", api_key=KEY)
    make(profiles, ws, name="local", api_type="ollama", model="llama3.2", base_url="http://127.0.0.1:11434/api")
    make(profiles, other_ws, name="theirs", api_key=OTHER_KEY)

    default = profiles.resolve(ws)
    named = profiles.resolve(ws, "local")
    assert default == ResolvedLlm("work", "openai", "gpt-4o-mini", "", KEY)
    assert default.label == "openai · gpt-4o-mini (profile: work)"
    assert named == ResolvedLlm("local", "ollama", "llama3.2", "http://127.0.0.1:11434/api", "")
    assert profiles.resolve(ws, "") == default  # an empty name means "no name"
    with pytest.raises(NotFound):
        profiles.resolve(ws, "missing")
    with pytest.raises(NotFound):
        profiles.resolve(ws, "theirs")  # another workspace's profile is not there


def test_resolved_llm_config_leaves_empty_fields_to_metagpt_defaults() -> None:
    with_all = ResolvedLlm("p", "openai", "gpt-4o", "https://example.test/v1", KEY)
    bare = ResolvedLlm("p", "ollama", "llama3.2", "", "")

    assert with_all.llm_config() == {
        "api_type": "openai",
        "model": "gpt-4o",
        "base_url": "https://example.test/v1",
        "api_key": KEY,
    }
    assert bare.llm_config() == {"api_type": "ollama", "model": "llama3.2"}


# -- validation: an error means nothing was written ---------------------------------------------


@pytest.mark.parametrize("api_type", ["nope", "OpenAI", "", "openai "])
def test_unknown_api_type_is_refused_and_nothing_written(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, api_type: str
) -> None:
    with pytest.raises(InvalidInput, match="api_type"):
        make(profiles, ws, api_type=api_type, api_key=KEY)
    assert rows(services) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.test/v1",
        "localhost:11434",
        "127.0.0.1:11434/v1",
        "http://",
        "https:///v1",
        "http://exa mple.test",
        "http://example.test:99999",
        "http://user:secret@example.test/v1",
        "javascript:alert(1)",
    ],
)
def test_base_url_that_is_not_an_http_url_is_refused_and_nothing_written(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, url: str
) -> None:
    with pytest.raises(InvalidInput, match="base_url"):
        make(profiles, ws, base_url=url)
    assert rows(services) == []


def test_invalid_update_changes_nothing(services: Services, profiles: LlmProfileService, ws: uuid.UUID) -> None:
    created = make(profiles, ws, api_key=KEY, base_url="https://api.example.test/v1")
    before = rows(services, ws)[0].model_dump()

    for bad in (
        LlmProfileUpdate(model="changed", api_type="nope"),
        LlmProfileUpdate(model="changed", base_url="ftp://x"),
        LlmProfileUpdate(model="changed", api_key=SecretStr("k" * 5000)),
    ):
        with pytest.raises(InvalidInput):
            profiles.update(created.id, bad)

    assert rows(services, ws)[0].model_dump() == before


def test_duplicate_name_is_a_conflict_and_nothing_written(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    make(profiles, ws, name="work", api_key=KEY)
    other = make(profiles, ws, name="other")

    with pytest.raises(Conflict, match="work"):
        make(profiles, ws, name="work", model="another", is_default=True)
    with pytest.raises(Conflict):
        profiles.update(other.id, LlmProfileUpdate(name="work", is_default=True))

    assert [(r.name, r.model, r.is_default) for r in rows(services, ws)] == [
        ("other", "gpt-4o-mini", False),
        ("work", "gpt-4o-mini", True),
    ]
    assert make(profiles, other_ws, name="work").name == "work"  # names are per workspace


def test_unknown_workspace_is_not_found(services: Services, profiles: LlmProfileService) -> None:
    with pytest.raises(NotFound):
        make(profiles, uuid.uuid4())
    with pytest.raises(NotFound):
        profiles.list(uuid.uuid4())
    assert rows(services) == []


# -- scoping ----------------------------------------------------------------------------------------


def test_another_workspace_sees_the_profile_as_not_found_and_cannot_change_it(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    created = make(profiles, ws, api_key=KEY)
    before = rows(services, ws)[0].model_dump()

    with pytest.raises(NotFound):
        profiles.get(created.id, scope=other_ws)
    with pytest.raises(NotFound):
        profiles.update(created.id, LlmProfileUpdate(model="stolen", api_key=SecretStr("")), scope=other_ws)
    with pytest.raises(NotFound):
        profiles.delete(created.id, scope=other_ws)
    with pytest.raises(NotFound):
        profiles.get(uuid.uuid4(), scope=ws)

    assert rows(services, ws)[0].model_dump() == before
    assert profiles.get(created.id, scope=ws).id == created.id
    assert profiles.list(other_ws) == []


def test_deleting_the_workspace_deletes_its_profiles(
    services: Services, profiles: LlmProfileService, ws: uuid.UUID, other_ws: uuid.UUID
) -> None:
    make(profiles, ws)
    make(profiles, other_ws)

    services.workspaces.delete(ws)

    assert [r.workspace_id for r in rows(services)] == [other_ws]


# -- MetaGPT's api_types --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metagpt_llm_config(metagpt_root: Path) -> Any:
    from metagpt.configs import llm_config

    return llm_config


def test_api_types_are_exactly_metagpts_llm_types(metagpt_llm_config: Any) -> None:
    assert list(LLM_API_TYPES) == [t.value for t in metagpt_llm_config.LLMType]


def test_resolved_profile_builds_a_metagpt_llm_config(metagpt_llm_config: Any) -> None:
    keyed = metagpt_llm_config.LLMConfig(**ResolvedLlm("w", "openai", "gpt-4o", "https://x.test/v1", KEY).llm_config())
    keyless = metagpt_llm_config.LLMConfig(**ResolvedLlm("l", "ollama", "llama3.2", "", "").llm_config())

    assert (keyed.api_type.value, keyed.model, keyed.base_url, keyed.api_key) == (
        "openai",
        "gpt-4o",
        "https://x.test/v1",
        KEY,
    )
    assert (keyless.api_type.value, keyless.model) == ("ollama", "llama3.2")
