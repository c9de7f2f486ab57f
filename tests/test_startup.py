"""Startup migrates a fresh data dir, migrates nothing the second time, refuses a newer database,
and the README's start command serves /api/health."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from core.config import Settings
from core.schemas import WorkspaceCreate
from core.services import Services
from main import StartupError, build_parser, check_bind_address, main, prepare, settings_from_args
from storage.db import make_engine
from storage.migrate import current_revision, head_revision
from tests.app_process import AppProcess


def test_fresh_data_dir_gets_a_migrated_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh")
    services = prepare(settings)
    services.db.dispose()
    db_file = tmp_path / "fresh" / "agentdeck.db"
    assert db_file.exists()
    engine = make_engine(f"sqlite:///{db_file}")
    assert current_revision(engine) == head_revision(settings.resolved_database_url)
    engine.dispose()


def test_second_start_migrates_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare(settings).db.dispose()
    before = sorted(p.name for p in tmp_path.iterdir())
    services = prepare(settings)
    services.db.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not list(tmp_path.glob("*.bak*"))


def test_pending_migration_backs_up_the_sqlite_file_first(tmp_path: Path) -> None:
    from storage.migrate import downgrade

    settings = Settings(data_dir=tmp_path)
    services = prepare(settings)
    services.workspaces.create(WorkspaceCreate(slug="keep-me"))
    downgrade(services.db.engine, settings.resolved_database_url, "-1")
    services.db.dispose()

    prepare(settings).db.dispose()
    backups = list(tmp_path.glob("agentdeck.*.bak.db"))
    assert len(backups) == 1
    backup = make_engine(f"sqlite:///{backups[0]}")
    with backup.connect() as conn:
        slugs = conn.execute(sa.text("SELECT slug FROM workspaces")).scalars().all()
    backup.dispose()
    assert slugs == ["keep-me"]


def test_database_from_a_newer_agentdeck_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare(settings).db.dispose()
    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '999_from_the_future'"))
    engine.dispose()

    with pytest.raises(StartupError, match="999_from_the_future"):
        prepare(settings)
    code = main(["--data-dir", str(tmp_path), "workspace", "list"])
    assert code == 2
    assert "newer AgentDeck" in capsys.readouterr().err


def test_public_address_without_password_refuses_to_start() -> None:
    with pytest.raises(StartupError, match="password"):
        check_bind_address(Settings(host="0.0.0.0"))
    check_bind_address(Settings(host="0.0.0.0", password="s3cret"))
    check_bind_address(Settings(host="127.0.0.1"))
    check_bind_address(Settings(host="::1"))


def test_cli_options_work_before_or_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path / "a"), "workspace", "create", "acme", "--name", "Acme"]) == 0
    assert main(["workspace", "create", "beta", "--data-dir", str(tmp_path / "a")]) == 0
    assert main(["workspace", "create", "beta", "--data-dir", str(tmp_path / "a")]) == 1
    capsys.readouterr()
    assert main(["workspace", "list", "--data-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "acme\tAcme" in out and "beta\tbeta" in out
    assert "already exists" not in out


def test_no_resume_comes_from_the_flag_before_or_after_worker_or_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTDECK_RESUME", raising=False)
    parser = build_parser()
    assert settings_from_args(parser.parse_args([])).resume is True
    assert settings_from_args(parser.parse_args(["--no-resume"])).resume is False
    assert settings_from_args(parser.parse_args(["worker", "--no-resume"])).resume is False
    assert settings_from_args(parser.parse_args(["--no-resume", "worker"])).resume is False
    monkeypatch.setenv("AGENTDECK_RESUME", "0")
    assert settings_from_args(parser.parse_args(["worker"])).resume is False


@pytest.mark.slow
def test_readme_start_command_serves_health(tmp_path: Path) -> None:
    with AppProcess(tmp_path / "data") as app:
        response = httpx.get(f"{app.base_url}/api/health", timeout=5)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert (tmp_path / "data" / "agentdeck.db").exists()
        missing = httpx.get(f"{app.base_url}/api/no-such-route", timeout=5)
        assert missing.status_code == 404


async def test_health_says_starting_until_the_process_is_ready_to_execute(services: Services) -> None:
    """NiceGUI serves requests while its startup handlers still run; health is 200 only after
    DBOS has launched (and this process's unfinished work was resumed or declined)."""
    from fastapi import FastAPI

    from api import health

    app = FastAPI()
    app.include_router(health.router)
    app.state.services = services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        starting = await client.get("/api/health")
        assert (starting.status_code, starting.json()["status"]) == (503, "starting")
        await services.start()
        try:
            ready = await client.get("/api/health")
            assert (ready.status_code, ready.json()["status"]) == (200, "ok")
        finally:
            await services.stop()
        assert (await client.get("/api/health")).status_code == 503


async def test_two_apps_in_one_process_each_serve_their_own_services(services: Services, tmp_path: Path) -> None:
    """Nothing process-wide decides which services answer: an app serves the ones in its own
    state (main.py puts them there), for its routes, token checks and guards alike."""
    from fastapi import FastAPI

    from api.app import install_api
    from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

    other_url = create_pg_database() if USE_POSTGRES else None
    other = prepare(Settings(data_dir=tmp_path / "other", database_url=other_url))  # a database of its own
    try:
        secrets = {}
        apps = {}
        for slug, container in (("first", services), ("second", other)):
            workspace = container.workspaces.create(WorkspaceCreate(slug=slug))
            secrets[slug] = container.tokens.create(workspace.id, "t")[1]
            apps[slug] = app = FastAPI()
            install_api(app, container.settings)
            app.state.services = container
        for slug, app in apps.items():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
                for token_of, secret in secrets.items():
                    response = await client.get("/api/workspaces", headers={"Authorization": f"Bearer {secret}"})
                    if token_of == slug:
                        assert response.status_code == 200, response.text
                        assert [w["slug"] for w in response.json()] == [slug]
                    else:
                        assert response.status_code == 401, "a token of the other app's database"
    finally:
        other.db.dispose()
        if other_url:
            drop_pg_database(other_url)
