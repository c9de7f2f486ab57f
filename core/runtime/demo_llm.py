"""The offline demo model: lets a new user run a MetaGPT team with no key and no network.

``DemoLLM`` is a MetaGPT ``BaseLLM`` that answers deterministically in the shapes MetaGPT's
actions parse: ActionNode prompts get their own format example back with the idea's words
put into it, code-writing prompts get a small valid python program, MetaGPT's yes/no and
routing questions get the answer that lets the SOP finish, and anything else gets a short
answer that says it comes from the demo model. Token usage is counted locally and reported
through MetaGPT's cost manager at a price of 0; streaming goes through ``log_llm_stream``.

Give it to a role as ``Role(..., context=ctx, llm=DemoLLM())``: ``LLMType`` is a closed enum,
so the demo model cannot be chosen through an ``api_type`` in a config.

Importing this module imports metagpt, so ``METAGPT_PROJECT_ROOT`` must be set first.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

from metagpt.configs.llm_config import LLMConfig, LLMType
from metagpt.const import USE_CONFIG_TIMEOUT
from metagpt.logs import log_llm_stream
from metagpt.provider.base_llm import BaseLLM
from metagpt.utils.cost_manager import CostManager
from metagpt.utils.token_counter import TOKEN_COSTS

from core.runtime_labels import DEMO_MODEL_LABEL  # shared with pages, which must not import metagpt

DEMO_MODEL_NAME = "agentdeck-demo"
DEMO_PREFIX = f"({DEMO_MODEL_LABEL})"
DEMO_PRICE: dict[str, float] = {"prompt": 0.0, "completion": 0.0}

# Module the demo project's logic lives in; main.py imports it.
_CORE_MODULE = "app"
_FALLBACK_IDEA = "the requested product"
# Filler words left out of project names derived from the idea.
# fmt: off
_STOPWORDS = frozenset(
    (
        "a", "an", "the", "and", "or", "of", "for", "to", "with", "in", "on", "at", "by", "from", "into", "that",
        "this", "which", "who", "using", "use", "make", "build", "create", "write", "develop", "implement",
        "simple", "small", "basic", "new", "my", "our", "your", "please", "i", "we", "want", "need", "should",
        "can",
    )
)
# fmt: on
_FORMAT_EXAMPLE = "## format example"
_CONTENT_BLOCK = re.compile(r"\[CONTENT\](.*?)\[/CONTENT\]", re.DOTALL)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_STREAM_PIECE = re.compile(r"\s*\S+\s*|\s+")


def count_tokens(text: str) -> int:
    """A local token estimate (words and punctuation marks), close enough to BPE for accounting.

    tiktoken would download its encodings from the internet, which the demo must never need.
    """
    return len(_TOKEN.findall(text))


def messages_text(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(parts)


def register_demo_price(cost_manager: CostManager | None = None) -> None:
    """Price the demo model at 0 so MetaGPT counts its tokens without "model not found" warnings.

    CostManager copies TOKEN_COSTS when it is created, so managers made before this module was
    imported need the price added to their own table as well.
    """
    TOKEN_COSTS.setdefault(DEMO_MODEL_NAME, dict(DEMO_PRICE))
    if cost_manager is not None and DEMO_MODEL_NAME not in cost_manager.token_costs:
        cost_manager.token_costs[DEMO_MODEL_NAME] = dict(DEMO_PRICE)


register_demo_price()


def demo_llm_config() -> LLMConfig:
    """An LLMConfig describing the demo model; nothing in it is ever dialled."""
    return LLMConfig(
        api_type=LLMType.OPENAI,
        model=DEMO_MODEL_NAME,
        pricing_plan=DEMO_MODEL_NAME,
        api_key="agentdeck-demo-no-key",
        base_url="http://demo-model.invalid/v1",
    )


# ---------------------------------------------------------------------------------------------
# Understanding the prompt


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def extract_idea(prompt: str) -> str | None:
    """The user's requirement as MetaGPT's prompts carry it (PRD context, JSON docs, markdown)."""
    for pattern in (
        r"### (?:Original|New) Requirements\s*\n(.+?)(?:\n###|\Z)",
        r"## Original Requirements\s*\n(.+?)(?:\n##|\Z)",
    ):
        match = re.search(pattern, prompt, re.DOTALL)
        if match and match.group(1).strip() and match.group(1).strip() != "-":
            return _one_line(match.group(1))
    match = re.search(r'"Original Requirements"\s*:\s*("(?:[^"\\]|\\.)*")', prompt)
    if match:
        try:
            value = json.loads(match.group(1))
        except ValueError:
            value = ""
        if isinstance(value, str) and value.strip():
            return _one_line(value)
    # Later SOP steps only see the demo's own design, tasks and code: recognise its phrasing there.
    for pattern in (
        r"We will implement (.+?) in plain Python with the standard library only",
        r"Contains class App, the core logic of (.+?)\"",
        r'"""(.+?): the core logic \(written offline',
        r'"""Entry point of (.+?) \(written offline',
    ):
        match = re.search(pattern, prompt)
        if match and match.group(1).strip():
            return _one_line(match.group(1))
    return None


