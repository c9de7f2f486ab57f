"""Where a run's per-round checkpoints live (core/runtime/checkpoint.py writes and reads them),
without importing MetaGPT: the façade checks and copies them for forks."""

from __future__ import annotations

import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"
EXTRA_FILE = "agentdeck.json"


def checkpoint_dir(run_dir: Path, round_no: int) -> Path:
    return run_dir / CHECKPOINTS / f"round-{round_no:03d}"


def checkpoint_exists(run_dir: Path, round_no: int) -> bool:
    folder = checkpoint_dir(run_dir, round_no)
    return (folder / "team.json").is_file() and (folder / EXTRA_FILE).is_file()


def copy_checkpoint(source_run_dir: Path, target_run_dir: Path, round_no: int) -> None:
    """A fork starts from its parent's checkpoint of `round_no` and a copy of its project files;
    paths into the parent's folder are rewritten into the fork's."""
    target = checkpoint_dir(target_run_dir, round_no)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(checkpoint_dir(source_run_dir, round_no), target, dirs_exist_ok=True)
    old, new = str(source_run_dir.resolve()), str(target_run_dir.resolve())
    for path in target.glob("*.json"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))
    workspace = source_run_dir / "workspace"
    if workspace.is_dir():
        shutil.copytree(workspace, target_run_dir / "workspace", dirs_exist_ok=True, symlinks=True)
