"""Building MetaGPT roles and LLMs from AgentDeck agents.

- Team runs use the real MetaGPT role of the agent's definition (ProductManager, Architect, …),
  or `AssistantRole` for prompt-driven assistants, or a plugin's own Role class
  (`role_kind = "package.module:Class"`).
- Chat uses `ChatRole`: one `Respond` action speaking as the agent's persona, with its system
  prompt, its current context and the recent thread.
- Every role's prompt carries the agent's current context; an agent can write to it by ending a
  reply with a fenced ```agentdeck-context``` block holding an RFC 7396 merge patch.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from metagpt.actions import Action, UserRequirement
from metagpt.configs.llm_config import LLMConfig
from metagpt.context import Context
from metagpt.provider.base_llm import BaseLLM
from metagpt.provider.llm_provider_registry import create_llm_instance
from metagpt.roles import Architect, Engineer, ProductManager, ProjectManager, QaEngineer, Role
from metagpt.schema import Message

from core.runtime.demo_llm import DemoLLM
from core.runtime.observe import AgentBinding, observed_role_class, watch_llm
from core.runtime_labels import DEMO_MODEL_LABEL

log = logging.getLogger("agentdeck.runtime")

SOP_ROLES: dict[str, type[Role]] = {
    "ProductManager": ProductManager,
    "Architect": Architect,
    "ProjectManager": ProjectManager,
    "Engineer": Engineer,
    "QaEngineer": QaEngineer,
}

CONTEXT_BLOCK = re.compile(r"```agentdeck-context\s*\n(.*?)```", re.DOTALL)
CONTEXT_INSTRUCTIONS = (
    "You have a persistent context (a JSON object) shown below. To change it, end your reply with a "
    "fenced block whose info string is agentdeck-context containing a JSON merge patch (RFC 7396), e.g.\n"
    '```agentdeck-context\n{"preferred_language": "Python"}\n```\n'
    "Only do this when something is worth remembering."
)
HISTORY_MESSAGES = 20


@dataclass(frozen=True)
class LlmChoice:
    """The model a run or chat uses: a workspace LLM profile, or the offline demo model."""

    label: str
    is_demo: bool
    config: dict[str, Any] | None = None  # MetaGPT llm config of a profile
    timeout: int = 120

    def llm_config(self) -> LLMConfig:
        if self.config is None:
            from core.runtime.demo_llm import demo_llm_config

            return demo_llm_config()
        return LLMConfig(**{**self.config, "timeout": self.timeout})

    def make_llm(self) -> BaseLLM:
        from core.runtime.human import with_feedback

        llm: BaseLLM = DemoLLM() if self.is_demo else create_llm_instance(self.llm_config())
        return with_feedback(watch_llm(llm))


async def close_llm(llm: BaseLLM) -> None:
    """Close the LLM's HTTP client on the loop that used it. Left to the garbage collector, the
    openai client schedules its close on whatever loop runs at that moment, a later one that may
    be closed before the task runs ("Event loop is closed", logged as an error)."""
    client = getattr(llm, "aclient", None)
    close = getattr(client, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception:  # closing is tidying up: a transport already gone changes nothing
        log.debug("closing an LLM client", exc_info=True)


def demo_choice() -> LlmChoice:
    return LlmChoice(label=DEMO_MODEL_LABEL, is_demo=True)


def profile_choice(label: str, api_type: str, model: str, base_url: str, api_key: str, timeout: int = 120) -> LlmChoice:
    config: dict[str, Any] = {"api_type": api_type, "model": model, "api_key": api_key or "none"}
    if base_url:
        config["base_url"] = base_url
    return LlmChoice(label=label, is_demo=False, config=config, timeout=timeout)


def context_prompt(binding: AgentBinding) -> str:
    data = json.dumps(binding.context, ensure_ascii=False, indent=2, sort_keys=True)
    return f"## Your context (version {binding.context_version})\n{data}\n\n{CONTEXT_INSTRUCTIONS}"


def split_context_update(reply: str) -> tuple[str, dict[str, Any] | None, str | None]:
    """(reply without the block, merge patch or None, error or None)."""
    match = CONTEXT_BLOCK.search(reply)
    if match is None:
        return reply, None, None
    cleaned = (reply[: match.start()] + reply[match.end() :]).strip()
    try:
        patch = json.loads(match.group(1))
    except ValueError as exc:
        return cleaned, None, f"ignored a context update that is not JSON: {exc}"
    if not isinstance(patch, dict):
        return cleaned, None, "ignored a context update that is not a JSON object"
    return cleaned, patch, None


class AssistantRole(Role):
    """A prompt-driven assistant in a team: answers what reaches it with one Respond action."""

    name: str = "Assistant"
    profile: str = "Assistant"
    goal: str = "Help the team with clear, correct answers."


class Respond(Action):
    """Answer the conversation as the role, with its system prompt and context."""

    name: str = "Respond"
    system_prompt: str = ""
    transcript: str = ""

    async def run(self, with_messages: list[Message] | None = None, **kwargs: Any) -> str:
        latest = with_messages[-1].content if with_messages else ""
        prompt = f"{self.transcript}\n\n## Message to answer\n{latest}" if self.transcript else latest
        answer: str = await self._aask(prompt, [self.system_prompt] if self.system_prompt else None)
        return answer


class ChatRole(Role):
    name: str = "Assistant"
    profile: str = "Assistant"


def persona(binding: AgentBinding) -> tuple[str, str, str]:
    """(profile, goal, constraints) of the agent's MetaGPT role, for chat."""
    cls = SOP_ROLES.get(binding.role_kind)
    if cls is None:
        return "Assistant", "Help the user.", ""
    fields = cls.model_fields
    return (
        str(fields["profile"].default),
        str(fields["goal"].default),
        str(fields["constraints"].default),
    )