def project_slug(idea: str) -> str:
    """A python-identifier project name from the idea, e.g. "a CLI todo app" -> "cli_todo_app"."""
    words = [w for w in re.findall(r"[a-z0-9]+", idea.lower()) if w not in _STOPWORDS]
    slug = "_".join(words[:4]) or "demo_project"
    return f"project_{slug}" if slug[0].isdigit() else slug


def extract_project_name(context: str) -> str | None:
    match = re.search(r'"Project [Nn]ame"\s*:\s*"([A-Za-z_][A-Za-z0-9_]*)"', context)
    if match:
        return match.group(1)
    match = re.search(r"### Project Name\s*\n\s*([A-Za-z_][A-Za-z0-9_]*)\s*\n", context)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------
# Answers


def _safe(text: str) -> str:
    # The idea lands inside generated python strings and docstrings.
    return text.replace("\\", "/").replace('"', "'")


def _quadrant_chart(name: str) -> str:
    return (
        "quadrantChart\n"
        f'    title "Reach and simplicity of {name} alternatives"\n'
        '    x-axis "Low Reach" --> "High Reach"\n'
        '    y-axis "Low Simplicity" --> "High Simplicity"\n'
        '    quadrant-1 "We should expand"\n'
        '    quadrant-2 "Need to promote"\n'
        '    quadrant-3 "Re-evaluate"\n'
        '    quadrant-4 "May be improved"\n'
        '    "Existing tool A": [0.3, 0.6]\n'
        '    "Existing tool B": [0.45, 0.23]\n'
        '    "Existing tool C": [0.7, 0.4]\n'
        f'    "Our {name}": [0.5, 0.7]'
    )


_CLASS_DIAGRAM = """classDiagram
    class App {
        +str name
        +list items
        +__init__(name: str)
        +add(item: str) None
        +run() str
    }
    class Main {
        +main() None
    }
    Main --> App"""

_CALL_FLOW = """sequenceDiagram
    participant M as Main
    participant A as App
    M->>A: App()
    M->>A: run()
    A-->>M: summary text"""


def _field_values(idea: str, name: str) -> dict[str, Callable[[], Any]]:
    """Values for the ActionNode keys of MetaGPT's SOP documents (PRD, design, tasks)."""
    files = [f"{_CORE_MODULE}.py", "main.py"]
    logic = [
        [f"{_CORE_MODULE}.py", f"Contains class App, the core logic of {idea}"],
        ["main.py", f"Entry point: imports App from {_CORE_MODULE}.py and runs it"],
    ]
    pool = [["P0", f"The core logic of {idea}"], ["P1", "A command line entry point that runs it"]]
    unclear = f"Nothing is unclear to the {DEMO_MODEL_LABEL}; a real model would ask questions here."
    approach = (
        f"We will implement {idea} in plain Python with the standard library only: "
        f"a class App in {_CORE_MODULE}.py holds the logic and main.py runs it. "
        f"(Written offline by the {DEMO_MODEL_LABEL}.)"
    )
    return {
        "Original Requirements": lambda: idea,
        "Refined Requirements": lambda: idea,
        "Project Name": lambda: name,
        "Project name": lambda: name,
        "Product Goals": lambda: [
            f"Deliver {idea} with its core features working",
            "Keep it simple to install, run and understand",
            "Make its behaviour easy to verify with tests",
        ],
        "User Stories": lambda: [
            f"As a user, I want {idea} so that I can get my task done quickly",
            "As a user, I want clear feedback after every action",
            "As a maintainer, I want small modules that are easy to change",
        ],
        "Competitive Analysis": lambda: [
            f"Existing tool A: does what {idea} does, but with far more features than needed",
            "Existing tool B: simple, but no longer maintained",
            "Existing tool C: polished, but paid",
        ],
        "Competitive Quadrant Chart": lambda: _quadrant_chart(name),
        "Requirement Analysis": lambda: (
            f"The product is {idea}. It needs a small, testable core and a thin entry point; "
            "nothing in it needs a network service or third-party package."
        ),
        "Refined Requirement Analysis": lambda: [f"The product is {idea}", "Keep the core small and testable"],
        "Requirement Pool": lambda: pool,
        "Refined Requirement Pool": lambda: pool,
        "UI Design draft": lambda: f"A minimal, text-first interface for {idea} with one clear action per screen.",
        "Anything UNCLEAR": lambda: unclear,
        "issue_type": lambda: "REQUIREMENT",
        "is_relative": lambda: "NO",
        "reason": lambda: f"{DEMO_PREFIX} The request is a new requirement.",
        "Implementation approach": lambda: approach,
        "Refined Implementation Approach": lambda: approach,
        "File list": lambda: files,
        "Refined File list": lambda: files,
        "Data structures and interfaces": lambda: _CLASS_DIAGRAM,
        "Refined Data structures and interfaces": lambda: _CLASS_DIAGRAM,
        "Program call flow": lambda: _CALL_FLOW,
        "Refined Program call flow": lambda: _CALL_FLOW,
        # An empty list keeps RunCode from pip-installing the example's flask and bcrypt.
        "Required packages": lambda: [],
        "Required Other language third-party packages": lambda: ["No third-party dependencies required"],
        "Logic Analysis": lambda: logic,
        "Refined Logic Analysis": lambda: logic,
        "Task list": lambda: files,
        "Refined Task list": lambda: files,
        "Full API spec": lambda: "",
        "Shared Knowledge": lambda: f"`{_CORE_MODULE}.py` holds the logic that main.py and the tests share.",
        "Refined Shared Knowledge": lambda: f"`{_CORE_MODULE}.py` holds the logic that main.py and the tests share.",
    }


