"""Fixtures per layer: a migrated database (SQLite file or PostgreSQL), settings, services."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.registry import sync_definitions
from core.runtime.bootstrap import PLACEHOLDER_CONFIG
from core.services import Services, build_services
from tests.db import USE_POSTGRES, drop_pg_database, fresh_copy, migrated_template


def pytest_configure(config: pytest.Config) -> None:
    """Give MetaGPT a root of the session's own before anything imports it, so no test leaves
    MetaGPT's logs, workspace or tool schemas in the checkout (it defaults to the cwd)."""
    if "METAGPT_PROJECT_ROOT" not in os.environ:
        root = Path(tempfile.mkdtemp(prefix="agentdeck-test-metagpt-"))
        (root / "config").mkdir()
        (root / "config" / "config2.yaml").write_text(PLACEHOLDER_CONFIG)
        os.environ["METAGPT_PROJECT_ROOT"] = str(root)


@pytest.fixture(scope="session")
def metagpt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MetaGPT imported the way the app does it (rooted in a data dir, ~/.metagpt hidden);
    returns its root, the first one of the session if MetaGPT was already imported."""
    from core.runtime.bootstrap import configure_metagpt

    return configure_metagpt(tmp_path_factory.mktemp("metagpt-data"))


@pytest.fixture(scope="session")
def template_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = migrated_template(tmp_path_factory.mktemp("template"))
    yield url
    if USE_POSTGRES:
        drop_pg_database(url)


@pytest.fixture
def database_url(template_database_url: str, tmp_path: Path) -> str:
    """An empty database at head for this test (a fresh SQLite file, or truncated PostgreSQL)."""
    return fresh_copy(template_database_url, tmp_path)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings)
    sync_definitions(built.db)
    yield built
    built.db.dispose()


@pytest.fixture
async def live_services(services: Services) -> AsyncIterator[Services]:
    """Services with the event bus running on the test's event loop."""
    await services.start()
    yield services
    await services.stop()
