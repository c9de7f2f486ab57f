"""The service container: one object that holds every domain service of a running AgentDeck.

main.py builds it once and puts it in the app's state (`app.state.services`): API routes and
middlewares read it from the request's app, dashboard pages from `ui.state.app_services()` and
pass it to what they build. Core keeps no process-wide instance; tests build their own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from core.agents import AgentService
from core.analytics import AnalyticsService
from core.bundles import BundleService
from core.config import Settings
from core.context import ContextService
from core.db import Database
from core.events import EventBus, purge_events_older_than
from core.llm_calls import LlmCallService
from core.llm_profiles import EndpointPolicy, LlmProfileService
from core.messages import MessageService
from core.run_inputs import RunInputService
from core.runs import RunService
from core.runtime.manager import Runtime
from core.secrets import SecretBox
from core.templates import TemplateService
from core.tokens import TokenService
from core.workspaces import WorkspaceService

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 3600


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
    run_inputs: RunInputService
    tokens: TokenService
    llm_profiles: LlmProfileService
    analytics: AnalyticsService
    llm_calls: LlmCallService
    runtime: Runtime = field(init=False)
    templates: TemplateService = field(init=False)
    bundles: BundleService = field(init=False)

    def __post_init__(self) -> None:
        self.runtime = Runtime(self)
        self.templates = TemplateService(self.db, self.agents)
        self.bundles = BundleService(self.db, self.settings)

    _retention_task: asyncio.Task[None] | None = field(init=False, default=None)
    _follow_task: asyncio.Task[None] | None = field(init=False, default=None)
    # Set once `start` has finished (DBOS launched, unfinished work resumed or declined): NiceGUI
    # runs startup handlers as tasks, so the server answers requests before they are done.
    ready: bool = field(init=False, default=False)

    async def start(self) -> None:
        await self.bus.start()
        # Durable execution: DBOS resumes the runs and chat answers this process left unfinished.
        await asyncio.to_thread(self.runtime.launch)
        self._follow_task = asyncio.create_task(
            self.runtime.durable.follow_finished_runs(), name="agentdeck-follow-finished-runs"
        )
        if self.settings.event_retention_days > 0:
            self._retention_task = asyncio.create_task(self._apply_retention(), name="agentdeck-event-retention")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._follow_task is not None:
            self._follow_task.cancel()
            await asyncio.gather(self._follow_task, return_exceptions=True)
            self._follow_task = None
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
            self._retention_task = None
        await asyncio.to_thread(self.runtime.shutdown)
        await self.bus.stop()

    async def _apply_retention(self) -> None:
        """Delete persisted events past the retention period: now, then every hour."""
        while True:
            try:
                deleted = await asyncio.to_thread(purge_events_older_than, self.db, self.settings.event_retention_days)
                # Recorded LLM calls follow the event retention setting.
                await asyncio.to_thread(self.llm_calls.purge_older_than, self.settings.event_retention_days)
                if deleted:
                    log.info(
                        "event retention: deleted %d events older than %d days",
                        deleted,
                        self.settings.event_retention_days,
                    )
            except Exception:
                log.exception("event retention failed; retrying in an hour")
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


def build_services(settings: Settings, db: Database | None = None) -> Services:
    db = db or Database(settings.resolved_database_url)
    services = Services(
        settings=settings,
        db=db,
        bus=EventBus(db),
        workspaces=WorkspaceService(db),
        agents=AgentService(db),
        contexts=ContextService(db),
        messages=MessageService(db, settings.max_message_chars),
        runs=RunService(db),
        run_inputs=RunInputService(db),
        tokens=TokenService(db),
        llm_profiles=LlmProfileService(
            db,
            SecretBox(settings),
            EndpointPolicy(loopback_bind=settings.loopback_bind, allow_private=settings.allow_private_llm),
        ),
        analytics=AnalyticsService(db),
        llm_calls=LlmCallService(db, settings.llm_call_max_chars, settings.record_llm_calls),
    )
    services.runs.max_concurrent = settings.max_concurrent_runs
    services.tokens.cache_seconds = settings.token_cache_seconds
    services.tokens.recheck_seconds = settings.token_recheck_seconds
    return services
