"""The agent registry: built-in definitions and `agentdeck.agents` plugins, synced into the catalog.

Plugins here are real distributions: a package and its `*.dist-info` (METADATA and
entry_points.txt) are written to a temporary folder put on sys.path, so importlib.metadata finds
them exactly as it finds an installed wheel.
"""

from __future__ import annotations

import logging
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import delete, func, select

from core.registry import BUILTIN_SPECS, ENTRY_POINT_GROUP, AgentSpec, discover_specs, sync_definitions
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services
from storage.models import AgentDefinition

BUILTIN_SLUGS = {"product-manager", "architect", "project-manager", "engineer", "qa-engineer", "assistant"}
BUILTIN_ROLES = {"ProductManager", "Architect", "ProjectManager", "Engineer", "QaEngineer", "assistant"}


# -- helpers -------------------------------------------------------------------------------------
def install_distribution(
    site: Path, dist_name: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "1.0"
) -> None:
    """Write a distribution into `site` the way pip lays out a wheel: modules + dist-info."""
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder on sys.path (removed again after the test)."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def unique(prefix: str) -> str:
    """A module name no earlier test imported (sys.modules outlives a test)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def catalog(services: Services) -> dict[str, AgentDefinition]:
    with services.db.read() as session:
        rows = list(session.exec(select(AgentDefinition)))
    slugs = [row.slug for row in rows]
    assert len(slugs) == len(set(slugs)), "a slug appears twice in the catalog"
    return {row.slug: row for row in rows}


def definition_rows(services: Services) -> int:
    with services.db.read() as session:
        return session.exec(select(func.count()).select_from(AgentDefinition)).one()


def clear_catalog(services: Services) -> None:
    with services.db.write() as session:
        session.exec(delete(AgentDefinition))  # type: ignore[call-overload]


# -- built-ins -----------------------------------------------------------------------------------
def test_the_built_ins_are_the_five_sop_roles_and_the_assistant() -> None:
    assert {s.slug for s in BUILTIN_SPECS} == BUILTIN_SLUGS
    assert {s.role_kind for s in BUILTIN_SPECS} == BUILTIN_ROLES
    assert all(s.source == "builtin" for s in BUILTIN_SPECS)
    assert [s.slug for s in discover_specs()][:6] == [s.slug for s in BUILTIN_SPECS]


def test_sync_inserts_the_built_ins_once_and_a_second_sync_changes_nothing(services: Services) -> None:
    clear_catalog(services)
    assert sync_definitions(services.db) == {"inserted": 6, "updated": 0}
    first = catalog(services)
    assert set(first) == BUILTIN_SLUGS
    assert all(row.version == 1 and row.source == "builtin" for row in first.values())

    assert sync_definitions(services.db) == {"inserted": 0, "updated": 0}
    again = catalog(services)
    assert {slug: (row.id, row.version, row.updated_at) for slug, row in again.items()} == {
        slug: (row.id, row.version, row.updated_at) for slug, row in first.items()
    }
    assert definition_rows(services) == 6


def test_the_catalog_as_the_service_shows_it(services: Services) -> None:
    definitions = services.agents.definitions()
    assert [d.slug for d in definitions] == sorted(BUILTIN_SLUGS)
    assistant = services.agents.definition("assistant")
    assert assistant.role_kind == "assistant"
    assert assistant.config_schema["required"] == ["system_prompt"]
    assert assistant.default_config["system_prompt"]


def test_a_changed_spec_bumps_the_version_and_is_stored(services: Services) -> None:
    original = next(s for s in BUILTIN_SPECS if s.slug == "engineer")
    changed = replace(original, description="Writes the code, now with tests first.")
    others = [s for s in BUILTIN_SPECS if s.slug != "engineer"]

    assert sync_definitions(services.db, [*others, changed]) == {"inserted": 0, "updated": 1}
    row = catalog(services)["engineer"]
    assert (row.version, row.description) == (2, changed.description)
    assert sync_definitions(services.db, [*others, changed]) == {"inserted": 0, "updated": 0}

    # Going back is a change too: versions only increase.
    assert sync_definitions(services.db, list(BUILTIN_SPECS)) == {"inserted": 0, "updated": 1}
    assert catalog(services)["engineer"].version == 3
    # A spec that declares a higher version is taken at its word.
    assert sync_definitions(services.db, [*others, replace(original, version=10)])["updated"] == 1
    assert catalog(services)["engineer"].version == 10
    assert definition_rows(services) == 6


def test_agents_keep_their_definition_when_it_changes(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="keep"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="architect", name="arch"))
    changed = replace(next(s for s in BUILTIN_SPECS if s.slug == "architect"), name="System Architect")
    assert sync_definitions(services.db, [changed if s.slug == "architect" else s for s in BUILTIN_SPECS]) == {
        "inserted": 0,
        "updated": 1,
    }
    assert services.agents.get(agent.id).definition_id == agent.definition_id


def test_a_slug_given_twice_to_sync_is_stored_once(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    clear_catalog(services)
    first = AgentSpec(slug="twin", name="Twin", role_kind="assistant")
    second = replace(first, name="Other twin")
    with caplog.at_level(logging.ERROR, logger="core.registry"):
        assert sync_definitions(services.db, [first, second]) == {"inserted": 1, "updated": 0}
    assert catalog(services)["twin"].name == "Twin"
    assert "twin" in caplog.text


# -- plugins -------------------------------------------------------------------------------------
def test_a_plugin_distribution_is_discovered_and_stored_with_its_distribution_name(
    services: Services, site: Path
) -> None:
    module = unique("reviewer_plugin")
    install_distribution(
        site,
        "agentdeck-reviewer",
        {
            module: """
                from core.registry import AgentSpec

                REVIEWER = AgentSpec(
                    slug="code-reviewer",
                    name="Code Reviewer",
                    role_kind="reviewer_roles:Reviewer",
                    description="Reviews pull requests.",
                    default_config={"strictness": 2},
                    config_schema={"type": "object", "properties": {"strictness": {"type": "integer"}}},
                )

                def translator():
                    return {"slug": "translator", "name": "Translator", "role_kind": "assistant",
                            "default_config": {"system_prompt": "Translate."}}
            """
        },
        {"reviewer": f"{module}:REVIEWER", "translator": f"{module}:translator"},
    )

    found = {spec.slug: spec for spec in discover_specs()}
    assert set(found) >= BUILTIN_SLUGS
    assert found["code-reviewer"].source == "agentdeck-reviewer"
    assert found["translator"].source == "agentdeck-reviewer"

    assert sync_definitions(services.db) == {"inserted": 2, "updated": 0}
    stored = catalog(services)
    assert (stored["code-reviewer"].source, stored["code-reviewer"].role_kind) == (
        "agentdeck-reviewer",
        "reviewer_roles:Reviewer",
    )
    assert stored["translator"].default_config == {"system_prompt": "Translate."}
    assert sync_definitions(services.db) == {"inserted": 0, "updated": 0}

    # A plugin definition is a catalog entry like any other: its schema guards its agents' config.
    ws = services.workspaces.create(WorkspaceCreate(slug="plugins"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="code-reviewer", name="rita"))
    assert agent.config == {"strictness": 2}


GOOD_PLUGIN = """
    from core.registry import AgentSpec

    GOOD = AgentSpec(slug="good-one", name="Good", role_kind="assistant")
