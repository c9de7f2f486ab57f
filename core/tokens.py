"""API tokens (SPEC §8): per workspace, shown once, stored as a SHA-256 hash, revocable.

A secret looks like `adk_<43 url-safe characters>` (256 random bits). Only its hash and its first
characters (`prefix`, so people can tell tokens apart in a list) reach the database; the secret
itself is returned once by `create` and never again.

`authenticate` runs on every API request. A secret it validated is accepted again from this
process's memory for `recheck_seconds` (default 0.5 s) without a database read: the read (and the
thread hop it costs a request) was a large part of a small write's time. Revocation stays
immediate for the caller of `revoke`: it drops the token from its own process's cache at once and
then waits out `recheck_seconds` before returning, so by the time anyone learns that a token is
revoked, no process (another server on the same PostgreSQL, the CLI's server) still trusts a read
made before the revocation committed. Every process of a deployment must use the same setting
(`AGENTDECK_TOKEN_RECHECK_SECONDS`).

The same entries, for `cache_seconds` (default 5 s), tell the rate limiter (`cached(hash)`) a
validated token (its own budget) from anything else (the client address's budget) before any
database work; invalid secrets are never cached. It records `last_used_at` at most once a minute
per token, on a read: the UPDATE is conditional on the stored value being older than that, so
neither many requests nor many processes turn authentication into a write per request.
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
DEFAULT_RECHECK_SECONDS = 0.5
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
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        # Injectable so tests can let a minute pass without sleeping.
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.recheck_seconds = recheck_seconds
        self.monotonic = monotonic
        self.sleep = sleep
        # secret hash -> (token, monotonic time just before the read that validated it)
        self._cache: dict[str, tuple[TokenPublic, float]] = {}
        self._cache_lock = threading.Lock()

    # -- the cache of valid tokens -----------------------------------------------------------
    def cached(self, secret_hash: str) -> TokenPublic | None:
        """The valid token with this secret hash, if this process validated it recently."""
        return self._entry(secret_hash, self.cache_seconds)

    def recall(self, secret: str) -> TokenPublic | None:
        """The token of this secret if a read validated it less than `recheck_seconds` ago: no
        database work, so the API checks it on the event loop before anything else."""
        if not secret or len(secret) > MAX_SECRET_CHARS:
            return None
        return self._entry(hash_secret(secret), min(self.recheck_seconds, self.cache_seconds))

    def _entry(self, secret_hash: str, max_age: float) -> TokenPublic | None:
        with self._cache_lock:
            entry = self._cache.get(secret_hash)
            if entry is None:
                return None
            age = self.monotonic() - entry[1]
            if age >= self.cache_seconds:
                del self._cache[secret_hash]
                return None
            return entry[0] if age < max_age else None

    def _remember(self, secret_hash: str, token: TokenPublic, read_at: float) -> None:
        if self.cache_seconds <= 0:
            return
        with self._cache_lock:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
            self._cache[secret_hash] = (token, read_at)

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
        """Revoke for good. Revoking a revoked token changes nothing and is not an error.

        Returns once no process can still accept the token from its cache (see the module's
        docstring): up to `recheck_seconds` after the revocation committed."""
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
        assert public.revoked_at is not None
        # Also when it was already revoked, by a call that may still be waiting.
        since_revoked = (self.clock() - public.revoked_at).total_seconds()
        wait = min(self.recheck_seconds, self.recheck_seconds - since_revoked)
        if wait > 0:
            self.sleep(wait)
        return public

    def authenticate(self, secret: str) -> TokenPublic:
        """The live token whose secret this is; Unauthorized for anything else."""
        known = self.recall(secret)
        if known is not None:
            return known
        if not secret or len(secret) > MAX_SECRET_CHARS:
            raise Unauthorized("invalid token")
        secret_hash = hash_secret(secret)
        # Taken before the read: an entry never outlives a revocation the read could not see by
        # more than `recheck_seconds`.
        read_at = self.monotonic()
        with self.db.read() as session:
            # A prepared Core statement, not the ORM.
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
        self._remember(secret_hash, token, read_at)
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
