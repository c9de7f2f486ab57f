"""The service container: one object that holds every domain service of a running AgentDeck.

main.py builds it once; ui/ and api/ reach it through `get_services()`. Tests build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.agents import AgentService
from core.config import Settings
from core.context import ContextService
from core.db import Database
from core.events import EventBus
from core.llm_profiles import LlmProfileService
from core.messages import MessageService
from core.runs import RunService
from core.runtime.manager import Runtime
from core.secrets import SecretBox
from core.tokens import TokenService
from core.workspaces import WorkspaceService


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: EventBus
    workspaces: WorkspaceService
    agents: AgentService
    contexts: ContextService
    messages: MessageService
    runs: RunService
    tokens: TokenService
    llm_profiles: LlmProfileService
    runtime: Runtime = field(init=False)

    def __post_init__(self) -> None:
        self.runtime = Runtime(self)

    async def start(self) -> None:
        await self.bus.start()

    async def stop(self) -> None:
        self.runtime.shutdown()
        await self.bus.stop()


def build_services(settings: Settings, db: Database | None = None) -> Services:
    db = db or Database(settings.resolved_database_url)
    return Services(
        settings=settings,
        db=db,
        bus=EventBus(db),
        workspaces=WorkspaceService(db),
        agents=AgentService(db),
        contexts=ContextService(db),
        messages=MessageService(db, settings.max_message_chars),
        runs=RunService(db),
        tokens=TokenService(db),
        llm_profiles=LlmProfileService(db, SecretBox(settings)),
    )


_current: Services | None = None


def set_services(services: Services | None) -> None:
    global _current
    _current = services


def get_services() -> Services:
    if _current is None:
        raise RuntimeError("AgentDeck services are not built yet (main.py builds them at startup)")
    return _current