"""
BAD_PLUGIN = """
    from core.registry import AgentSpec

    def explode():
        raise RuntimeError("plugin crashed while building its spec")

    GARBAGE = 42
    UNKNOWN_FIELD = {"slug": "x", "name": "X", "role_kind": "assistant", "colour": "red"}
    SLUG_NOT_TEXT = {"slug": 5, "name": "Five", "role_kind": "assistant"}
    BAD_SLUG = AgentSpec(slug="Has Spaces", name="Spaces", role_kind="assistant")
    LONG_NAME = AgentSpec(slug="long-name", name="n" * 500, role_kind="assistant")
    BAD_ROLE = AgentSpec(slug="bad-role", name="Bad role", role_kind="NoSuchRole")
    BAD_CONFIG = AgentSpec(slug="bad-config", name="Bad config", role_kind="assistant", default_config=[1])
    BAD_SCHEMA = AgentSpec(slug="bad-schema", name="Bad schema", role_kind="assistant",
                           config_schema={"type": "no-such-type"})
    BAD_VERSION = AgentSpec(slug="bad-version", name="Bad version", role_kind="assistant", version=0)
    NUL_CONFIG = AgentSpec(slug="nul-config", name="NUL", role_kind="assistant", default_config={"p": "\\x00"})
    CLASH = AgentSpec(slug="assistant", name="Not the assistant", role_kind="assistant")
