"""The offline demo model, alone and as the LLM of MetaGPT's five SOP roles."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

IDEA = "a CLI todo app"


@pytest.fixture
def demo(metagpt_root: Path) -> ModuleType:
    import core.runtime.demo_llm as demo_llm

    return demo_llm


@pytest.fixture
def stream_log(metagpt_root: Path) -> Iterator[list[str]]:
    import metagpt.logs as mlogs

    pieces: list[str] = []
    original = mlogs._llm_stream_log
    mlogs.set_llm_stream_logfunc(pieces.append)
    yield pieces
    mlogs.set_llm_stream_logfunc(original)


@pytest.fixture
def contained_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `python` first on PATH that refuses pip and records every call.

    QaEngineer's RunCode runs `python -m pip install ...` with the first python on PATH; the
    shim keeps that from touching any real environment while still running the generated code.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "python-calls.txt"
    shim = bin_dir / "python"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "pip is disabled in tests"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return calls


@pytest.mark.asyncio
async def test_aask_is_deterministic_and_costs_nothing(demo: ModuleType, stream_log: list[str]) -> None:
    from metagpt.utils.cost_manager import CostManager

    llm = demo.DemoLLM()
    llm.cost_manager = CostManager()
    first = await llm.aask("What is the capital of France?", stream=False)
    second = await llm.aask("What is the capital of France?", stream=False)

    assert first == second
    assert first.startswith(f"({demo.DEMO_MODEL_LABEL})")
    assert "What is the capital of France?" in first
    prompt = f"{llm.system_prompt}\nWhat is the capital of France?"
    costs = llm.cost_manager.get_costs()
    assert costs.total_prompt_tokens == 2 * demo.count_tokens(prompt)
    assert costs.total_completion_tokens == 2 * demo.count_tokens(first)
    assert costs.total_cost == 0

    streamed = await llm.aask("What is the capital of France?")  # config.stream is on by default
    assert streamed == first
    assert "".join(stream_log) == first + "\n"
    assert len(stream_log) > 5
    assert llm.cost_manager.get_costs().total_completion_tokens == 3 * demo.count_tokens(first)


@pytest.mark.asyncio
async def test_demo_model_is_priced_at_zero(demo: ModuleType) -> None:
    from metagpt.context import Context

    ctx = Context()
    llm = demo.DemoLLM()
    llm.cost_manager = ctx.cost_manager
    await llm.aask("hello", stream=False)
    assert ctx.cost_manager.token_costs[demo.DEMO_MODEL_NAME] == {"prompt": 0.0, "completion": 0.0}
    assert ctx.cost_manager.total_prompt_tokens > 0
    assert ctx.cost_manager.total_cost == 0


@pytest.mark.asyncio
async def test_prd_node_is_about_the_idea(demo: ModuleType) -> None:
    from metagpt.actions.write_prd import CONTEXT_TEMPLATE
    from metagpt.actions.write_prd_an import WRITE_PRD_NODE

    context = CONTEXT_TEMPLATE.format(requirements=IDEA, project_name="")
    node = await WRITE_PRD_NODE.fill(context=context, llm=demo.DemoLLM())
    prd: dict[str, Any] = node.instruct_content.model_dump()

    assert prd["Original Requirements"] == IDEA
    assert prd["Project Name"] == "cli_todo_app"
    assert any(IDEA in goal for goal in prd["Product Goals"])
    assert IDEA in prd["Requirement Analysis"]
    assert prd["Language"] == "en_us"  # keys the demo does not know keep their example value


@pytest.mark.asyncio
async def test_code_prompts_get_valid_python(demo: ModuleType) -> None:
    from metagpt.actions.write_code import PROMPT_TEMPLATE
    from metagpt.utils.common import CodeParser

    prompt = PROMPT_TEMPLATE.format(
        design='{"Original Requirements": "a CLI todo app"}',
        task="{}",
        code="",
        logs="",
        summary_log="",
        feedback="",
        filename="app.py",
    )
    answer = await demo.DemoLLM().aask(prompt, stream=False)
    code = CodeParser.parse_code(block="", text=answer)
    compile(code, "app.py", "exec")
    assert "class App" in code and IDEA in code


def check_generated_project(project: Path, python_calls: Path) -> None:
    """The project is named after the idea, lives under the temp METAGPT_ROOT and compiles."""
    sources = sorted((project / project.name).glob("*.py"))
    assert [p.name for p in sources] == ["app.py", "main.py"]
    for path in sources:
        compile(path.read_text(), str(path), "exec")
        assert IDEA in path.read_text()
    # No "Required packages": RunCode has nothing to pip-install from requirements.txt.
    assert (project / "requirements.txt").read_text().strip() == ""
    # RunCode went through the shim, so its `pip install pytest` never ran for real.
    calls = python_calls.read_text().splitlines()
    assert any(c.startswith("-m pip install pytest") for c in calls)
    assert any(c.startswith("tests/test_app.py") for c in calls)


@pytest.mark.asyncio
async def test_sop_team_runs_on_the_demo_model(
    demo: ModuleType, metagpt_root: Path, contained_python: Path, stream_log: list[str]
) -> None:
    from metagpt.context import Context
    from metagpt.environment import Environment
    from metagpt.roles import Architect, Engineer, ProductManager, ProjectManager, QaEngineer
    from metagpt.schema import Message
    from metagpt.team import Team
    from pydantic import Field

    class RecordingEnvironment(Environment):
        published: list[Message] = Field(default_factory=list, exclude=True)

        def publish_message(self, message: Message, peekable: bool = True) -> bool:
            self.published.append(message)
            return super().publish_message(message, peekable=peekable)

    ctx = Context()
    roles = [
        cls(context=ctx, llm=demo.DemoLLM())
        for cls in (ProductManager, Architect, ProjectManager, Engineer, QaEngineer)
    ]
    env = RecordingEnvironment(context=ctx)
    team = Team(env=env, context=ctx)
    team.hire(roles)
    team.invest(1.0)
    team.run_project(IDEA)
    rounds = 0
    while not team.env.is_idle and rounds < 20:
        team._check_balance()
        await team.env.run()
        rounds += 1

    assert team.env.is_idle, f"still busy after {rounds} rounds"
    causes = [m.cause_by.rsplit(".", 1)[-1] for m in env.published]
    for action in ("UserRequirement", "WritePRD", "WriteDesign", "WriteTasks", "WriteCode", "WriteTest", "RunCode"):
        assert action in causes, causes
    # Every document is about the idea, not about the format examples' 2048 game.
    for action in ("WritePRD", "WriteDesign", "WriteTasks"):
        document = next(m for m in env.published if m.cause_by.endswith(action))
        assert IDEA in document.content, action
        assert "2048" not in document.content, action

    check_generated_project(metagpt_root / "workspace" / "cli_todo_app", contained_python)

    costs = ctx.cost_manager.get_costs()
    assert costs.total_prompt_tokens > 0 and costs.total_completion_tokens > 0
    assert costs.total_cost == 0
    assert stream_log  # the roles streamed through MetaGPT's hook


@pytest.mark.asyncio
async def test_sop_control_questions_let_the_run_finish(demo: ModuleType) -> None:
    from metagpt.actions.run_code import PROMPT_TEMPLATE as RUN_CODE_PROMPT
    from metagpt.roles.engineer import IS_PASS_PROMPT
    from metagpt.utils.common import parse_recipient

    llm = demo.DemoLLM()
    assert "YES" in await llm.aask(IS_PASS_PROMPT.format(context="## Summary\nall good"), stream=False)
    run_summary = await llm.aask(RUN_CODE_PROMPT.format(context="## Running Output\nOK"), stream=False)
    assert parse_recipient(run_summary) == "NoOne"
    assert "## Status:\nPASS" in run_summary
