"""Real test databases: SQLite files, or a fresh PostgreSQL database per test session.

`TEST_DATABASE_URL` (a PostgreSQL server URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)
switches the suite to PostgreSQL; each session then creates its own database on that server so
runs never see each other's data, and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import make_engine
from storage.migrate import upgrade

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
USE_POSTGRES = TEST_DATABASE_URL.startswith("postgresql")


def pg_server_url() -> str:
    """The PostgreSQL URL to create scratch databases from (TEST_DATABASE_URL or the local one)."""
    return TEST_DATABASE_URL or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def create_pg_database(prefix: str = "agentdeck_test") -> str:
    base = make_url(pg_server_url())
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    target = make_url(url)
    admin = sa.create_engine(make_url(pg_server_url()), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    admin.dispose()


def migrated_template(directory: Path) -> str:
    """A migrated database to clone per test: a SQLite file, or a PostgreSQL database."""
    url = create_pg_database() if USE_POSTGRES else f"sqlite:///{directory / 'template.db'}"
    engine = make_engine(url)
    upgrade(engine, url)
    engine.dispose()
    return url


def fresh_copy(template_url: str, directory: Path) -> str:
    """A database for one test, at head, empty."""
    if template_url.startswith("sqlite"):
        target = directory / "agentdeck.db"
        shutil.copyfile(template_url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    # DELETE, children first: on these tiny tables it takes ~2 ms where TRUNCATE takes ~40 ms
    # (TRUNCATE swaps every table's files). Sequences keep counting either way.
    with _reset_engine(template_url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.exec_driver_sql(f'DELETE FROM "{table.name}"')
        # DBOS's workflows (core/runtime/durable.py) live in the same database: none of a previous test.
        if conn.exec_driver_sql("SELECT to_regclass('dbos.workflow_status')").scalar() is not None:
            conn.exec_driver_sql("DELETE FROM dbos.workflow_status")
    return template_url


@cache
def _reset_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)
