"""Property-based fuzzing of the whole REST API from its own OpenAPI document (schemathesis).

For every operation, at least `MAX_EXAMPLES` valid and invalid requests are generated from
`/openapi.json` and sent to the real app process with a valid token. Two properties must hold for
all of them:
- no answer is a server error (`not_a_server_error`);
- every answer — success or documented error — matches the schema the document gives for its
  status (`response_schema_conformance`).

The ids in paths and bodies are real ones part of the time (schemathesis "dictionaries"), so the
requests get past the 404s into the services. `POST /api/runs` only ever names random agents, so
no team run is started; agents that the fuzzer activates answer with the offline demo model.
Testing an LLM profile is left out: it would send requests to whatever URL the fuzzer wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from core.config import Settings
from core.context import ContextUpdate
from core.llm_profiles import LlmProfileCreate
from core.runs import RunCreate
from core.schemas import AgentCreate, ProjectCreate, WorkspaceCreate
from core.services import build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

MAX_EXAMPLES = 50
SPARE_AGENTS = 6  # the fuzzer deletes agents it is given; keep some for the other operations
APP_ENV = {
    "AGENTDECK_RATE_LIMIT": "off",
    "AGENTDECK_LLM_TIMEOUT": "2",
    # Agents the fuzzer activates answer through whatever profile it wrote: send any request for
    # a non-local host to a closed port, so it fails at once instead of leaving the machine.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def seed(data_dir: Any, database_url: str | None) -> tuple[dict[str, list[str]], str]:
    """A workspace with agents, context versions, messages, a run record, a project and an LLM
    profile; returns the ids by kind and a token of the workspace."""
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        ws = services.workspaces.create(WorkspaceCreate(slug=f"fuzz-{uuid.uuid4().hex[:8]}"))
        project = services.workspaces.create_project(ws.id, ProjectCreate(slug="p", name="P"))
        agents = []
        for n, definition in enumerate(["product-manager", "architect", *["assistant"] * SPARE_AGENTS]):
            agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=f"agent {n}"))
            services.contexts.update(agent.id, ContextUpdate(data={"n": n, "notes": ["x"]}))
            services.messages.append(agent.id, f"message to agent {n}")
            agents.append(agent.id)
        run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=agents[:2], idea="fuzzed idea"))
        profile = services.llm_profiles.create(
            ws.id,
            LlmProfileCreate(
                name="fuzz", api_type="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="sk-fuzz-key"
            ),
        )
        _, secret = services.tokens.create(ws.id, "fuzz")
        ids = {
            "workspaces": [str(ws.id)],
            "projects": [str(project.id)],
            "agents": [str(a) for a in agents],
            "runs": [str(run.id)],
            "profiles": [str(profile.id)],
        }
        return ids, secret
    finally:
        services.db.dispose()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env=APP_ENV) as app:
            ids, secret = seed(data_dir, database_url)
            config = schemathesis.Config.from_dict(
                {
                    "headers": {"Authorization": f"Bearer {secret}"},
                    "generation": {"max-examples": MAX_EXAMPLES, "with-security-parameters": False},
                    "request-timeout": 30,
                    "dictionaries": {kind: {"values": values} for kind, values in ids.items()},
                    "parameters": {
                        "path.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                        "query.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                        "body.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                        "query.project_id": {"dictionary": "projects", "probability": 0.5},
                        "body.project_id": {"dictionary": "projects", "probability": 0.5},
                        "path.agent_id": {"dictionary": "agents", "probability": 0.7},
                        "query.agent_id": {"dictionary": "agents", "probability": 0.5},
                        "path.run_id": {"dictionary": "runs", "probability": 0.7},
                        "query.run_id": {"dictionary": "runs", "probability": 0.5},
                        "path.profile_id": {"dictionary": "profiles", "probability": 0.7},
                    },
                }
            )
            yield schemathesis.openapi.from_url(f"{app.base_url}/openapi.json", config=config)
    finally:
        if database_url:
            drop_pg_database(database_url)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One keep-alive connection for every request, and no look-up of proxies in the environment
    per request: a connection per request and that look-up (requests' defaults) cost the client
    about 0.5 ms a request, a good part of what a small answer costs the app."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's lazy schema reads `node._nodeid`, which pytest 9 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = (
    schemathesis.pytest.from_fixture("api_schema")
    .include(path_regex="^/api/")
    # Testing a profile calls its endpoint, and the fuzzer writes random URLs into profiles: no
    # requests to random hosts from a test. tests/test_api_lifecycle.py covers that route.
    .exclude(method="POST", path="/api/llm-profiles/{profile_id}/test")
)


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    max_examples=MAX_EXAMPLES,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_operation_answers_within_its_schema_and_never_500(
    case: schemathesis.Case, http: requests.Session
) -> None:
    case.call_and_validate(session=http, checks=[not_a_server_error, response_schema_conformance], timeout=30)
