"""Where a run's per-round checkpoints live (core/runtime/checkpoint.py writes and reads them),
without importing MetaGPT: the façade checks and copies them for forks.

Each checkpoint holds the run's project files as they were at the end of its round (`files/`), so
a resumed round starts from exactly those files (not from what an interrupted round half wrote)
and a fork from round k gets its parent's files of round k, not of its end. A file unchanged since
the previous round's checkpoint is a hard link to it: snapshots are never written again, only
the live workspace is, and that is always copied."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"
EXTRA_FILE = "agentdeck.json"
FILES = "files"
WORKSPACE = "workspace"


def checkpoint_dir(run_dir: Path, round_no: int) -> Path:
    return run_dir / CHECKPOINTS / f"round-{round_no:03d}"


def checkpoint_exists(run_dir: Path, round_no: int) -> bool:
    folder = checkpoint_dir(run_dir, round_no)
    return (folder / "team.json").is_file() and (folder / EXTRA_FILE).is_file()


def copy_checkpoint(source_run_dir: Path, target_run_dir: Path, round_no: int) -> None:
    """A fork starts from its parent's checkpoint of `round_no`, project files included; paths
    into the parent's folder are rewritten into the fork's."""
    target = checkpoint_dir(target_run_dir, round_no)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(checkpoint_dir(source_run_dir, round_no), target, dirs_exist_ok=True, symlinks=True)
    old, new = str(source_run_dir.resolve()), str(target_run_dir.resolve())
    for path in target.glob("*.json"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))
    workspace = source_run_dir / WORKSPACE
    if not (target / FILES).is_dir() and workspace.is_dir():
        # A checkpoint written before project files were kept: the parent's files as at its end.
        shutil.copytree(workspace, target / FILES, symlinks=True)


def snapshot_files(run_dir: Path, checkpoint: Path, round_no: int) -> None:
    """Keep the run's project files as they are now in `checkpoint/files`: a file with the size
    and modification time it had in the previous round's snapshot is linked to it, any other is
    copied. Symbolic links stay links (never followed)."""
    workspace = run_dir / WORKSPACE
    target = checkpoint / FILES
    target.mkdir(parents=True, exist_ok=True)
    if not workspace.is_dir():
        return
    previous = checkpoint_dir(run_dir, round_no - 1) / FILES
    for folder, dirs, names in os.walk(workspace):
        relative = Path(folder).relative_to(workspace)
        for name in dirs:
            source = Path(folder) / name
            if source.is_symlink():
                os.symlink(os.readlink(source), target / relative / name)
            else:
                (target / relative / name).mkdir()
        for name in names:
            source, copy = Path(folder) / name, target / relative / name
            if source.is_symlink():
                os.symlink(os.readlink(source), copy)
                continue
            kept = previous / relative / name
            if _same_file_state(source, kept):
                os.link(kept, copy)
            else:
                shutil.copy2(source, copy)


def _same_file_state(live: Path, kept: Path) -> bool:
    try:
        a, b = live.stat(), kept.lstat()
    except FileNotFoundError:
        return False
    return not kept.is_symlink() and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def restore_files(run_dir: Path, round_no: int) -> bool:
    """Put round `round_no`'s project files back as the run's workspace (copies: the team writes
    into them). False if that checkpoint has no files (written before they were kept)."""
    snapshot = checkpoint_dir(run_dir, round_no) / FILES
    if not snapshot.is_dir():
        return False
    workspace = run_dir / WORKSPACE
    shutil.rmtree(workspace, ignore_errors=True)
    shutil.copytree(snapshot, workspace, symlinks=True)
    return True
