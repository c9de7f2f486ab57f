"""Every file MetaGPT writes for a run stays inside the run's folder (issue 12, point 2).

MetaGPT names files after what the LLM wrote: the task list's file names, code and test file
names, the PRD's "Project Name" (the project folder is renamed to it). A name like
`../../x`, `/etc/x`, or a path through a symlink that generated code left in the run folder would
write (or, for the rename, delete and move) outside it, with code execution on or off.

Two MetaGPT methods take those names, and both are checked here against the run folder of the
run being executed (a context variable set when the run starts):

- `FileRepository.save(filename, ...)`: every project file (docs, code, tests, test outputs,
  requirements.txt) is written through it;
- `GitRepository.rename_root(name)`: the project folder's rename (which first deletes whatever
  is at the target).

A refused name raises `UnsafePath` (the step fails, so the run ends failed with the reason) and
is recorded as an `agent_activity` event of the run (`{"activity": "file refused", ...}`).
Outside a run (no context set) MetaGPT behaves as it always did.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path, PurePath
from typing import Any

from metagpt.utils.file_repository import FileRepository
from metagpt.utils.git_repository import GitRepository

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 255
MAX_PATH_CHARS = 1024


class UnsafePath(PermissionError):
    """A name that would leave the run's folder."""


# The folder the current run may write in, and how to record a refusal.
RUN_ROOT: ContextVar[Path | None] = ContextVar("agentdeck_run_root", default=None)
ON_REFUSED: ContextVar[Callable[[dict[str, Any]], None] | None] = ContextVar("agentdeck_on_refused", default=None)


def confine(root: Path, on_refused: Callable[[dict[str, Any]], None] | None = None) -> None:
    """From here on (in this context), MetaGPT's writes must stay inside `root`."""
    install()
    root.mkdir(parents=True, exist_ok=True)
    RUN_ROOT.set(root.resolve())
    ON_REFUSED.set(on_refused)


def inside(root: Path, base: Path, name: str | PurePath) -> Path:
    """`base / name`, if that is a plain path inside `root` with no symlink on the way; else
    UnsafePath. `root` must be resolved."""
    text = str(name)
    path = PurePath(text)
    if not text or "\x00" in text or len(text) > MAX_PATH_CHARS:
        raise UnsafePath(f"refused file name {text[:100]!r}: empty, too long or with NUL characters")
    if path.is_absolute() or text.startswith(("/", "\\", "~")):
        raise UnsafePath(f"refused absolute file name {text[:200]!r}")
    if ".." in path.parts or any(len(part) > MAX_NAME_CHARS for part in path.parts):
        raise UnsafePath(f"refused file name {text[:200]!r}: `..` or an over-long part")
    base = Path(base)
    if not base.resolve().is_relative_to(root):
        raise UnsafePath(f"refused folder {str(base)[:200]!r}: outside the run's folder")
    current = base
    for part in path.parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePath(f"refused file name {text[:200]!r}: {part!r} is a symlink")
    target = base / path
    if not target.resolve().is_relative_to(root):
        raise UnsafePath(f"refused file name {text[:200]!r}: outside the run's folder")
    return target


def _refuse(error: UnsafePath, what: str) -> None:
    record = ON_REFUSED.get()
    log.warning("%s: %s", what, error)
    if record is not None:
        try:
            record({"activity": "file refused", "what": what, "reason": str(error)[:300]})
        except Exception:
            log.exception("recording a refused file failed")


@functools.cache
def install() -> None:
    """Wrap the two MetaGPT methods once per process (they check only inside a run)."""
    original_save = FileRepository.save
    original_rename = GitRepository.rename_root

    @functools.wraps(original_save)
    async def save(self: FileRepository, filename: Path | str, content: Any, dependencies: Any = None) -> Any:
        root = RUN_ROOT.get()
        if root is not None:
            try:
                inside(root, Path(self.workdir), filename)
            except UnsafePath as exc:
                _refuse(exc, "write")
                raise
        return await original_save(self, filename, content, dependencies)

    @functools.wraps(original_rename)
    def rename_root(self: GitRepository, new_dir_name: Any) -> None:
        root = RUN_ROOT.get()
        if root is not None:
            try:
                name = str(new_dir_name)
                if len(PurePath(name).parts) != 1:
                    raise UnsafePath(f"refused project folder name {name[:200]!r}: not a single folder name")
                inside(root, Path(self.workdir).parent, name)
            except UnsafePath as exc:
                _refuse(exc, "rename project folder")
                raise
        original_rename(self, new_dir_name)

    FileRepository.save = save
    GitRepository.rename_root = rename_root


__all__ = ["ON_REFUSED", "RUN_ROOT", "UnsafePath", "confine", "inside", "install"]
