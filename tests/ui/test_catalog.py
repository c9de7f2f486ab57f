"""The catalog (`/catalog`): every definition with its role kind, source, version and config schema."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing import User

from core.registry import BUILTIN_SPECS
from tests.ui.running_app import app_services
from ui.catalog import schema_rows


async def test_the_catalog_lists_the_six_built_in_definitions(user: User) -> None:
    await user.open("/catalog")
    await user.should_see("Catalog")
    shown = {m for el in user.find(marker="definition").elements for m in el._markers if m != "definition"}
    assert shown == {f"definition-{spec.slug}" for spec in BUILTIN_SPECS}
    assert len(BUILTIN_SPECS) == 6
    for spec in BUILTIN_SPECS:
        await user.should_see(spec.name)
        await user.should_see(spec.role_kind)
    await user.should_see("MetaGPT's Architect: designs the system")
    await user.should_see("built-in")
    await user.should_see("6 definitions: 6 built in, 0 from plugins")


async def test_the_config_schema_is_shown_as_a_table_of_properties(user: User) -> None:
    await user.open("/catalog")
    with user.scope(marker="schema-assistant"):
        table = next(iter(user.find(ui.table).elements))
    rows = {row["name"]: row for row in table.rows}
    assert set(rows) == {"llm_profile", "constraints", "approve_replies", "system_prompt", "temperature"}
    assert rows["system_prompt"]["rules"].startswith("required")
    assert rows["system_prompt"]["default"] == "You are a helpful assistant."
    assert rows["temperature"]["type"] == "number"
    assert "≤ 2" in rows["temperature"]["rules"]
    assert rows["llm_profile"]["type"] == "string | null"


def test_schema_rows_cope_with_a_definition_without_schema() -> None:
    from core.schemas import DefinitionPublic

    bare = DefinitionPublic.model_validate(
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "slug": "bare",
            "name": "Bare",
            "description": "",
            "role_kind": "pkg.mod:Role",
            "default_config": {},
            "config_schema": {},
            "version": 1,
            "source": "some-plugin",
        }
    )
    assert schema_rows(bare) == []


async def test_a_definition_leads_to_the_create_dialog(user: User) -> None:
    await user.open("/catalog")
    assert app_services().agents.definition("qa-engineer").source == "builtin"
    user.find(marker="use-qa-engineer").click()
    await user.should_see(marker="new-agent-definition")
