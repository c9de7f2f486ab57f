"""API tokens: shown once, stored hashed, scoped to one workspace, revocable, and cheap to check."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from core.errors import InvalidInput, NotFound, Unauthorized
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.services import Services
from core.tokens import TokenService
from storage.models import ApiToken


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(services: Services, clock: Clock) -> TokenService:
    # No cache here: these tests watch every authentication reach the database (and no other
    # process could hold one, so revoking has no window to wait out).
    return TokenService(services.db, clock=clock, cache_seconds=0, recheck_seconds=0)


@pytest.fixture
def acme(services: Services) -> WorkspacePublic:
    return services.workspaces.create(WorkspaceCreate(slug="acme"))


@pytest.fixture
def globex(services: Services) -> WorkspacePublic:
    return services.workspaces.create(WorkspaceCreate(slug="globex"))


class Statements:
    """The SQL statements an engine executes while counting."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.seen = engine, []  # type: list[str]

    def _record(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.seen.append(statement)

    def __enter__(self) -> list[str]:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


def stored_rows(services: Services) -> list[ApiToken]:
    with services.db.read() as session:
        return list(session.exec(select(ApiToken)))


def test_the_secret_is_returned_once_and_only_its_hash_is_stored(
    services: Services, tokens: TokenService, acme: WorkspacePublic
) -> None:
    token, secret = tokens.create(acme.id, "ci")
    assert secret.startswith("adk_") and len(secret) >= 40
    [row] = stored_rows(services)
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12] == token.prefix
    assert secret not in {str(value) for value in row.model_dump().values()}
    assert set(token.model_dump()) == {
        "id",
        "workspace_id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
        "admin",
    }
    assert token.workspace_id == acme.id and token.name == "ci" and token.revoked_at is None


def test_two_tokens_never_share_a_secret(tokens: TokenService, acme: WorkspacePublic) -> None:
    secrets = {tokens.create(acme.id, "same name")[1] for _ in range(5)}
    assert len(secrets) == 5


def test_authenticate_returns_the_token_and_its_workspace(tokens: TokenService, acme: WorkspacePublic) -> None:
    token, secret = tokens.create(acme.id, "ci")
    seen = tokens.authenticate(secret)
    assert (seen.id, seen.workspace_id, seen.name) == (token.id, acme.id, "ci")


@pytest.mark.parametrize("secret", ["", "adk_not-a-real-token", "x" * 10_000])
def test_an_unknown_secret_is_unauthorized(tokens: TokenService, acme: WorkspacePublic, secret: str) -> None:
    tokens.create(acme.id, "ci")
    with pytest.raises(Unauthorized):
        tokens.authenticate(secret)


def test_a_revoked_token_is_unauthorized_and_revoking_twice_is_fine(
    tokens: TokenService, acme: WorkspacePublic, clock: Clock
) -> None:
    token, secret = tokens.create(acme.id, "ci")
    revoked = tokens.revoke(token.id)
    assert revoked.revoked_at == clock.now
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.authenticate(secret)
    clock.advance(hours=1)
    again = tokens.revoke(token.id, scope=acme.id)
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(Unauthorized):
        tokens.authenticate(secret)


def test_revoking_leaves_the_workspace_other_tokens_working(tokens: TokenService, acme: WorkspacePublic) -> None:
    first, _ = tokens.create(acme.id, "first")
    _, second_secret = tokens.create(acme.id, "second")
    tokens.revoke(first.id)
    assert tokens.authenticate(second_secret).name == "second"


def test_an_unknown_token_or_one_of_another_workspace_cannot_be_revoked(
    tokens: TokenService, acme: WorkspacePublic, globex: WorkspacePublic
) -> None:
    token, secret = tokens.create(acme.id, "ci")
    with pytest.raises(NotFound):
        tokens.revoke(uuid.uuid4())
    with pytest.raises(NotFound):
        tokens.revoke(token.id, scope=globex.id)
    with pytest.raises(NotFound):
        tokens.get(token.id, scope=globex.id)
    assert tokens.authenticate(secret).revoked_at is None


