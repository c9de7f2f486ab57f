"""Cursor fuzzing of every keyset list (issue 12 point 8, issue 16 point 3): schemathesis sends
each list operation at least 50 requests whose cursors are drawn from real ones (taken from the
lists themselves) and mangled ones (naive and out-of-range times, bad ids, huge numbers, broken
base64, wrong shapes), mixed with what it generates itself. No answer may be a server error;
a cursor that is not one of ours is 422.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis

from core.config import Settings
from core.pagination import encode_cursor
from core.services import build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.test_api_fuzz import APP_ENV, seed

EXAMPLES = 50
LISTS = r"^/api/(runs|agents|runs/\{run_id\}/messages|agents/\{agent_id\}/(messages|status/history|context/versions)|messages/search)$"


def raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def mangled() -> list[str]:
    ident = str(uuid.uuid4())
    return [
        encode_cursor("2024-01-01T00:00:00", ident),  # naive time
        encode_cursor("0001-01-01T00:00:00-01:00", ident),  # overflows in UTC
        encode_cursor("9999-12-31T23:59:59+00:00", ident),
        encode_cursor("2024-01-01T00:00:00+00:00", "not-a-uuid"),
        encode_cursor("yesterday", ident),
        encode_cursor(2**70),
        encode_cursor(-1),
        encode_cursor(1.5),
        raw("[true]"),
        raw("[null, null]"),
        raw('{"a": 1}'),
        raw("[" * 500),
        raw(json.dumps([[[]]])),
        "!!!",
        "A",
        "x" * 3000,
        raw("\x00"),
    ]


def valid_cursors(data_dir: Any, database_url: str | None, ids: dict[str, list[str]]) -> list[str]:
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        ws = uuid.UUID(ids["workspaces"][0])
        agent = uuid.UUID(ids["agents"][0])
        cursors = [services.agents.list(ws, limit=1).next_cursor]
        for a in services.agents.list(ws, limit=20).items:
            cursors.append(encode_cursor(a.created_at, a.id))
        for r in services.runs.list(ws, limit=20).items:
            cursors.append(encode_cursor(r.created_at, r.id))
        for m in services.messages.list(agent, limit=20).items:
            cursors += [encode_cursor(m.seq), encode_cursor(m.created_at, m.id)]
        cursors += [encode_cursor(1), encode_cursor(2)]
        return [c for c in cursors if c]
    finally:
        services.db.dispose()


@pytest.fixture(scope="module")
def cursor_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("cursors") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env=APP_ENV) as app:
            ids, secret = seed(data_dir, database_url)
            cursors = valid_cursors(data_dir, database_url, ids) + mangled()
            config = schemathesis.Config.from_dict(
                {
                    "headers": {"Authorization": f"Bearer {secret}"},
                    "generation": {"max-examples": EXAMPLES, "with-security-parameters": False},
                    "request-timeout": 30,
                    "dictionaries": {"cursors": {"values": cursors}, **{k: {"values": v} for k, v in ids.items()}},
                    "parameters": {
                        "query.cursor": {"dictionary": "cursors", "probability": 0.9},
                        "query.before": {"dictionary": "cursors", "probability": 0.9},
                        "query.after": {"dictionary": "cursors", "probability": 0.9},
                        "query.workspace_id": {"dictionary": "workspaces", "probability": 0.9},
                        "path.agent_id": {"dictionary": "agents", "probability": 0.9},
                        "path.run_id": {"dictionary": "runs", "probability": 0.9},
                    },
                }
            )
            yield schemathesis.openapi.from_url(f"{app.base_url}/openapi.json", config=config)
    finally:
        if database_url:
            drop_pg_database(database_url)


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("cursor_schema").include(method="GET", path_regex=LISTS)


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_cursor_gives_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(timeout=30)
    not_a_server_error_result = response.status_code < 500
    assert not_a_server_error_result, (case.path, case.query, response.status_code, response.text[:300])
    query = case.query or {}
    cursor = next((query[k] for k in ("cursor", "before", "after") if query.get(k)), None)
    if isinstance(cursor, str) and cursor in MANGLED and response.status_code != 404:
        assert response.status_code == 422, (case.path, case.query, response.text[:300])


MANGLED = set(mangled()[3:])  # the ones with a random id differ per call; these are fixed
