"""Which LLM a chat or run uses (a workspace profile, or the offline demo model), and the
connection test of a profile."""

from __future__ import annotations

import importlib
import threading
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from core.runtime.roles import LlmChoice


class ConnectionTest(BaseModel):
    ok: bool
    message: str
    seconds: float


class LlmAccess:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def ensure_ready(self) -> None:
        """Configure and import MetaGPT once (idempotent, thread-safe)."""
        if self._ready.is_set():
            return
        with self._lock:
            if not self._ready.is_set():
                from core.runtime.bootstrap import configure_metagpt

                configure_metagpt(self.settings.data_dir)
                # All of the runtime's MetaGPT imports, in this thread under this lock: MetaGPT's
                # modules import each other, and two threads importing them at once deadlock.
                importlib.import_module("core.runtime.engine")
                self._ready.set()

    def choice(self, workspace_id: uuid.UUID, profile: str | None = None) -> LlmChoice:
        self.ensure_ready()
        from core.runtime.roles import demo_choice, profile_choice

        resolved = self.services.llm_profiles.resolve(workspace_id, profile or None)
        if resolved is None:
            return demo_choice()
        return profile_choice(
            resolved.label,
            resolved.api_type,
            resolved.model,
            resolved.base_url,
            resolved.api_key,
            timeout=self.settings.llm_timeout,
        )