def test_a_workspace_lists_only_its_own_tokens(
    tokens: TokenService, acme: WorkspacePublic, globex: WorkspacePublic
) -> None:
    a1, _ = tokens.create(acme.id, "a1")
    a2, _ = tokens.create(acme.id, "a2")
    g1, g1_secret = tokens.create(globex.id, "g1")
    tokens.revoke(a2.id)
    assert [t.id for t in tokens.list(acme.id)] == [a1.id, a2.id]
    assert [t.id for t in tokens.list(globex.id)] == [g1.id]
    assert tokens.authenticate(g1_secret).workspace_id == globex.id
    with pytest.raises(NotFound):
        tokens.list(uuid.uuid4())


def test_a_token_needs_a_name_and_an_existing_workspace_and_a_refusal_writes_nothing(
    services: Services, tokens: TokenService, acme: WorkspacePublic
) -> None:
    with pytest.raises(InvalidInput):
        tokens.create(acme.id, "   ")
    with pytest.raises(InvalidInput):
        tokens.create(acme.id, "n" * 201)
    with pytest.raises(NotFound):
        tokens.create(uuid.uuid4(), "ci")
    assert stored_rows(services) == []


def test_last_used_at_is_recorded_at_most_once_a_minute(
    services: Services, tokens: TokenService, acme: WorkspacePublic, clock: Clock
) -> None:
    token, secret = tokens.create(acme.id, "ci")
    assert token.last_used_at is None
    first_use = clock.now
    assert tokens.authenticate(secret).last_used_at == first_use
    [row] = stored_rows(services)
    assert row.last_used_at == first_use
    updated_at = row.updated_at

    clock.advance(seconds=59)
    assert tokens.authenticate(secret).last_used_at == first_use
    assert stored_rows(services)[0].last_used_at == first_use

    clock.advance(seconds=1)
    assert tokens.authenticate(secret).last_used_at == clock.now
    [row] = stored_rows(services)
    assert row.last_used_at == clock.now
    # Being used is not a change of the token itself.
    assert row.updated_at == updated_at
    assert tokens.list(acme.id)[0].last_used_at == clock.now


def test_a_validated_token_is_recalled_without_a_read_until_its_recheck_window_ends(
    services: Services, acme: WorkspacePublic
) -> None:
    now = [100.0]
    tokens = TokenService(services.db, recheck_seconds=0.5, monotonic=lambda: now[0])
    token, secret = tokens.create(acme.id, "ci")
    assert tokens.recall(secret) is None, "never validated: not known"
    tokens.authenticate(secret)
    with Statements(services.db.engine) as seen:
        assert tokens.authenticate(secret).id == token.id
        now[0] += 0.49
        assert tokens.recall(secret) is not None and tokens.authenticate(secret).id == token.id
    assert seen == []
    now[0] += 0.01
    with Statements(services.db.engine) as seen:
        assert tokens.recall(secret) is None
        assert tokens.authenticate(secret).id == token.id
    assert any("api_tokens" in statement for statement in seen), "the window is over: read again"
    with Statements(services.db.engine) as seen, pytest.raises(Unauthorized):
        tokens.authenticate(secret + "x")  # an invalid secret is never remembered
    with Statements(services.db.engine) as seen_again, pytest.raises(Unauthorized):
        tokens.authenticate(secret + "x")
    assert seen and seen_again


def test_revoking_waits_out_every_process_recheck_window_so_the_next_request_is_refused_anywhere(
    services: Services, acme: WorkspacePublic, clock: Clock
) -> None:
    now = [100.0]
    server = TokenService(services.db, recheck_seconds=0.5, monotonic=lambda: now[0])  # another process
    waited: list[float] = []

    def wait(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds  # the server's time passes while the revoker waits

    revoker = TokenService(services.db, clock=clock, recheck_seconds=0.5, sleep=wait)
    token, secret = revoker.create(acme.id, "ci")
    server.authenticate(secret)
    revoker.revoke(token.id)
    assert waited == [0.5]
    with pytest.raises(Unauthorized, match="revoked"):
        server.authenticate(secret)  # the very next request, in the process that had it cached
    clock.advance(seconds=0.2)
    revoker.revoke(token.id)  # again while the first may still be waiting: waits the rest
    assert waited == [0.5, pytest.approx(0.3)]
    clock.advance(seconds=1)
    revoker.revoke(token.id)
    assert waited == [0.5, pytest.approx(0.3)], "long revoked: nothing to wait for"
