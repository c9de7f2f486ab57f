"""Workspace bundles (issue 17): a workspace with its whole history moves between databases.

Real databases on both sides: SQLite files and PostgreSQL (tests/db.py makes a database per
test), real zip files on disk. A bad bundle is refused with its own message and writes nothing.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from core.bundles import FORMAT_VERSION, MANIFEST, TABLES, BundleError
from core.config import Settings
from core.context import ContextRollback, ContextUpdate
from core.errors import Conflict
from core.events import EventFilter, read_events
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, ProjectCreate, RepositoryLinkCreate, WorkspaceCreate
from core.services import Services, build_services
from core.templates import TemplateFromAgents
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import AgentMessage
from tests.db import create_pg_database, drop_pg_database

PG = "postgresql"


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[Callable[[str], Services]]:
    """Services on a brand-new migrated database of the given kind, each with its own data dir."""
    built: list[Services] = []
    databases: list[str] = []

    def make(kind: str) -> Services:
        n = len(built)
        if kind == PG:
            url = create_pg_database("agentdeck_bundle")
            databases.append(url)
        else:
            url = f"sqlite:///{tmp_path / f'db{n}.sqlite'}"
        engine = make_engine(url)
        upgrade(engine, url)
        engine.dispose()
        settings = Settings(data_dir=tmp_path / f"data{n}", database_url=url)
        settings.data_dir.mkdir(parents=True)
        services = build_services(settings)
        sync_definitions(services.db)
        built.append(services)
        return services

    yield make
    for services in built:
        services.db.dispose()
    for url in databases:
        drop_pg_database(url)


def populate(services: Services, slug: str = "acme") -> uuid.UUID:
    """A workspace with a bit of everything a bundle carries."""
    ws = services.workspaces.create(WorkspaceCreate(slug=slug, name="Acme Inc."))
    project = services.workspaces.create_project(ws.id, ProjectCreate(slug="web", name="Web", description="the site"))
    services.workspaces.add_repository(ws.id, project.id, RepositoryLinkCreate(url="https://example.com/acme.git"))
    pm = services.agents.create(
        AgentCreate(workspace_id=ws.id, definition="product-manager", name="Pia", context={"goal": "ship"}),
        actor="user",
    )
    dev = services.agents.create(
        AgentCreate(workspace_id=ws.id, definition="engineer", name="Dev", project_id=project.id), actor="user"
    )
    helper = services.agents.create(
        AgentCreate(workspace_id=ws.id, definition="assistant", name="Helper", config={"system_prompt": "Be brief."})
    )
    services.agents.activate(pm.id, actor="user")
    services.agents.set_status(dev.id, "error", reason="LLM timed out", actor="system")
    services.contexts.update(pm.id, ContextUpdate(patch={"deadline": "friday", "ünïcode": "✓"}, reason="plan"))
    services.contexts.update(pm.id, ContextUpdate(data={"goal": "ship v2"}, reason="rewrite"))
    services.contexts.rollback(pm.id, ContextRollback(version=2))
    services.llm_profiles.create(
        ws.id, LlmProfileCreate(name="openai", api_type="openai", model="gpt-4o", api_key="sk-secret-key-123")
    )
    run = services.runs.create(
        RunCreate(workspace_id=ws.id, agent_ids=[pm.id, dev.id], idea="a todo app", n_rounds=2, llm_profile="openai")
    )
    services.runs.mark_running(run.id, "demo model")
    for i in range(30):
        services.messages.append(
            pm.id if i % 2 else dev.id,
            f"message {i} — with <b>markup</b> and\nnewlines",
            sender="Pia" if i % 2 else "Dev",
            role="assistant",
            run_id=run.id if i < 10 else None,
            metadata={"i": i, "nested": {"list": [1, 2.5, None]}},
            cause_by="WritePRD" if i % 3 == 0 else "",
            send_to=["<all>"],
            prompt_tokens=i,
            completion_tokens=2 * i,
            cost=i / 1000,
        )
    services.messages.append(helper.id, "hello", sender="user", role="user")
    services.runs.finish(run.id, "completed", stop_reason="n_rounds")
    # The run's MetaGPT files, where the runtime puts them.
    root = services.runtime.run_dir(run.id) / "workspace" / "todo"
    (root / "todo").mkdir(parents=True)
    (root / "todo" / "main.py").write_text("print('todo')\n")
    (root / "docs").mkdir()
    (root / "docs" / "prd.md").write_text("# PRD\n\nÜnïcode ✓\n")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 10)
    services.templates.create_from_agents(ws.id, TemplateFromAgents(slug="duo", name="Duo", agent_ids=[pm.id, dev.id]))
    return ws.id


def read_bundle(path: Path) -> dict[str, Any]:
    """Every exported row by table and id (definition ids as slugs: each database has its own
    catalog ids), the run files by path, and the manifest."""
    with zipfile.ZipFile(path) as zf:
        definitions = {d["id"]: d["slug"] for d in _jsonl(zf, "agent_definitions.jsonl")}
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        for spec in TABLES:
            rows = {}
            for row in _jsonl(zf, f"{spec.name}.jsonl"):
                if "definition_id" in row:
                    row["definition_id"] = definitions[row["definition_id"]]
                rows[row["id"]] = row
            tables[spec.name] = rows
        files = {n: zf.read(n) for n in zf.namelist() if n.startswith("files/")}
        manifest = json.loads(zf.read(MANIFEST))
    return {"tables": tables, "files": files, "manifest": manifest}


def _jsonl(zf: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in zf.read(name).decode().splitlines()]


def row_counts(services: Services) -> dict[str, int]:
    with services.db.engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in SQLModel.metadata.sorted_tables
        }


def run_dirs(services: Services) -> set[str]:
    root = services.settings.data_dir / "runs"
    return {p.name for p in root.iterdir()} if root.exists() else set()


# -- round trip ------------------------------------------------------------------------------
def test_round_trip_sqlite_postgresql_sqlite_keeps_every_exported_field(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    source = make_services("sqlite")
    ws_id = populate(source)
    first = tmp_path / "first.agentdeck"
    source.bundles.export_to(ws_id, first)

    postgres = make_services(PG)
    result = postgres.bundles.import_file(first)
    assert result.slug == "acme" and result.workspace_id == ws_id and result.remapped == 0
    second = tmp_path / "second.agentdeck"
    postgres.bundles.export_to(ws_id, second)

    back = make_services("sqlite")
    back.bundles.import_file(second)
    third = tmp_path / "third.agentdeck"
    back.bundles.export_to(ws_id, third)

    original, via_pg, round_trip = read_bundle(first), read_bundle(second), read_bundle(third)
    assert original["tables"] == via_pg["tables"] == round_trip["tables"]
    assert original["files"] == via_pg["files"] == round_trip["files"]
    counts = {t["name"]: t["rows"] for t in original["manifest"]["tables"]}
    assert counts["agent_messages"] == 31 and counts["agent_context_versions"] == 6
    assert counts["agent_status_changes"] == 5 and counts["run_members"] == 2 and counts["team_templates"] == 1
    assert len(original["files"]) == 3
    # Keys never travel; the profile itself does.
    (profile,) = original["tables"]["llm_profiles"].values()
    assert profile["api_key_encrypted"] == "" and profile["model"] == "gpt-4o"
    assert b"sk-secret-key-123" not in first.read_bytes()
    # The imported workspace works as one: its history reads through the services, run files too.
    run = back.runs.list(ws_id).items[0]
    assert run.status == "completed" and [m.agent_name for m in run.members] == ["Pia", "Dev"]
    assert run.llm_profile == "openai"  # the run's own profile (a column added in 014) travels
    assert [r["llm_profile"] for r in original["tables"]["runs"].values()] == ["openai"]
    assert back.runtime.read_run_file(run.id, "todo/docs/prd.md") == "# PRD\n\nÜnïcode ✓\n"
    pm = next(a for a in back.agents.list(ws_id).items if a.name == "Pia")
    assert back.contexts.get(pm.id).version == 4
    assert [v.version for v in back.contexts.versions(pm.id).items] == [4, 3, 2, 1]
    assert back.messages.count(pm.id) == 15
    # One summary event in the imported workspace, none of the source's events.
    with back.db.read() as session:
        events = read_events(session, EventFilter(workspace_id=ws_id), 0, 100)
    assert [e.type for e in events] == ["workspace_imported"]
    assert events[0].data["rows"]["agent_messages"] == 31


def test_importing_the_same_bundle_twice_needs_a_new_slug_and_remaps_ids(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    services = make_services("sqlite")
    ws_id = populate(services)
    bundle = tmp_path / "acme.agentdeck"
    services.bundles.export_to(ws_id, bundle)
    before = row_counts(services)

    with pytest.raises(Conflict, match=r"already exists.*--as NEW_SLUG"):
        services.bundles.import_file(bundle)
    assert row_counts(services) == before

    copy = services.bundles.import_file(bundle, new_slug="acme-copy")
    assert copy.workspace_id != ws_id and copy.remapped > 0
    after = row_counts(services)
    for spec in TABLES:
        assert after[spec.name] == 2 * before[spec.name], spec.name
    # The copy is consistent: its agents, runs, members and files point at its own rows.
    agents = {a.name: a for a in services.agents.list(copy.workspace_id).items}
    assert set(agents) == {"Pia", "Dev", "Helper"}
    (run,) = services.runs.list(copy.workspace_id).items
    assert {m.agent_id for m in run.members} == {agents["Pia"].id, agents["Dev"].id}
    assert services.runtime.read_run_file(run.id, "todo/todo/main.py") == "print('todo')\n"
    assert services.messages.count(agents["Pia"].id) == 15
    with pytest.raises(Conflict, match="'acme-copy' already exists"):
        services.bundles.import_file(bundle, new_slug="acme-copy")


# -- refusals ------------------------------------------------------------------------------------
def rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes | None], extra: dict[str, bytes]) -> Path:
    """A copy of the bundle with entries changed (None drops one) and entries added."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in extra.items():
            zout.writestr(name, data)
    return target