def build_chat_role(binding: AgentBinding, context: Context, llm: BaseLLM, history: list[tuple[str, str]]) -> Role:
    profile, goal, constraints = persona(binding)
    system_prompt = str(binding.config.get("system_prompt") or f"You are {binding.name}, a {profile}. {goal}")
    extra = str(binding.config.get("constraints") or "")
    system = "\n\n".join(part for part in (system_prompt, constraints, extra, context_prompt(binding)) if part)
    transcript = "\n".join(f"{sender}: {content}" for sender, content in history)
    respond = Respond(system_prompt=system, transcript=f"## Conversation so far\n{transcript}" if transcript else "")
    cls = observed_role_class(ChatRole)
    role = cls(name=binding.name, profile=profile, goal=goal, context=context, llm=llm, actions=[respond])
    role.agentdeck = binding
    return role


def _role_class(role_kind: str) -> type[Role]:
    if role_kind in SOP_ROLES:
        return SOP_ROLES[role_kind]
    if role_kind == "assistant":
        return AssistantRole
    module_name, _, class_name = role_kind.partition(":")
    if not class_name:
        raise ValueError(f"unknown role kind {role_kind!r}")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Role)):
        raise ValueError(f"{role_kind} is not a MetaGPT Role")
    return cls


def build_team_role(binding: AgentBinding, context: Context, llm: BaseLLM) -> Role:
    base = _role_class(binding.role_kind)
    # The agent's name and context reach the prompt through MetaGPT's own prefix
    # (profile, name, goal, constraints); `desc` would replace all of it, so it stays empty.
    extra = str(binding.config.get("constraints") or "")
    default_constraints = str(base.model_fields["constraints"].default or "")
    kwargs: dict[str, Any] = {
        "context": context,
        "llm": llm,
        "constraints": "\n".join(part for part in (default_constraints, extra, context_prompt(binding)) if part),
    }
    # SOP roles keep MetaGPT's own names: its actions address each other by them (the Engineer
    # sends its code to "Edward", the QA engineer). AgentDeck's name is kept in the binding and
    # is what the thread shows. Assistants are named after the agent, and their profile too,
    # since an Environment keys its roles by profile.
    if binding.role_kind == "assistant":
        system_prompt = str(binding.config.get("system_prompt") or "")
        kwargs["actions"] = [Respond(system_prompt=system_prompt)]
        kwargs["watch"] = [UserRequirement]
        kwargs["name"] = binding.name
        kwargs["profile"] = binding.name
    role = observed_role_class(base)(**kwargs)
    role.agentdeck = binding
    return role