def fill_format_example(block: str, idea: str, name: str) -> str:
    """The ``[CONTENT]`` example with the idea's words in it; unknown keys keep their example value."""
    try:
        data = json.loads(block)
    except ValueError:
        return f"[CONTENT]{block}[/CONTENT]"
    if isinstance(data, dict):
        values = _field_values(idea, name)
        for key, old in list(data.items()):
            make = values.get(key)
            if make is None:
                continue
            new = make()
            # Only swap like for like so the node's declared type still validates.
            if isinstance(new, type(old)) or (isinstance(old, str) and isinstance(new, str)):
                data[key] = new
    return "[CONTENT]\n" + json.dumps(data, indent=4, ensure_ascii=False) + "\n[/CONTENT]"


def _core_module_code(idea: str, name: str) -> str:
    return f'''"""{_safe(idea)}: the core logic (written offline by the {DEMO_MODEL_LABEL})."""


class App:
    """Keeps the items of {name} and summarises them."""

    def __init__(self, name: str = "{name}") -> None:
        self.name = name
        self.items: list[str] = []

    def add(self, item: str) -> None:
        """Add one item; blank items are ignored."""
        if item.strip():
            self.items.append(item.strip())

    def run(self) -> str:
        """A one-line summary of the current state."""
        return f"{{self.name}}: {{len(self.items)}} item(s)"
'''


def _main_code(idea: str) -> str:
    return f'''"""Entry point of {_safe(idea)} (written offline by the {DEMO_MODEL_LABEL})."""

from {_CORE_MODULE} import App


def main() -> None:
    app = App()
    app.add("first item")
    print(app.run())


if __name__ == "__main__":
    main()
'''


def _generic_module_code(filename: str, idea: str) -> str:
    return f'''"""{filename}: part of {_safe(idea)} (written offline by the {DEMO_MODEL_LABEL})."""


def run() -> str:
    """Return a short description of what this module does."""
    return "{_safe(filename)} is ready"
'''


def code_for_file(filename: str, idea: str, name: str) -> str:
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if stem == f"{_CORE_MODULE}.py":
        return _core_module_code(idea, name)
    if stem == "main.py":
        return _main_code(idea)
    return _generic_module_code(stem, idea)


def _test_code(test_filename: str, source_path: str) -> str:
    module = source_path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py") or _CORE_MODULE
    return f'''"""Tests for {module} (written offline by the {DEMO_MODEL_LABEL})."""

import importlib
import unittest


class TestDemo(unittest.TestCase):
    def test_module_imports(self) -> None:
        try:
            module = importlib.import_module("{module}")
        except ImportError:
            self.skipTest("{module} is not on the import path")
        self.assertIsNotNone(module)


if __name__ == "__main__":
    unittest.main()
'''


def _fenced(code: str, heading: str = "") -> str:
    return f"{heading}```python\n{code.rstrip()}\n```\n"


