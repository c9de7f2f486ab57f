"""A team's state after each round, on disk in the run's own folder, so a run resumes at its next
round after a restart (core/runtime/durable.py) and a fork starts from any round.

`checkpoints/round-NNN/team.json` is MetaGPT's own `Team.serialize` (never its global
SERDESER_PATH, which every run would share). MetaGPT does not serialize everything a round
leaves behind, so `agentdeck.json` beside it keeps the rest:
- the cost manager (`Context.deserialize` builds a new one and drops it: the budget would reset);
- each role's `RoleContext.msg_buffer` (excluded from MetaGPT's dump: messages published in a
  round and not yet read by their recipient would be lost).

Restoring never uses `Team.deserialize` (it loses the RecordingEnvironment and the roles'
AgentDeck bindings and LLMs): the caller builds a fresh team exactly as for round 1 and `restore`
puts the saved state into it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from metagpt.context import Context
from metagpt.memory import Memory
from metagpt.roles import Role
from metagpt.schema import Message
from metagpt.team import Team
from metagpt.utils.cost_manager import CostManager
from pydantic import TypeAdapter

from core.runtime.checkpoint_files import (
    EXTRA_FILE,
    checkpoint_dir,
    checkpoint_exists,
    copy_checkpoint,
    restore_files,
    snapshot_files,
)

__all__ = [
    "checkpoint_dir",
    "checkpoint_exists",
    "copy_checkpoint",
    "has_checkpoint",
    "restore",
    "restore_files",
    "save",
]
# Fields of the roles' own classes (Engineer.n_summarize, QaEngineer.test_round, ...) are restored
# generically; the ones below are rebuilt by construction and must stay as built.
_ROLE_FIELDS_KEPT = {
    "actions",
    "addresses",
    "constraints",
    "desc",
    "goal",
    "is_human",
    "name",
    "planner",
    "private_config",
    "private_context",
    "private_llm",
    "profile",
    "rc",
    "role_id",
    "states",
    "recovered",
}


def has_checkpoint(run_dir: Path, round_no: int) -> bool:
    return checkpoint_exists(run_dir, round_no)


def save(team: Team, run_dir: Path, round_no: int) -> float:
    """Write round `round_no`'s checkpoint, project files included, atomically (a temp folder
    renamed into place); returns the seconds it took."""
    started = time.perf_counter()
    final = checkpoint_dir(run_dir, round_no)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    team.serialize(tmp)
    ctx = team.env.context
    extra: dict[str, Any] = {
        "round": round_no,
        "cost_manager": ctx.cost_manager.model_dump(mode="json"),
        "msg_buffers": {
            profile: [m.model_dump(mode="json") for m in list(role.rc.msg_buffer._queue._queue)]
            for profile, role in team.env.roles.items()
        },
    }
    (tmp / EXTRA_FILE).write_text(json.dumps(extra, ensure_ascii=False))
    snapshot_files(run_dir, tmp, round_no)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return time.perf_counter() - started


def restore(team: Team, run_dir: Path, round_no: int) -> None:
    """Put round `round_no`'s saved state into `team`, freshly built as for round 1."""
    folder = checkpoint_dir(run_dir, round_no)
    saved = json.loads((folder / "team.json").read_text())
    extra = json.loads((folder / EXTRA_FILE).read_text())
    ctx: Context = team.env.context
    context_data = saved.get("context") or {}
    workdir = context_data.get("workdir")
    if workdir and not Path(workdir).exists():
        context_data = {**context_data, "workdir": ""}
    ctx.deserialize(context_data)
    _restore_costs(ctx.cost_manager, extra.get("cost_manager") or {})
    env_saved = saved.get("env") or {}
    if isinstance(env_saved.get("history"), str):
        team.env.history = env_saved["history"]
    roles_saved: dict[str, Any] = env_saved.get("roles") or {}
    buffers: dict[str, list[dict[str, Any]]] = extra.get("msg_buffers") or {}
    for profile, role in team.env.roles.items():
        data = roles_saved.get(profile)
        if data is not None:
            _restore_role(role, data)
        for message in buffers.get(profile, []):
            role.rc.msg_buffer.push(Message(**message))


def _restore_costs(manager: CostManager, data: dict[str, Any]) -> None:
    for name in ("total_prompt_tokens", "total_completion_tokens", "total_budget", "max_budget", "total_cost"):
        if name in data:
            setattr(manager, name, data[name])


def _restore_role(role: Role, data: dict[str, Any]) -> None:
    rc = data.get("rc") or {}
    if "memory" in rc:
        role.rc.memory = TypeAdapter(Memory).validate_python(rc["memory"])
    if "working_memory" in rc:
        role.rc.working_memory = TypeAdapter(Memory).validate_python(rc["working_memory"])
    if data.get("latest_observed_msg"):
        role.latest_observed_msg = Message(**data["latest_observed_msg"])
    fields = type(role).model_fields
    for name, value in data.items():
        if name in _ROLE_FIELDS_KEPT or name not in fields or name == "latest_observed_msg" or name.startswith("__"):
            continue
        annotation = fields[name].annotation
        restored = TypeAdapter(annotation).validate_python(value)
        # Actions kept in a role's own fields (the Engineer's code to-dos) need the run's
        # context and LLM, which MetaGPT's dump does not carry.
        for item in restored if isinstance(restored, list) else [restored]:
            if hasattr(item, "set_context") and hasattr(item, "set_llm"):
                item.set_context(role.context, override=True)
                role._init_action(item)
        setattr(role, name, restored)
    state = rc.get("state", -1)
    if isinstance(state, int) and 0 <= state < len(role.actions):
        role._set_state(state)
