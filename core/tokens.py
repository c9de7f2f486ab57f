"""API tokens (SPEC §8): per workspace, shown once, stored as a SHA-256 hash, revocable.

A secret looks like `adk_<43 url-safe characters>` (256 random bits). Only its hash and its first
characters (`prefix`, so people can tell tokens apart in a list) reach the database; the secret
itself is returned once by `create` and never again.

`authenticate` runs on every API request and always makes its one indexed read, so a revocation
takes effect on the next request in every process (several servers on one PostgreSQL included):
a cache that skipped the read could not know about a revocation made elsewhere without a read.
What is cached (per process, `cache_seconds`, default 5 s) is the fact that a secret was valid:
`cached(hash)` is how the rate limiter tells a validated token (its own budget) from anything
else (the client address's budget) before any database work; invalid secrets are never cached,
and revoking drops the token from this process's cache at once. It records `last_used_at` at most once a minute per token: the UPDATE is
conditional on the stored value being older than that, so neither many requests nor many
processes turn authentication into a write per request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlmodel import col, select

from core.db import Database
from core.errors import InvalidInput, NotFound, Unauthorized
from core.schemas import Name, Public
from storage.models import ApiToken, Workspace
from storage.types import utcnow

SECRET_PREFIX = "adk_"
PREFIX_CHARS = 12
# Secrets are ~47 characters; anything much longer is not one of ours and is not even hashed.
MAX_SECRET_CHARS = 200
LAST_USED_EVERY = timedelta(minutes=1)
MAX_TOKENS_LISTED = 1000
DEFAULT_CACHE_SECONDS = 5.0
MAX_CACHED_TOKENS = 10_000

_name = TypeAdapter(Name)


class TokenPublic(Public):
    """What anyone may see of a token: never its hash, never its secret."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    admin: bool = False

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        # Injectable so tests can let a minute pass without sleeping.
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._cache: dict[str, tuple[TokenPublic, float]] = {}
        self._cache_lock = threading.Lock()

    # -- the cache of valid tokens -----------------------------------------------------------
    def cached(self, secret_hash: str) -> TokenPublic | None:
        """The valid token with this secret hash, if this process validated it recently."""
        with self._cache_lock:
            entry = self._cache.get(secret_hash)
            if entry is None:
                return None
            if entry[1] <= self.monotonic():
                del self._cache[secret_hash]
                return None
            return entry[0]

    def _remember(self, secret_hash: str, token: TokenPublic) -> None:
        if self.cache_seconds <= 0:
            return
        with self._cache_lock:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
            self._cache[secret_hash] = (token, self.monotonic() + self.cache_seconds)

    def _forget(self, token_id: uuid.UUID) -> None:
        with self._cache_lock:
            for key in [k for k, (t, _) in self._cache.items() if t.id == token_id]:
                del self._cache[key]

    def create(self, workspace_id: uuid.UUID, name: str, *, admin: bool = False) -> tuple[TokenPublic, str]:
        """A new token of the workspace and its secret. The secret is not stored: show it now."""
        try:
            name = _name.validate_python(name)
        except ValidationError as exc:
            raise InvalidInput("a token name must have 1 to 200 characters", name=name) from exc
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            row = ApiToken(
                workspace_id=workspace_id,
                name=name,
                token_hash=hash_secret(secret),
                prefix=secret[:PREFIX_CHARS],
                admin=admin,
            )
            session.add(row)
            session.flush()
            return TokenPublic.model_validate(row), secret

    def list(self, workspace_id: uuid.UUID) -> list[TokenPublic]:
        """The workspace's tokens, revoked ones included, oldest first."""
        with self.db.read() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            rows = session.exec(
                select(ApiToken)
                .where(ApiToken.workspace_id == workspace_id)
                .order_by(col(ApiToken.created_at), col(ApiToken.id))
                .limit(MAX_TOKENS_LISTED)
            )
            return [TokenPublic.model_validate(row) for row in rows]

    def get(self, token_id: uuid.UUID, scope: uuid.UUID | None = None) -> TokenPublic:
        with self.db.read() as session:
            row = session.get(ApiToken, token_id)
            if row is None or (scope is not None and row.workspace_id != scope):
                raise NotFound("token", token_id)
            return TokenPublic.model_validate(row)

    def revoke(self, token_id: uuid.UUID, scope: uuid.UUID | None = None) -> TokenPublic:
        """Revoke for good. Revoking a revoked token changes nothing and is not an error."""
        with self.db.write() as session:
            row = session.get(ApiToken, token_id)
            if row is None or (scope is not None and row.workspace_id != scope):
                raise NotFound("token", token_id)
            if row.revoked_at is None:
                row.revoked_at = self.clock()
                session.add(row)
                session.flush()
            public = TokenPublic.model_validate(row)
        self._forget(token_id)
        return public

    def authenticate(self, secret: str) -> TokenPublic:
        """The live token whose secret this is; Unauthorized for anything else."""
        if not secret or len(secret) > MAX_SECRET_CHARS:
            raise Unauthorized("invalid token")
        secret_hash = hash_secret(secret)
        with self.db.read() as session:
            # A prepared Core statement, not the ORM: this read runs on every API request.
            row = session.connection().execute(_BY_HASH, {"token_hash": secret_hash}).first()
        if row is None:
            raise Unauthorized("invalid token")
        token = TokenPublic.model_validate(row._mapping)
        if token.revoked:
            raise Unauthorized("token has been revoked")
        now = self.clock()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
            self._touch(token.id, now)
            token = token.model_copy(update={"last_used_at": now})
        self._remember(secret_hash, token)
        return token

    def _touch(self, token_id: uuid.UUID, now: datetime) -> None:
        # Conditional, so concurrent requests (or processes) write it once per interval at most.
        # updated_at is left alone: being used is not a change of the token.
        stale = sa.or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= now - LAST_USED_EVERY)
        with self.db.write() as session:
            session.exec(
                sa.update(ApiToken)
                .where(col(ApiToken.id) == token_id, stale)
                .values(last_used_at=now, updated_at=ApiToken.updated_at)
            )


_TOKENS = ApiToken.__table__  # type: ignore[attr-defined]
_BY_HASH = sa.select(*(_TOKENS.c[name] for name in TokenPublic.model_fields)).where(
    _TOKENS.c.token_hash == sa.bindparam("token_hash")
)
