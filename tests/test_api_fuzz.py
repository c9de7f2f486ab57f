"""Property-based fuzzing of the whole REST API from its own OpenAPI document (schemathesis).

For every operation, at least `MAX_EXAMPLES` valid and invalid requests are generated from
`/openapi.json` and sent to the real app process with a valid token; then a stateful phase chains
requests along the document's OpenAPI links (a created agent to its routes, a page to the next
page...). Two properties must hold for every answer:
- it is not a server error (`not_a_server_error`);
- it matches the schema the document gives for its status, errors included
  (`response_schema_conformance`).

The ids in paths and bodies are real ones part of the time (schemathesis "dictionaries"), and so
are the cursors: `read_back` walks every keyset list of the seeded data page by page and gives
each list operation its own real `next_cursor`s (`next_since`s for the event log), so pages
beyond the first are requested.
`POST /api/runs` only ever names random agents, so no team run is started; agents that the fuzzer
activates answer with the offline demo model. Testing an LLM profile is left out: it would send
requests to whatever URL the fuzzer wrote.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from core.config import Settings
from core.context import ContextUpdate
from core.llm_profiles import LlmProfileCreate
from core.messages import thread_cursor
from core.run_inputs import InputRequest
from core.runs import RunCreate
from core.schemas import AgentCreate, ProjectCreate, WorkspaceCreate
from core.services import build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

MAX_EXAMPLES = 50
# The stateful phase: scenarios, each a chain of up to STATEFUL_STEPS requests along the links.
STATEFUL_SCENARIOS = 100
STATEFUL_STEPS = 10
CHECKS = [not_a_server_error, response_schema_conformance]
KEPT_AGENTS = 2  # the agents whose lists hold the seeded data: never given to DELETE
SPARE_AGENTS = 6  # the agents DELETE is fuzzed with
PAGES = 4  # real cursors taken from each list: the cursors of its pages 2..PAGES+1
APP_ENV = {
    "AGENTDECK_RATE_LIMIT": "off",
    "AGENTDECK_LLM_TIMEOUT": "2",
    # Agents the fuzzer activates answer through whatever profile it wrote: send any request for
    # a non-local host to a closed port, so it fails at once instead of leaving the machine.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def cursor_parameters(operation: dict[str, Any]) -> set[str]:
    """The query parameters of an OpenAPI operation that take a position in a list: keyset
    cursors, and the event log's integer `since` (the analytics' `since` is a time)."""
    return {
        p["name"]
        for p in operation.get("parameters", [])
        if p["in"] == "query"
        and (
            p["name"] in {"cursor", "before", "after"}
            or (p["name"] == "since" and p["schema"].get("type") == "integer")
        )
    }


@dataclass
class Seed:
    """What the fuzzer draws real values from: ids by kind, and per list operation (its label,
    e.g. "GET /api/runs") the real values of each of its cursor parameters."""

    secret: str
    ids: dict[str, list[str]]
    cursors: dict[str, dict[str, list[str | int]]]


def seed(data_dir: Any, database_url: str | None) -> tuple[dict[str, list[str]], str]:
    """A workspace with agents, context versions, messages, runs with their transcript, requests
    to people and LLM calls, a project and an LLM profile; returns the ids by kind and a token of
    the workspace."""
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        ws = services.workspaces.create(WorkspaceCreate(slug=f"fuzz-{uuid.uuid4().hex[:8]}"))
        project = services.workspaces.create_project(ws.id, ProjectCreate(slug="p", name="P"))
        agents = []
        definitions = ["product-manager", "architect"] + ["assistant"] * (KEPT_AGENTS + SPARE_AGENTS - 2)
        for n, definition in enumerate(definitions):
            agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=f"agent {n}"))
            for version in range(2):
                services.contexts.update(agent.id, ContextUpdate(data={"n": n, "notes": ["x"] * version}))
            for m in range(3):
                services.messages.append(agent.id, f"message {m} to agent {n}")
            agents.append(agent.id)
        for status in ("offline", "idle", "offline", "idle"):
            services.agents.set_status(agents[0], status, reason="seeded")
        runs = [
            services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=agents[:2], idea=f"fuzzed idea {n}")).id
            for n in range(3)
        ]
        inputs, calls = [], []
        for n in range(3):
            services.messages.append(
                agents[n % 2], f"run message {n}", sender="agent", role="assistant", run_id=runs[0]
            )
            request = InputRequest(
                workspace_id=ws.id,
                run_id=runs[0],
                agent_id=agents[0],
                agent_name="agent 0",
                key=f"fuzz-{n}",
                kind="answer",
                round=1,
            )
            inputs.append(services.run_inputs.request(request).id)
            call = services.llm_calls.start(
                ws.id, [{"role": "user", "content": f"call {n}"}], agent_id=agents[0], run_id=runs[0], round=1
            )
            services.llm_calls.finish(call, "ok", response="fine", prompt_tokens=3, completion_tokens=1)
            calls.append(call)
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
            "runs": [str(r) for r in runs],
            "inputs": [str(i) for i in inputs],
            "calls": [str(c) for c in calls],
            "profiles": [str(profile.id)],
        }
        return ids, secret
    finally:
        services.db.dispose()


def walk(
    client: httpx.Client,
    path: str,
    cursor: str = "cursor",
    start: str | int | None = None,
    params: dict[str, str] | None = None,
) -> list[str | int]:
    """The cursors of pages 2..PAGES+1 of a list (and `start`, if given), read a page of one item
    at a time; `since` lists (the event log) continue with `next_since` instead."""
    found: list[str | int] = [] if start is None else [start]
    value = start
    for _ in range(PAGES):
        query: dict[str, str | int] = {**(params or {}), "limit": 1}
        if value is not None:
            query[cursor] = value
        page = client.get(path, params=query)
        assert page.status_code == 200, (path, query, page.text)
        value = page.json()["next_since" if cursor == "since" else "next_cursor"]
        if value is None or value in found:
            break
        found.append(value)
    return found


def read_back(base_url: str, secret: str, ids: dict[str, list[str]]) -> Seed:
    """The seed as the API gives it back: the catalog's definitions, the templates and, per list
    operation, the real values of its cursor parameters, read from the lists."""
    agent, run = ids["agents"][0], ids["runs"][0]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        definitions = [d["slug"] for d in client.get("/api/agents/definitions").json()]
        templates = [t["slug"] for t in client.get("/api/templates").json()]
        cursors: dict[str, dict[str, list[str | int]]] = {
            "GET /api/agents": {"cursor": walk(client, "/api/agents")},
            "GET /api/agents/{agent_id}/status/history": {
                "cursor": walk(client, f"/api/agents/{agent}/status/history")
            },
            "GET /api/agents/{agent_id}/context/versions": {
                "cursor": walk(client, f"/api/agents/{agent}/context/versions")
            },
            "GET /api/agents/{agent_id}/messages": {
                "before": walk(client, f"/api/agents/{agent}/messages", "before"),
                "after": walk(client, f"/api/agents/{agent}/messages", "after", start=thread_cursor(0)),
            },
            "GET /api/agents/{agent_id}/llm-calls": {"cursor": walk(client, f"/api/agents/{agent}/llm-calls")},
            "GET /api/messages/search": {"cursor": walk(client, "/api/messages/search", params={"q": "message"})},
            "GET /api/runs": {"cursor": walk(client, "/api/runs")},
            "GET /api/runs/{run_id}/messages": {"cursor": walk(client, f"/api/runs/{run}/messages")},
            "GET /api/runs/{run_id}/inputs": {"cursor": walk(client, f"/api/runs/{run}/inputs")},
            "GET /api/runs/{run_id}/llm-calls": {"cursor": walk(client, f"/api/runs/{run}/llm-calls")},
            "GET /api/events": {"since": walk(client, "/api/events", "since")},
        }
    return Seed(secret=secret, ids={**ids, "definitions": definitions, "templates": templates}, cursors=cursors)


def fuzz_config(seeded: Seed) -> schemathesis.Config:
    """Real ids and cursors part of the time; everything else generated."""
    agents = seeded.ids["agents"]
    ids: dict[str, list[str | int]] = {
        **seeded.ids,
        "kept-agents": [*agents[:KEPT_AGENTS]],
        "spare-agents": [*agents[KEPT_AGENTS:]],
        "versions": [1, 2, 3],
    }
    dictionaries: dict[str, dict[str, list[str | int]]] = {kind: {"values": values} for kind, values in ids.items()}
    operations: list[dict[str, Any]] = [
        {
            "include-name": "DELETE /api/agents/{agent_id}",
            "parameters": {"path.agent_id": {"dictionary": "spare-agents", "probability": 0.7}},
        }
    ]
    for label, parameters in seeded.cursors.items():
        bindings = {}
        for parameter, values in parameters.items():
            name = f"{label} {parameter}"
            dictionaries[name] = {"values": values}
            bindings[f"query.{parameter}"] = {"dictionary": name, "probability": 0.6}
        if "{agent_id}" in label:
            # The seeded agents' own lists, so that their cursors lead into pages with data.
            bindings["path.agent_id"] = {"dictionary": "kept-agents", "probability": 0.7}
        operations.append({"include-name": label, "parameters": bindings})
    return schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {seeded.secret}"},
            "generation": {"max-examples": MAX_EXAMPLES, "with-security-parameters": False},
            "request-timeout": 30,
            "dictionaries": dictionaries,
            "parameters": {
                "path.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                "query.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                "body.workspace_id": {"dictionary": "workspaces", "probability": 0.7},
                "query.project_id": {"dictionary": "projects", "probability": 0.5},
                "body.project_id": {"dictionary": "projects", "probability": 0.5},
                "path.agent_id": {"dictionary": "agents", "probability": 0.7},
                "query.agent_id": {"dictionary": "agents", "probability": 0.5},
                "body.definition": {"dictionary": "definitions", "probability": 0.7},
                "path.run_id": {"dictionary": "runs", "probability": 0.7},
                "query.run_id": {"dictionary": "runs", "probability": 0.5},
                "body.run_id": {"dictionary": "runs", "probability": 0.5},
                "path.input_id": {"dictionary": "inputs", "probability": 0.6},
                "path.call_id": {"dictionary": "calls", "probability": 0.7},
                "path.profile_id": {"dictionary": "profiles", "probability": 0.7},
                "path.slug": {"dictionary": "templates", "probability": 0.5},
                "path.version": {"dictionary": "versions", "probability": 0.5},
            },
            "operations": operations,
            # The stateful phase follows the links the document declares: links schemathesis would
            # infer from names add dozens of operations that start chains with random ids instead.
            "phases": {"stateful": {"inference": {"algorithms": []}}},
        }
    )


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, Seed]]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env=APP_ENV) as app:
            ids, secret = seed(data_dir, database_url)
            yield app, read_back(app.base_url, secret, ids)
    finally:
        if database_url:
            drop_pg_database(database_url)


@pytest.fixture(scope="module")
def api_schema(seeded_app: tuple[AppProcess, Seed]) -> Any:
    app, seeded = seeded_app
    return schemathesis.openapi.from_url(f"{app.base_url}/openapi.json", config=fuzz_config(seeded))


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


def fuzzed(schema: Any) -> Any:
    """The operations under test: the whole API but testing a profile (it calls the profile's
    endpoint, and the fuzzer writes random URLs into profiles: no requests to random hosts from a
    test; tests/test_api_lifecycle.py covers that route)."""
    return schema.include(path_regex="^/api/").exclude(method="POST", path="/api/llm-profiles/{profile_id}/test")


schema = fuzzed(schemathesis.pytest.from_fixture("api_schema"))


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
    case.call_and_validate(session=http, checks=CHECKS, timeout=30)


def test_every_list_is_fuzzed_with_real_cursors_of_later_pages(
    api_schema: Any, seeded_app: tuple[AppProcess, Seed]
) -> None:
    """Each operation with a cursor parameter has real values for it, from pages after the
    first: a new list without them fails here instead of being fuzzed with garbage cursors only."""
    _, seeded = seeded_app
    paged = {
        f"{method.upper()} {path}": cursor_parameters(operation)
        for path, methods in api_schema.raw_schema["paths"].items()
        for method, operation in methods.items()
    }
    paged = {label: parameters for label, parameters in paged.items() if parameters}
    assert set(paged) == set(seeded.cursors)
    for label, parameters in paged.items():
        assert set(seeded.cursors[label]) == parameters, label
        for parameter, values in seeded.cursors[label].items():
            assert len(values) >= 2, (label, parameter, values)


# The links the stateful phase follows (source operation, status, link name, target operation).
# Each is in /openapi.json: removing one from a route fails this list.
EXPECTED_LINKS = [
    ("POST /api/agents", "201", "GetAgent", "GET /api/agents/{agent_id}"),
    ("POST /api/agents", "201", "UpdateAgent", "PATCH /api/agents/{agent_id}"),
    ("POST /api/agents", "201", "DeleteAgent", "DELETE /api/agents/{agent_id}"),
    ("POST /api/agents", "201", "ActivateAgent", "POST /api/agents/{agent_id}/activate"),
    ("POST /api/agents", "201", "ChangeStatus", "POST /api/agents/{agent_id}/status"),
    ("POST /api/agents", "201", "UpdateContext", "POST /api/agents/{agent_id}/context"),
    ("POST /api/agents", "201", "SendMessage", "POST /api/agents/{agent_id}/messages"),
    ("POST /api/agents", "201", "Messages", "GET /api/agents/{agent_id}/messages"),
    ("POST /api/agents", "201", "ContextVersions", "GET /api/agents/{agent_id}/context/versions"),
    ("POST /api/agents", "201", "LlmCalls", "GET /api/agents/{agent_id}/llm-calls"),
    ("GET /api/agents", "200", "GetAgent", "GET /api/agents/{agent_id}"),
    ("GET /api/agents/definitions", "200", "CreateAgent", "POST /api/agents"),
    ("GET /api/workspaces", "200", "CreateAgent", "POST /api/agents"),
    ("GET /api/workspaces", "200", "GetWorkspace", "GET /api/workspaces/{workspace_id}"),
    ("POST /api/workspaces/{workspace_id}/projects", "201", "CreateAgent", "POST /api/agents"),
    (
        "POST /api/agents/{agent_id}/context",
        "200",
        "GetVersion",
        "GET /api/agents/{agent_id}/context/versions/{version}",
    ),
    ("POST /api/runs", "202", "GetRun", "GET /api/runs/{run_id}"),
    ("POST /api/runs", "202", "CancelRun", "POST /api/runs/{run_id}/cancel"),
    ("POST /api/runs", "202", "RunMessages", "GET /api/runs/{run_id}/messages"),
    ("POST /api/runs/{run_id}/fork", "202", "GetRun", "GET /api/runs/{run_id}"),
    ("POST /api/runs/{run_id}/resume", "202", "GetRun", "GET /api/runs/{run_id}"),
    ("GET /api/runs", "200", "GetRun", "GET /api/runs/{run_id}"),
    ("GET /api/runs/{run_id}/files", "200", "ReadFile", "GET /api/runs/{run_id}/files/{file_path}"),
    ("GET /api/runs/{run_id}/inputs", "200", "AnswerInput", "POST /api/runs/{run_id}/inputs/{input_id}"),
    ("GET /api/inputs", "200", "AnswerInput", "POST /api/inputs/{input_id}"),
    ("GET /api/agents/{agent_id}/llm-calls", "200", "GetCall", "GET /api/llm-calls/{call_id}"),
    ("GET /api/runs/{run_id}/llm-calls", "200", "GetCall", "GET /api/llm-calls/{call_id}"),
    (
        "POST /api/workspaces/{workspace_id}/llm-profiles",
        "201",
        "UpdateProfile",
        "PATCH /api/llm-profiles/{profile_id}",
    ),
    (
        "POST /api/workspaces/{workspace_id}/llm-profiles",
        "201",
        "DeleteProfile",
        "DELETE /api/llm-profiles/{profile_id}",
    ),
    ("POST /api/templates", "201", "Instantiate", "POST /api/templates/{slug}/instantiate"),
    ("POST /api/templates", "201", "DeleteTemplate", "DELETE /api/templates/{slug}"),
    ("GET /api/templates", "200", "Instantiate", "POST /api/templates/{slug}/instantiate"),
    ("POST /api/templates/{slug}/instantiate", "201", "GetAgent", "GET /api/agents/{agent_id}"),
    ("GET /api/agents/{agent_id}/messages", "200", "OlderMessages", "GET /api/agents/{agent_id}/messages"),
    ("GET /api/agents/{agent_id}/messages", "200", "NewerMessages", "GET /api/agents/{agent_id}/messages"),
    ("GET /api/events", "200", "NextPage", "GET /api/events"),
]


def operation_ref(label: str) -> str:
    method, path = label.split(" ", 1)
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()


def test_openapi_links_lead_to_real_operations_and_pages_to_their_next_page(api_schema: Any) -> None:
    document = api_schema.raw_schema
    paths = document["paths"]
    links = {
        (f"{method.upper()} {path}", status, name): link
        for path, methods in paths.items()
        for method, operation in methods.items()
        for status, response in operation["responses"].items()
        for name, link in response.get("links", {}).items()
    }
    for source, status, name, target in EXPECTED_LINKS:
        assert links[(source, status, name)]["operationRef"] == operation_ref(target), (source, name)
    # Every link resolves to an operation of this document, and names only parameters it has.
    for (source, _, name), link in links.items():
        match = re.fullmatch(r"#/paths/(.+)/(get|post|put|patch|delete)", link["operationRef"])
        assert match, link
        path = match.group(1).replace("~1", "/").replace("~0", "~")
        target = paths[path][match.group(2)]
        known = {p["name"] for p in target.get("parameters", [])}
        assert set(link["parameters"]) <= known, (source, name, set(link["parameters"]) - known)
        if "requestBody" in link:
            body = target["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert set(link["requestBody"]) <= set(document["components"]["schemas"][body]["properties"]), name
    # A keyset page leads to the next one: its `next_cursor` back into the same operation.
    for path, methods in paths.items():
        for method, operation in methods.items():
            label = f"{method.upper()} {path}"
            cursors = cursor_parameters(operation) - {"after", "since"}
            if cursors:
                following = [
                    link
                    for (source, status, _), link in links.items()
                    if source == label and status == "200" and link["operationRef"] == operation_ref(label)
                ]
                assert any(
                    link["parameters"].get(c) == "$response.body#/next_cursor" for link in following for c in cursors
                ), label


def test_chains_of_requests_along_the_links_answer_within_their_schemas_and_never_500(
    api_schema: Any, http: requests.Session
) -> None:
    """The stateful phase: scenarios that start at the operations that produce something (lists,
    creations) and follow the document's links with the values the answers carried."""
    machine = fuzzed(api_schema).as_state_machine()

    class Workflow(machine):  # type: ignore[misc, valid-type]
        scenarios = 0
        failures: list[str] = []

        def step(self, input: Any) -> Any:
            try:
                return super().step(input)
            except Exception as exc:
                # Kept here too: Hypothesis may lose it when replaying the scenario (see below).
                Workflow.failures.append(f"{input.case.operation.label}: {exc}")
                raise

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"session": http, "timeout": 30}

        def validate_response(
            self, response: Any, case: schemathesis.Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs, recorder=self.recorder)

        def teardown(self) -> None:
            Workflow.scenarios += 1
            super().teardown()

    settings = hypothesis.settings(
        stateful_step_count=STATEFUL_STEPS,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        database=None,
        phases=[hypothesis.Phase.generate],
    )
    # The API keeps what earlier scenarios did (a name taken, an agent deleted), so Hypothesis can
    # see a prefix it explored before lead elsewhere and stop with FlakyStrategyDefinition: that is
    # no failure of the API, so the remaining scenarios run again from the next seed. A check that
    # failed is reported all the same, by Hypothesis or from `failures`.
    for attempt in range(20):
        remaining = STATEFUL_SCENARIOS - Workflow.scenarios
        if remaining <= 0:
            break
        try:
            hypothesis.seed(attempt)(Workflow).run(settings=hypothesis.settings(settings, max_examples=remaining))
        except FlakyStrategyDefinition:
            continue
        break
    assert not Workflow.failures, "\n\n".join(Workflow.failures)
    assert Workflow.scenarios >= STATEFUL_SCENARIOS
