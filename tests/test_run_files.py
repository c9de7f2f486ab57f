"""MetaGPT's file writes stay inside the run's folder (issue 12, point 2), execution on or off.

The LLM names the files (task list, project name). A name with `..`, an absolute name, or a path
through a symlink out of the folder is refused and recorded, and nothing is written outside.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.events import EventFilter
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services, build_services
from tests.llm_server import LlmServer, default_responder

SOP = [
    ("product-manager", "Alice"),
    ("architect", "Bob"),
    ("project-manager", "Eve"),
    ("engineer", "Alex"),
]


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"llm_timeout": 10, "run_time_limit": 300}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def test_inside_refuses_absolute_dotdot_and_symlinks(rt: Services, tmp_path: Path) -> None:
    # rt: MetaGPT is configured before its first import.
    from core.runtime.confine import UnsafePath, inside

    root = (tmp_path / "run").resolve()
    (root / "proj").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "proj" / "link").symlink_to(outside)
    (root / "proj" / "file.py").symlink_to(outside / "x.py")
    assert inside(root, root / "proj", "src/main.py") == root / "proj" / "src" / "main.py"
    for bad in ["/etc/passwd", "../../x.py", "a/../../b", "link/x.py", "file.py", "", "~/x", "a\x00b"]:
        with pytest.raises(UnsafePath):
            inside(root, root / "proj", bad)
    with pytest.raises(UnsafePath):
        inside(root, outside, "x.py")


def test_metagpt_writes_through_a_symlink_or_rename_out_are_refused(rt: Services, tmp_path: Path) -> None:
    from metagpt.utils.git_repository import GitRepository

    from core.runtime import confine as files

    root = tmp_path / "run" / "workspace"
    outside = tmp_path / "outside"
    outside.mkdir()
    refused: list[dict[str, Any]] = []

    async def scenario() -> None:
        files.confine(root, refused.append)
        repo = GitRepository(local_path=root / "proj", auto_init=True)
        srcs = repo.new_file_repository("src")
        await srcs.save("ok.py", "print('fine')")
        (srcs.workdir / "evil").symlink_to(outside)
        for name in ["evil/pwned.py", "../../../../pwned.py", str(outside / "abs.py")]:
            with pytest.raises(files.UnsafePath):
                await srcs.save(name, "pwned")
        for name in ["../../escaped", "a/b"]:
            with pytest.raises(files.UnsafePath):
                repo.rename_root(name)
        repo.rename_root("renamed")  # a plain name is fine

    asyncio.run(scenario())
    assert (root / "renamed" / "src" / "ok.py").exists()
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "pwned.py").exists() and not (tmp_path / "escaped").exists()
    assert len(refused) == 5 and all(r["activity"] == "file refused" for r in refused)


@pytest.mark.slow
def test_a_run_whose_task_list_names_files_outside_writes_nothing_there(rt: Services, tmp_path: Path) -> None:
    escape = tmp_path / "escaped_abs.py"
    names = ["../../../../../escaped_rel.py", str(escape)]

    def respond(body: dict[str, Any]) -> str:
        text = default_responder(body)
        return re.sub(r'"Task list":\s*\[[^\]]*\]', f'"Task list": {json.dumps(names)}', text)

    with LlmServer(responder=respond) as server:
        ws = rt.workspaces.create(WorkspaceCreate(slug=f"files-{uuid.uuid4().hex[:6]}"))  # execution off
        rt.llm_profiles.create(
            ws.id,
            LlmProfileCreate(name="lb", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="k"),
        )
        agents = [rt.agents.create(AgentCreate(workspace_id=ws.id, definition=d, name=n)).id for d, n in SOP]
        run = rt.runtime.start_run(RunCreate(workspace_id=ws.id, agent_ids=agents, idea="a CLI todo app", n_rounds=8))
        assert rt.runtime.wait_for_run(run.id, 280)

    finished = rt.runs.get(run.id)
    assert finished.sandbox == "off"
    assert finished.status == "failed" and "refused" in finished.error, finished.error
    assert not escape.exists()
    assert not list(tmp_path.rglob("escaped_rel.py"))
    assert not list(Path("/").glob("escaped_rel.py"))
    events = rt.bus.read(EventFilter(workspace_id=ws.id, run_id=run.id), since=0, limit=1000)
    assert [e for e in events if e.data.get("activity") == "file refused"]