def demo_answer(messages: list[dict[str, Any]]) -> str:
    """The demo model's whole brain: a pure function of the chat messages."""
    prompt = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            prompt = messages_text([message])
            break
    everything = messages_text(messages)
    idea = extract_idea(everything) or _FALLBACK_IDEA
    marker = prompt.rfind(_FORMAT_EXAMPLE)
    context = prompt[:marker] if marker >= 0 else prompt
    name = extract_project_name(context) or project_slug(idea)

    if marker >= 0:
        block = _CONTENT_BLOCK.search(prompt, marker)
        if block:
            return fill_format_example(block.group(1), idea, name)

    # WriteTest
    match = re.search(r"## (\S+?\.py): Write test code", prompt)
    if match:
        source = re.search(r"the code to test is at (\S+?),?\s", prompt)
        return _fenced(_test_code(match.group(1), source.group(1) if source else _CORE_MODULE))

    # WriteCodeReview (asks for LGTM/LBTM)
    if "## Code Review Result" in prompt and "LGTM" in prompt:
        return (
            f"## Code Review: {DEMO_PREFIX}\n1. The code follows the design; nothing to change.\n\n"
            "## Code Review Result\nLGTM\n"
        )

    # WriteCode
    match = re.search(r"## Code: (\S+?)\.?\s", prompt)
    if match and "```" in prompt:
        filename = match.group(1)
        return _fenced(code_for_file(filename, idea, name), f"## Code: {filename}\n")

    # DebugError: hand the legacy code back unchanged
    if "# Legacy Code" in prompt and "rewrite" in prompt:
        legacy = re.search(r"# Legacy Code\s*```python\n(.*?)```", prompt, re.DOTALL)
        return _fenced(legacy.group(1) if legacy else code_for_file("main.py", idea, name))

    # SummarizeCode
    if "## Code Review All" in prompt and "## TODOs" in prompt:
        return (
            f"## Code Review All\n{DEMO_PREFIX} The files implement the design and call each other correctly.\n\n"
            f"## Call flow\n```mermaid\n{_CALL_FLOW}\n```\n\n"
            f"## Summary\n{DEMO_PREFIX} {idea}: App holds the logic and main.py runs it.\n\n"
            "## TODOs\n{}\n"
        )

    # Engineer._is_pass
    if "answer 'YES' in JSON format" in prompt:
        return f'{DEMO_PREFIX} {{"answer": "YES", "todo": []}}'

    # RunCode's summary of a test run
    if "summarize the code running result" in prompt:
        return (
            f"## instruction:\n{DEMO_PREFIX} No errors to fix.\n"
            "## File To Rewrite:\nNone\n"
            "## Status:\nPASS\n"
            "## Send To:\nNoOne\n"
        )

    # Role._think choosing its next state
    if "Just answer a number between 0-" in prompt:
        return "0"

    lowered = prompt.lower()
    if "```python" in prompt or re.search(r"\b(write|generate|implement)\b.*\bcode\b", lowered):
        return _fenced(code_for_file("main.py", idea, name))

    question = _one_line(prompt, 160) if prompt.strip() else "(nothing)"
    return (
        f"{DEMO_PREFIX} I am the offline demo model, so this is a canned answer. "
        f"You said: “{question}”. Configure an LLM profile to get real answers."
    )


# ---------------------------------------------------------------------------------------------
# The provider


class DemoLLM(BaseLLM):
    """MetaGPT provider for the offline demo model (see module docstring)."""

    def __init__(self, config: LLMConfig | None = None, *, chunk_delay: float = 0.0) -> None:
        self.config = config or demo_llm_config()
        # Accounting always uses the demo name so its zero price applies whatever config came in.
        self.model = DEMO_MODEL_NAME
        self.pricing_plan = DEMO_MODEL_NAME
        self.cost_manager: CostManager | None = None
        # Seconds between streamed chunks, so a UI can show streaming as it would look.
        self.chunk_delay = chunk_delay

    @staticmethod
    def usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
        prompt_tokens = count_tokens(messages_text(messages))
        completion_tokens = count_tokens(text)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _update_costs(self, usage: Any, model: str | None = None, local_calc_usage: bool = True) -> None:
        register_demo_price(self.cost_manager)
        super()._update_costs(usage, model=model, local_calc_usage=local_calc_usage)

    async def _achat_completion(
        self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT
    ) -> dict[str, Any]:
        text = demo_answer(messages)
        usage = self.usage(messages, text)
        self._update_costs(usage)
        return {
            "id": f"demo-{int(time.time() * 1000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": DEMO_MODEL_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    async def acompletion(self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT) -> dict[str, Any]:
        return await self._achat_completion(messages, timeout=timeout)

    async def _achat_completion_stream(self, messages: list[dict[str, Any]], timeout: int = USE_CONFIG_TIMEOUT) -> str:
        text = demo_answer(messages)
        for piece in _STREAM_PIECE.findall(text):
            log_llm_stream(piece)
            # Yield even without a delay so cancelling a run interrupts a long answer.
            await asyncio.sleep(self.chunk_delay)
        log_llm_stream("\n")  # same end-of-answer marker as MetaGPT's OpenAI provider
        self._update_costs(self.usage(messages, text))
        return text
