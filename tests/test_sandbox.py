"""Generated code runs in a real bubblewrap sandbox (issue 12, point 1).

The probe is what an attacker's LLM would write as the QA engineer's "tests": it runs through the
real runtime path (a full SOP team run, MetaGPT's QaEngineer, the loopback LLM server choosing the
code) and looks for the server's environment, its data dir (database, secret.key), the network
(the LLM server itself on 127.0.0.1) and a place to write outside the run folder. It prints what
it found; the test reads that back from the run's test output and asserts it found nothing.
"""

from __future__ import annotations

import json
import re
import sys
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
from core.runtime.sandbox import MODE_BWRAP, bwrap_path, check_requirement, filter_requirements
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from tests.llm_server import LlmServer, default_responder

pytestmark = pytest.mark.slow

SOP = [
    ("product-manager", "Alice"),
    ("architect", "Bob"),
    ("project-manager", "Eve"),
    ("engineer", "Alex"),
    ("qa-engineer", "Edward"),
]

PROBE = r"""
import json, os, socket, pathlib
found = {}
ours = {"PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PWD",
        "SHLVL", "_", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT", "PIP_CONFIG_FILE", "PIP_DEFAULT_TIMEOUT"}
found["env"] = sorted(k for k in os.environ if k not in ours)
data_dir = pathlib.Path(DATA_DIR)
found["data_dir"] = []
for name in ("agentdeck.db", "secret.key", "storage_secret"):
    try:
        found["data_dir"].append(name + ":" + (data_dir / name).read_text()[:20])
    except Exception:
        pass
try:
    found["data_dir_listing"] = os.listdir(data_dir)
except Exception:
    found["data_dir_listing"] = []
try:
    found["home"] = os.listdir(os.path.expanduser("~root"))
except Exception:
    found["home"] = None
found["net"] = []
for host, port in (("127.0.0.1", LLM_PORT), ("1.1.1.1", 53)):
    try:
        socket.create_connection((host, port), timeout=3).close()
        found["net"].append(f"{host}:{port}")
    except Exception:
        pass
found["wrote"] = []
for target in (OUTSIDE, str(data_dir / "pwned.txt")):
    try:
        pathlib.Path(target).write_text("pwned")
        found["wrote"].append(target)
    except Exception:
        pass
print("PROBE" + json.dumps(found) + "PROBE")
"""


def probe_code(data_dir: Path, llm_port: int, outside: Path) -> str:
    return f"DATA_DIR = {str(data_dir)!r}\nLLM_PORT = {llm_port}\nOUTSIDE = {str(outside)!r}\n" + PROBE


def responder_with_probe(code: str, requirements: list[str] | None = None) -> Any:
    """The loopback server's answers, with the QA engineer's tests replaced by the probe (and the
    task list's packages by `requirements`)."""

    def respond(body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        text = "\n".join(str(m.get("content", "")) for m in messages)
        if "QA engineer" in text and "Write test code" in text:
            return f"```python\n{code}\n```"
        answer = default_responder(body)
        if requirements is not None:
            answer = re.sub(
                r'"Required packages":\s*\[[^\]]*\]', f'"Required packages": {json.dumps(requirements)}', answer
            )
        return answer

    return respond


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"llm_timeout": 10, "run_time_limit": 300}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def sop_run(rt: Services, server: LlmServer) -> uuid.UUID:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"probe-{uuid.uuid4().hex[:6]}"))
    rt.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": True}))
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


def probe_results(rt: Services, run_id: uuid.UUID) -> list[dict[str, Any]]:
    results = []
    for name in rt.runtime.run_files(run_id):
        if "test_outputs" in name:
            output = json.loads(rt.runtime.read_run_file(run_id, name))
            match = re.search(r"PROBE(.*?)PROBE", output.get("stdout", ""), re.DOTALL)
            assert match, output
            results.append(json.loads(match.group(1)))
    return results


def test_bubblewrap_is_available_here() -> None:
    # CI installs Debian's `bubblewrap`; without it the probe below would prove nothing.
    assert bwrap_path() is not None


def test_generated_code_finds_no_env_data_network_or_outside_writes(
    rt: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTDECK_PROBE_CANARY", "server-secret")
    outside = tmp_path / "outside" / "pwned.txt"
    outside.parent.mkdir()
    with LlmServer() as server:
        server.responder = responder_with_probe(probe_code(rt.settings.data_dir, server.port, outside))
        run_id = sop_run(rt, server)

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    assert run.sandbox == MODE_BWRAP
    assert (rt.settings.data_dir / "secret.key").exists(), "the probe had something to look for"
    results = probe_results(rt, run_id)
    assert results, "the probe must have run"
    for found in results:
        assert found["env"] == [], found
        assert found["data_dir"] == [], found
        # Only the empty folders leading to the run's own folder exist in the sandbox.
        assert set(found["data_dir_listing"]) <= {"runs"}, found
        assert found["home"] is None, found
        assert found["net"] == [], found
        # Whatever it wrote outside went to the sandbox's private /tmp, not to the host.
        assert all(not Path(p).exists() for p in found["wrote"]), found
    assert not outside.exists()
    assert not (rt.settings.data_dir / "pwned.txt").exists()


def test_requirement_lines_other_than_index_packages_are_refused_and_recorded(rt: Services) -> None:
    bad = ["https://evil.example/x.whl", "../../etc", "-e .", "--index-url http://evil.example/simple"]
    with LlmServer() as server:
        server.responder = responder_with_probe("print('PROBE{}PROBE')", requirements=bad)
        run_id = sop_run(rt, server)
    assert rt.runs.get(run_id).status == "completed"
    events = _run_events(rt, run_id)
    refused: list[str] = []
    for event in events:
        if event.data.get("activity") == "sandbox" and event.data.get("sandbox") == "requirements refused":
            refused += event.data["refused"]
    assert refused, events
    for line in bad:
        assert any(line.split()[0] in r for r in refused), (line, refused)


def _run_events(rt: Services, run_id: uuid.UUID) -> list[Any]:
    run = rt.runs.get(run_id)
    return rt.bus.read(EventFilter(workspace_id=run.workspace_id, run_id=run_id), since=0, limit=1000)


@pytest.mark.parametrize(
    "line",
    [
        "https://evil.example/pkg.whl",
        "pkg @ https://evil.example/pkg.whl",
        "/tmp/pkg.whl",
        "./pkg",
        "-e git+https://evil.example/x",
        "--index-url http://evil.example/simple",
        "--extra-index-url=http://evil.example/simple",
        "-r other.txt",
        "pkg; os_name == 'posix'",
    ],
)
def test_check_requirement_refuses(line: str) -> None:
    with pytest.raises(ValueError):
        check_requirement(line)


def test_check_requirement_allows_plain_specifiers() -> None:
    allowed, refused = filter_requirements("requests==2.31.0\n# comment\n\nrich>=13,<14\nfoo[bar]~=1.0\n")
    assert allowed == ["requests==2.31.0", "rich<14,>=13", "foo[bar]~=1.0"]
    assert refused == []


def test_python_is_this_interpreter() -> None:
    assert sys.version_info[:2] == (3, 11)
