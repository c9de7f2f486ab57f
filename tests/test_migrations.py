"""The schema exists only through Alembic revisions, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from core.config import Settings
from core.llm_profiles import LlmProfileCreate
from core.messages import index_pending_messages
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import build_services
from storage.db import make_engine
from storage.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from tests.db import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = create_pg_database("agentdeck_migr")
        yield url
        drop_pg_database(url)


def _tables(engine: sa.Engine) -> set[str]:
    return {t for t in sa.inspect(engine).get_table_names() if t != "alembic_version"}


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    expected = set(SQLModel.metadata.tables)
    assert _tables(engine) == set()

    upgrade(engine, empty_database_url)
    assert _tables(engine) >= expected
    assert current_revision(engine) == head_revision(empty_database_url)

    downgrade(engine, empty_database_url, "base")
    assert _tables(engine) == set()
    assert current_revision(engine) is None

    upgrade(engine, empty_database_url)
    assert _tables(engine) >= expected
    engine.dispose()


def test_every_revision_steps_down_and_up_one_at_a_time(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    upgrade(engine, empty_database_url)
    script = ScriptDirectory.from_config(alembic_config(empty_database_url))
    revisions = [rev.revision for rev in script.walk_revisions()]  # head first
    for rev in revisions:
        assert current_revision(engine) == rev
        downgrade(engine, empty_database_url, "-1")
    assert current_revision(engine) is None
    engine.dispose()


def test_models_and_migrations_agree(empty_database_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add, drop or alter."""
    engine = make_engine(empty_database_url)
    upgrade(engine, empty_database_url)
    cfg = alembic_config(empty_database_url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)
    engine.dispose()


def test_014_adds_a_runs_llm_profile_and_both_directions_keep_the_runs(empty_database_url: str, tmp_path: Path) -> None:
    """Downgrading drops the column and keeps the run (its `llm_label` still says what it used);
    upgrading again gives old runs no profile: the workspace's default, as before 014."""
    engine = make_engine(empty_database_url)
    upgrade(engine, empty_database_url)
    services = build_services(Settings(data_dir=tmp_path / "data", database_url=empty_database_url))
    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug="migr"))
    services.llm_profiles.create(ws.id, LlmProfileCreate(name="fast", api_type="openai", model="gpt-4o-mini"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="helper"))
    run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=[agent.id], idea="x", llm_profile="fast"))
    services.runs.mark_running(run.id, "openai · gpt-4o-mini (profile: fast)")
    services.db.dispose()

    downgrade(engine, empty_database_url, "013")
    assert "llm_profile" not in {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT llm_label FROM runs WHERE idea = 'x'")).scalars().all()
    assert kept == ["openai · gpt-4o-mini (profile: fast)"]

    upgrade(engine, empty_database_url)
    again = build_services(Settings(data_dir=tmp_path / "data", database_url=empty_database_url))
    back = again.runs.get(run.id)
    assert (back.llm_profile, back.llm_label) == (None, "openai · gpt-4o-mini (profile: fast)")
    again.db.dispose()
    engine.dispose()


def test_015_queues_messages_for_the_search_index_and_both_directions_keep_search_complete(
    empty_database_url: str, tmp_path: Path
) -> None:
    """On SQLite, messages written at 015 wait in a queue for the index; downgrading indexes them
    and restores 006's triggers, upgrading queues new ones again. Search finds every message at
    each step (PostgreSQL's index is untouched by 015: the same holds there trivially)."""
    engine = make_engine(empty_database_url)
    upgrade(engine, empty_database_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database_url)
    services = build_services(settings)
    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug="search"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="helper"))
    for word in ("first", "second"):
        services.messages.append(agent.id, f"findable {word}")
    services.db.dispose()
    sqlite = empty_database_url.startswith("sqlite")

    def matches(word: str) -> int:
        with engine.connect() as conn:
            if sqlite:
                query = "SELECT count(*) FROM agent_messages_fts WHERE agent_messages_fts MATCH :w"
            else:
                query = "SELECT count(*) FROM agent_messages WHERE to_tsvector('simple', content) @@ plainto_tsquery('simple', :w)"
            return int(conn.execute(sa.text(query), {"w": word}).scalar_one())

    assert matches("findable") == (0 if sqlite else 2)  # still queued on SQLite
    downgrade(engine, empty_database_url, "014")
    assert matches("findable") == 2
    assert "agent_messages_fts_pending" not in sa.inspect(engine).get_table_names()
    with engine.begin() as conn:  # 006's trigger indexes in the writing transaction again
        conn.execute(sa.text("UPDATE agent_messages SET content = 'findable third' WHERE content = 'findable second'"))
    assert (matches("findable"), matches("third"), matches("second")) == (2, 1, 0)

    upgrade(engine, empty_database_url)
    again = build_services(settings)
    again.messages.append(agent.id, "findable fourth")
    found = [m.content for m in again.messages.search(ws.id, "findable").items]
    assert found == ["findable fourth", "findable third", "findable first"]
    if sqlite:
        with engine.begin() as conn:  # once the queue is indexed, the index holds exactly the table's rows
            assert index_pending_messages(conn) == 1
            conn.execute(
                sa.text("INSERT INTO agent_messages_fts(agent_messages_fts, rank) VALUES ('integrity-check', 1)")
            )
    again.db.dispose()
    engine.dispose()
