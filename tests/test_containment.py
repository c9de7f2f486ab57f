"""Generated code stays contained (SPEC §9, issue: a team run once installed LLM-chosen packages
into the host's Python). A full SOP run whose task list names a package — a wheel built by the
test and served by a package index on 127.0.0.1 (the operator's AGENTDECK_PIP_INDEX_URL), so no
outside network is needed — must install that package into the run's own virtual environment
only; with code execution off nothing is executed or installed at all."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from tests.llm_server import LlmServer, default_responder

pytestmark = pytest.mark.slow

CANARY = "agentdeck_canary"
SOP = [
    ("product-manager", "Alice"),
    ("architect", "Bob"),
    ("project-manager", "Eve"),
    ("engineer", "Alex"),
    ("qa-engineer", "Edward"),
]


def build_canary_wheel(directory: Path) -> Path:
    """A minimal, valid pure-Python wheel (PEP 427) for a package nobody else has."""
    name, version = CANARY, "0.1.0"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": b'MARKER = "contained"\n',
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: agentdeck-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def requiring(requirement: str) -> Any:
    """The test server's default answers, with the task list's packages replaced."""

    def respond(body: dict[str, Any]) -> str:
        text = default_responder(body)
        return re.sub(r'"Required packages":\s*\[[^\]]*\]', f'"Required packages": [{json.dumps(requirement)}]', text)

    return respond


@contextlib.contextmanager
def package_index(wheel: Path) -> Iterator[str]:
    """A PEP 503 "simple" index on 127.0.0.1 holding the wheel."""
    root = wheel.parent / "index"
    project = root / "simple" / CANARY.replace("_", "-")
    project.mkdir(parents=True)
    shutil.copy(wheel, project / wheel.name)
    (project / "index.html").write_text(f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    wheel = build_canary_wheel(tmp_path)
    with package_index(wheel) as url:
        yield wheel, url


@pytest.fixture
def rt(settings: Settings, index: tuple[Path, str]) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(
        settings.model_copy(update={"llm_timeout": 10, "run_time_limit": 300, "pip_index_url": index[1]})
    )
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def _sop_run(rt: Services, server: LlmServer, code_execution: bool) -> uuid.UUID:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"box-{uuid.uuid4().hex[:6]}"))
    rt.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": code_execution}))
    rt.llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name="loopback", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="sk-x"
        ),
    )
    agents = [rt.agents.create(AgentCreate(workspace_id=ws.id, definition=slug, name=name)).id for slug, name in SOP]
    run = rt.runtime.start_run(RunCreate(workspace_id=ws.id, agent_ids=agents, idea="a CLI todo app", n_rounds=10))
    assert rt.runtime.wait_for_run(run.id, 280)
    return run.id


def _imports(python: str | Path) -> bool:
    probe = subprocess.run([str(python), "-c", f"import {CANARY}"], capture_output=True, timeout=60)
    return probe.returncode == 0


def test_generated_requirements_install_only_into_the_runs_own_environment(rt: Services) -> None:
    with LlmServer(responder=requiring(f"{CANARY}==0.1.0")) as server:
        run_id = _sop_run(rt, server, code_execution=True)

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    requirements = [f for f in rt.runtime.run_files(run_id) if f.endswith("requirements.txt")]
    assert requirements and CANARY in rt.runtime.read_run_file(run_id, requirements[0])

    venv_python = rt.runtime.run_dir(run_id) / "venv" / "bin" / "python"
    assert venv_python.exists()
    assert _imports(venv_python), "the run's own environment should have the package the LLM asked for"
    assert not _imports(sys.executable), "the app's environment must not get it"
    assert not _imports(getattr(sys, "_base_executable", sys.executable)), "nor the system Python"
    # The generated tests really ran, inside the sandbox.
    outputs = [f for f in rt.runtime.run_files(run_id) if "test_outputs" in f]
    assert outputs, rt.runtime.run_files(run_id)


def test_with_code_execution_off_nothing_is_executed_or_installed(rt: Services) -> None:
    with LlmServer(responder=requiring(f"{CANARY}==0.1.0")) as server:
        run_id = _sop_run(rt, server, code_execution=False)

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    assert not (rt.runtime.run_dir(run_id) / "venv").exists()
    assert not _imports(sys.executable)
    files = rt.runtime.run_files(run_id)
    assert not [f for f in files if "test_outputs" in f], "nothing may have been run"
    assert any("/tests/" in f for f in files), "the QA engineer still writes its tests"
    notes = [m.content for m in rt.messages.list_run(run_id, limit=500).items if m.cause_by == "RunCode"]
    assert notes and all("Code execution is turned off" in n for n in notes)