"""
BAD_ENTRIES = {
    "raises-on-import": "{broken}:ANYTHING",
    "missing-attribute": "{bad}:NOT_THERE",
    "raises-when-called": "{bad}:explode",
    "garbage": "{bad}:GARBAGE",
    "unknown-field": "{bad}:UNKNOWN_FIELD",
    "slug-not-text": "{bad}:SLUG_NOT_TEXT",
    "bad-slug": "{bad}:BAD_SLUG",
    "long-name": "{bad}:LONG_NAME",
    "bad-role": "{bad}:BAD_ROLE",
    "bad-config": "{bad}:BAD_CONFIG",
    "bad-schema": "{bad}:BAD_SCHEMA",
    "bad-version": "{bad}:BAD_VERSION",
    "nul-config": "{bad}:NUL_CONFIG",
}


def test_broken_plugins_are_logged_and_skipped_and_the_others_still_load(
    services: Services, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad, broken = unique("good_plugin"), unique("bad_plugin"), unique("broken_plugin")
    install_distribution(site, "agentdeck-good", {good: GOOD_PLUGIN}, {"good": f"{good}:GOOD"})
    install_distribution(
        site,
        "agentdeck-bad",
        {bad: BAD_PLUGIN, broken: "raise ImportError('this plugin needs a package that is missing')"},
        {name: target.format(bad=bad, broken=broken) for name, target in BAD_ENTRIES.items()},
    )

    with caplog.at_level(logging.ERROR, logger="core.registry"):
        specs = discover_specs()
        result = sync_definitions(services.db)

    slugs = [spec.slug for spec in specs]
    assert set(slugs) == BUILTIN_SLUGS | {"good-one"}
    assert result == {"inserted": 1, "updated": 0}
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for entry in BAD_ENTRIES:
        assert any(entry in message for message in logged), f"no error logged for plugin {entry}"
    assert set(catalog(services)) == BUILTIN_SLUGS | {"good-one"}


def test_a_plugin_reusing_a_built_in_slug_is_skipped(
    services: Services, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = unique("clash_plugin")
    install_distribution(site, "agentdeck-clash", {module: BAD_PLUGIN}, {"impostor": f"{module}:CLASH"})
    with caplog.at_level(logging.ERROR, logger="core.registry"):
        specs = discover_specs()
        assert sync_definitions(services.db) == {"inserted": 0, "updated": 0}
    assistant = next(spec for spec in specs if spec.slug == "assistant")
    assert (assistant.source, assistant.name) == ("builtin", "Assistant")
    assert sum(spec.slug == "assistant" for spec in specs) == 1
    stored = catalog(services)["assistant"]
    assert (stored.source, stored.name, stored.version) == ("builtin", "Assistant", 1)
    assert "impostor" in caplog.text and "assistant" in caplog.text


def test_two_plugins_with_the_same_slug_the_first_wins(services: Services, site: Path) -> None:
    first, second = unique("first_plugin"), unique("second_plugin")
    install_distribution(site, "agentdeck-one", {first: GOOD_PLUGIN}, {"good": f"{first}:GOOD"})
    install_distribution(site, "agentdeck-two", {second: GOOD_PLUGIN}, {"good": f"{second}:GOOD"})
    specs = [spec for spec in discover_specs() if spec.slug == "good-one"]
    assert len(specs) == 1
    sync_definitions(services.db)
    assert catalog(services)["good-one"].source == specs[0].source
