"""A run's files: its folder in the data dir, and MetaGPT's project files in it, read-only."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from core.errors import NotFound

MAX_FILE_BYTES = 256 * 1024
MAX_FILES_LISTED = 500


class RunFiles:
    def __init__(self, services: Any) -> None:
        self.services = services

    def run_dir(self, run_id: uuid.UUID) -> Path:
        data_dir: Path = self.services.settings.data_dir
        return data_dir / "runs" / str(run_id)

    def list(self, run_id: uuid.UUID, scope: uuid.UUID | None = None) -> list[str]:
        """MetaGPT's project files of a run, relative to its workspace folder."""
        self.services.runs.get(run_id, scope=scope)
        root = self.run_dir(run_id) / "workspace"
        if not root.exists():
            return []
        files: list[str] = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".git" not in path.relative_to(root).parts:
                files.append(str(path.relative_to(root)))
                if len(files) >= MAX_FILES_LISTED:
                    break
        return files

    def read(self, run_id: uuid.UUID, relative: str, scope: uuid.UUID | None = None) -> str:
        self.services.runs.get(run_id, scope=scope)
        root = (self.run_dir(run_id) / "workspace").resolve()
        if len(relative) > 1024 or "\x00" in relative:
            raise NotFound("run file", relative[:100])
        try:
            target = (root / relative).resolve()
            if root not in target.parents or not target.is_file():
                raise NotFound("run file", relative)
            with target.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES)  # never more than the limit, however big the file
        except OSError as exc:
            raise NotFound("run file", relative[:100]) from exc
        return data.decode("utf-8", errors="replace")