def _newer_format(name: str, data: bytes) -> bytes:
    if name != MANIFEST:
        return data
    manifest = json.loads(data)
    manifest["format_version"] = FORMAT_VERSION + 1
    return json.dumps(manifest).encode()


def _message_to_missing_agent(name: str, data: bytes) -> bytes:
    if name != "agent_messages.jsonl":
        return data
    lines = data.decode().splitlines()
    row = json.loads(lines[5])
    row["agent_id"] = str(uuid.uuid4())
    lines[5] = json.dumps(row)
    return ("\n".join(lines) + "\n").encode()


def test_bad_bundles_are_refused_each_with_its_own_message_and_nothing_is_written(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    source = make_services("sqlite")
    ws_id = populate(source)
    good = tmp_path / "good.agentdeck"
    source.bundles.export_to(ws_id, good)
    run_id = next(iter(read_bundle(good)["tables"]["runs"]))

    truncated = tmp_path / "truncated.agentdeck"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases = {
        "truncated": (truncated, "truncated"),
        "dotdot": (
            rewrite(good, tmp_path / "dotdot.agentdeck", lambda n, d: d, {f"files/{run_id}/../../evil.txt": b"x"}),
            r"'\.\.', '\.' and empty path parts are not allowed",
        ),
        "newer": (
            rewrite(good, tmp_path / "newer.agentdeck", _newer_format, {}),
            f"bundle format version {FORMAT_VERSION + 1} is newer than this AgentDeck reads",
        ),
        "missing agent": (
            rewrite(good, tmp_path / "orphan.agentdeck", _message_to_missing_agent, {}),
            r"agent_messages.jsonl line 6: agent_id .* points to a agent_instances row that is not in the bundle",
        ),
    }
    target = make_services("sqlite")
    before, dirs_before = row_counts(target), run_dirs(target)
    messages = set()
    for name, (path, expected) in cases.items():
        with pytest.raises(BundleError, match=expected) as caught:
            target.bundles.import_file(path)
        messages.add(str(caught.value).split(":")[0])
        assert row_counts(target) == before, name
        assert run_dirs(target) == dirs_before, name
    assert len(messages) == len(cases), messages
    # And the good one goes in.
    target.bundles.import_file(good)
    assert row_counts(target)["agent_messages"] == 31


def test_unsafe_run_files_are_refused(make_services: Callable[[str], Services], tmp_path: Path) -> None:
    source = make_services("sqlite")
    ws_id = populate(source)
    good = tmp_path / "good.agentdeck"
    source.bundles.export_to(ws_id, good)
    run_id = next(iter(read_bundle(good)["tables"]["runs"]))
    target = make_services("sqlite")
    before = row_counts(target)

    absolute = rewrite(good, tmp_path / "abs.agentdeck", lambda n, d: d, {f"files/{run_id}//etc/passwd": b"x"})
    with pytest.raises(BundleError, match="not allowed"):
        target.bundles.import_file(absolute)
    other_run = rewrite(good, tmp_path / "other.agentdeck", lambda n, d: d, {f"files/{uuid.uuid4()}/a.py": b"x"})
    with pytest.raises(BundleError, match="is not in the bundle"):
        target.bundles.import_file(other_run)
    # A symlink entry (mode bits of a link in the zip's external attributes).
    link = tmp_path / "link.agentdeck"
    rewrite(good, link, lambda n, d: d, {})
    with zipfile.ZipFile(link, "a") as zf:
        info = zipfile.ZipInfo(f"files/{run_id}/escape")
        info.external_attr = (0o120777 << 16) | 0
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(BundleError, match="no symlinks"):
        target.bundles.import_file(link)
    assert row_counts(target) == before
    assert run_dirs(target) == set()


def test_a_database_error_mid_import_rolls_everything_back(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    """Validation passes, the database refuses a late row (a message number used twice in a thread):
    the workspace, agents and staged run files written before it are all gone."""
    source = make_services("sqlite")
    ws_id = populate(source)
    good = tmp_path / "good.agentdeck"
    source.bundles.export_to(ws_id, good)

    def duplicate_seq(name: str, data: bytes) -> bytes:
        if name != "agent_messages.jsonl":
            return data
        lines = data.decode().splitlines()
        rows = [json.loads(line) for line in lines]
        twin = next(r for r in rows[1:] if r["agent_id"] == rows[0]["agent_id"])
        twin["seq"] = rows[0]["seq"]
        return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()

    bad = rewrite(good, tmp_path / "dup.agentdeck", duplicate_seq, {})
    target = make_services("sqlite")
    before = row_counts(target)
    with pytest.raises(BundleError, match="the database refused the bundle"):
        target.bundles.import_file(bad)
    assert row_counts(target) == before
    assert run_dirs(target) == set()


def test_a_bundle_from_a_newer_schema_names_the_unknown_column(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    source = make_services("sqlite")
    ws_id = populate(source)
    good = tmp_path / "good.agentdeck"
    source.bundles.export_to(ws_id, good)

    def extra_column(name: str, data: bytes) -> bytes:
        if name != "runs.jsonl":
            return data
        rows = [json.loads(line) | {"future_column": 1} for line in data.decode().splitlines()]
        return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()

    target = make_services("sqlite")
    with pytest.raises(BundleError, match=r"unknown column.*future_column.*newer"):
        target.bundles.import_file(rewrite(good, tmp_path / "future.agentdeck", extra_column, {}))


def test_export_streams_in_chunks_and_is_a_valid_zip(make_services: Callable[[str], Services]) -> None:
    services = make_services("sqlite")
    ws_id = populate(services)
    chunks = list(services.bundles.export_chunks(ws_id))
    assert len(chunks) > 3
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert zf.testzip() is None
        assert {f"{t.name}.jsonl" for t in TABLES} <= set(zf.namelist())


def test_a_big_workspace_is_exported_in_index_range_batches_each_message_once(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    """Messages travel in keyset batches on (created_at, id). Each batch is an index range SEARCH
    for the workspace (SQLite's EXPLAIN QUERY PLAN), sorting at most the ties of one created_at,
    never a scan or a sort of the whole workspace: a batch costs the same at row 0 and at row
    1,000,000. Messages sharing a created_at straddle batch boundaries and each travels once."""
    services = make_services("sqlite")
    ws_id = populate(services)
    populate(services, slug="other")  # rows of another workspace that no batch may return
    table = AgentMessage.__table__
    with services.db.engine.begin() as conn:
        agents = SQLModel.metadata.tables["agent_instances"]
        agent_id = conn.execute(
            sa.select(agents.c.id).where(agents.c.workspace_id == ws_id, agents.c.name == "Helper")
        ).scalar_one()
        start = datetime(2026, 1, 1, tzinfo=UTC)
        conn.execute(
            table.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws_id,
                    "agent_id": agent_id,
                    "seq": 100 + i,
                    "sender": "agent",
                    "role": "assistant",
                    "content": f"bulk {i}",
                    "created_at": start + timedelta(seconds=i // 7),  # seven messages a second
                    "updated_at": start,
                }
                for i in range(2_500)
            ],
        )
        expected = set(conn.execute(sa.select(table.c.id).where(table.c.workspace_id == ws_id)).scalars())
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if "FROM agent_messages" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sa.event.listen(services.db.engine, "before_cursor_execute", capture)
    try:
        services.bundles.export_to(ws_id, tmp_path / "big.agentdeck")
    finally:
        sa.event.remove(services.db.engine, "before_cursor_execute", capture)

    exported = read_bundle(tmp_path / "big.agentdeck")["tables"]["agent_messages"]
    assert {uuid.UUID(i) for i in exported} == expected
    assert len(statements) == 3  # 2,531 messages, 1,000 a batch
    with services.db.engine.connect() as conn:
        for n, (statement, parameters) in enumerate(statements):
            plan = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            search = [line for line in plan if line.startswith("SEARCH agent_messages USING")]
            assert len(search) == 1 and "workspace_id=?" in search[0], plan
            if n:  # after the first batch, the keyset is a range in the index, not a filter
                assert "created_at>" in search[0], plan
            assert not any(line.startswith("SCAN agent_messages") for line in plan), plan
            assert all("RIGHT PART OF ORDER BY" in line for line in plan if "TEMP B-TREE" in line), plan


def test_command_line_export_and_import(make_services: Callable[[str], Services], tmp_path: Path, capsys: Any) -> None:
    import main

    services = make_services("sqlite")
    populate(services)
    common = ["--data-dir", str(services.settings.data_dir), "--database-url", services.settings.resolved_database_url]
    bundle = tmp_path / "cli.agentdeck"
    assert main.main(["export", "--workspace", "acme", "--output", str(bundle), *common]) == 0
    assert "exported workspace acme" in capsys.readouterr().out
    assert main.main(["import", str(bundle), *common]) == 1
    assert "--as NEW_SLUG" in capsys.readouterr().err
    assert main.main(["import", str(bundle), "--as", "acme-2", *common]) == 0
    assert "imported workspace acme-2" in capsys.readouterr().out
    assert services.workspaces.get_by_slug("acme-2").name == "Acme Inc."


def test_nul_characters_and_nan_are_refused_before_writing(
    make_services: Callable[[str], Services], tmp_path: Path
) -> None:
    source = make_services("sqlite")
    ws_id = populate(source)
    good = tmp_path / "good.agentdeck"
    source.bundles.export_to(ws_id, good)

    def poison(text: str) -> Callable[[str, bytes], bytes]:
        def change(name: str, data: bytes) -> bytes:
            if name != "agent_messages.jsonl":
                return data
            lines = data.decode().splitlines()
            lines[2] = lines[2].replace('"cost":', f'"cost":{text},"x":', 1) if text == "NaN" else lines[2]
            if text != "NaN":
                row = json.loads(lines[2])
                row["content"] = text
                lines[2] = json.dumps(row)
            return ("\n".join(lines) + "\n").encode()

        return change

    target = make_services("sqlite")
    before = row_counts(target)
    with pytest.raises(BundleError, match="NUL"):
        target.bundles.import_file(rewrite(good, tmp_path / "nul.agentdeck", poison("a\x00b"), {}))
    with pytest.raises(BundleError, match="NaN is not a JSON number"):
        target.bundles.import_file(rewrite(good, tmp_path / "nan.agentdeck", poison("NaN"), {}))
    # A backslash followed by "u0000" as plain text is not a NUL and goes in.
    target.bundles.import_file(rewrite(good, tmp_path / "ok.agentdeck", poison("path\\u0000name"), {}))
    assert row_counts(target)["agent_messages"] == before["agent_messages"] + 31
