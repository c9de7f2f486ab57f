"""LLM profiles (SPEC §2, §8, §9): which model a workspace's agents talk to, and with which key.

Rules:
- A profile belongs to one workspace; its name is unique there. `api_type` is one of MetaGPT
  0.8.2's api_types (any OpenAI-compatible server — Ollama, vLLM, LM Studio — is `openai` with
  a `base_url`); `base_url`, when given, is an http(s) URL without credentials in it.
- At most one profile per workspace is the default. Making one the default clears the others in
  the same transaction; the first profile of a workspace becomes the default by itself. Deleting
  or un-defaulting the default leaves the workspace without one: its runs use the offline demo
  model until another profile is made the default.
- The API key is write-only. It is encrypted (core.secrets) before the write transaction and
  only the Fernet token reaches the database; nothing this module returns, logs or raises
  contains it. `LlmProfilePublic` says whether there is a key and shows a masked hint.
- `resolve` is how the runtime gets a usable profile, with the key decrypted: the named one, the
  workspace's default, or None for the offline demo model.
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, Field, SecretStr, StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound
from core.schemas import Name, Public
from core.secrets import MASKED, SecretBox, SecretKeyChanged, mask
from core.validation import NoNul
from storage.models import LlmProfile, Workspace
from storage.types import utcnow

# The values of MetaGPT 0.8.2's `metagpt.configs.llm_config.LLMType`, copied so that core need not
# import metagpt (only core/runtime/ may). tests/test_llm_profiles.py checks they still match.
LLM_API_TYPES: tuple[str, ...] = (
    "openai",
    "anthropic",
    "claude",  # MetaGPT's alias of anthropic
    "spark",
    "zhipuai",
    "fireworks",
    "open_llm",
    "gemini",
    "metagpt",
    "azure",
    "ollama",  # /chat of the Ollama API
    "ollama.generate",
    "ollama.embeddings",
    "ollama.embed",
    "qianfan",
    "dashscope",
    "moonshot",
    "mistral",
    "yi",
    "openrouter",
    "bedrock",
    "ark",
)
MAX_API_KEY_CHARS = 4096
MAX_PROFILES_LISTED = 1000

ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
BaseUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NoNul]

_API_TYPE_DOC = "a MetaGPT api_type; any OpenAI-compatible server (Ollama, vLLM, LM Studio) is `openai` + base_url"
# SecretStr: the key shows as '**********' in reprs, logs and dumps. Its length is checked by
# the service, because a pydantic length error would echo the value.
_API_KEY_DOC = "write-only: stored encrypted, never returned"


class LlmProfileCreate(BaseModel):
    name: Name
    api_type: str = Field(description=_API_TYPE_DOC, json_schema_extra={"enum": list(LLM_API_TYPES)})
    model: ModelName
    base_url: BaseUrl | None = Field(default=None, description="http(s) URL of the endpoint; empty = the default")
    api_key: SecretStr | None = Field(default=None, description=_API_KEY_DOC, json_schema_extra={"writeOnly": True})
    is_default: bool = Field(default=False, description="the first profile of a workspace is the default anyway")


class LlmProfileUpdate(BaseModel):
    """Fields left out (or null) keep their value. `base_url: ""` and `api_key: ""` clear them.
    Changing `base_url` or `api_type` without sending `api_key` clears the stored key: a key is
    never sent to an endpoint other than the one it was given for."""

    name: Name | None = None
    api_type: str | None = Field(default=None, description=_API_TYPE_DOC)
    model: ModelName | None = None
    base_url: BaseUrl | None = None
    api_key: SecretStr | None = Field(
        default=None, description=_API_KEY_DOC + '; "" removes the key', json_schema_extra={"writeOnly": True}
    )
    is_default: bool | None = Field(default=None, description="false leaves the workspace without a default")


class LlmProfilePublic(Public):
    """What anyone may see of a profile: never the key, only whether there is one and its hint."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    api_type: str
    model: str
    base_url: str | None
    has_api_key: bool
    api_key_hint: str | None = Field(description="e.g. `sk-…abcd`; null without a key")
    is_default: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ResolvedLlm:
    """A profile ready for the runtime, key decrypted. Its repr leaves the key out."""

    name: str
    api_type: str
    model: str
    base_url: str
    api_key: str = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.api_type} · {self.model} (profile: {self.name})"

    def llm_config(self) -> dict[str, Any]:
        """Keyword arguments for MetaGPT's `LLMConfig`. An empty base_url or key is left out so
        MetaGPT's defaults apply (its validator refuses an empty api_key)."""
        config: dict[str, Any] = {"api_type": self.api_type, "model": self.model}
        if self.base_url:
            config["base_url"] = self.base_url
        if self.api_key:
            config["api_key"] = self.api_key
        return config


@dataclass(frozen=True)
class EndpointPolicy:
    """Where a profile's base_url may point (SSRF: a token holder chooses it, the server calls it).

    Link-local addresses (169.254.0.0/16 — cloud metadata — and fe80::/10) and unique-local IPv6
    (fc00::/7, e.g. fd00:ec2::254) are never allowed. Private and loopback addresses are allowed
    when the server itself is bound to loopback (a laptop's Ollama), otherwise only with
    AGENTDECK_ALLOW_PRIVATE_LLM=1."""

    loopback_bind: bool = True
    allow_private: bool = False

    def check(self, url: str) -> None:
        if not url:
            return
        host = urlsplit(url).hostname or ""
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return  # unresolvable: the request will fail on its own, reaching nobody
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if address.is_link_local or address in _UNIQUE_LOCAL or address.is_multicast or address.is_unspecified:
                raise InvalidInput(
                    f"base_url {host!r} resolves to {address}, a link-local or metadata address", field="base_url"
                )
            if (address.is_private or address.is_loopback) and not (self.loopback_bind or self.allow_private):
                raise InvalidInput(
                    f"base_url {host!r} resolves to the private address {address}; set "
                    "AGENTDECK_ALLOW_PRIVATE_LLM=1 to allow private endpoints on this server",
                    field="base_url",
                )


_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class LlmProfileService:
    def __init__(self, db: Database, box: SecretBox, policy: EndpointPolicy | None = None) -> None:
        self.db = db
        self.box = box
        self.policy = policy or EndpointPolicy()

    def create(self, workspace_id: uuid.UUID, data: LlmProfileCreate) -> LlmProfilePublic:
        api_type = _check_api_type(data.api_type)
        base_url = _check_base_url(data.base_url)
        self.policy.check(base_url)
        plain_key = _check_api_key(data.api_key)
        # Encrypting may create the key file: I/O stays outside the write transaction.
        encrypted = self.box.encrypt(plain_key) if plain_key else ""
        try:
            with self.db.write() as session:
                if session.get(Workspace, workspace_id) is None:
                    raise NotFound("workspace", workspace_id)
                _check_name_free(session, workspace_id, data.name)
                first = _profile_count(session, workspace_id) == 0
                row = LlmProfile(
                    workspace_id=workspace_id,
                    name=data.name,
                    api_type=api_type,
                    model=data.model,
                    base_url=base_url,
                    api_key_encrypted=encrypted,
                    is_default=data.is_default or first,
                )
                if row.is_default:
                    _clear_other_defaults(session, row)
                session.add(row)
                session.flush()
                return _to_public(row, mask(plain_key) if plain_key else None)
        except IntegrityError as exc:
            raise _name_taken(data.name) from exc

    def list(self, workspace_id: uuid.UUID) -> list[LlmProfilePublic]:
        """The workspace's profiles by name."""
        with self.db.read() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            rows = session.exec(
                select(LlmProfile)
                .where(LlmProfile.workspace_id == workspace_id)
                .order_by(col(LlmProfile.name), col(LlmProfile.id))
                .limit(MAX_PROFILES_LISTED)
            )
            return [_to_public(row, self._hint(row)) for row in rows]

    def get(self, profile_id: uuid.UUID, scope: uuid.UUID | None = None) -> LlmProfilePublic:
        with self.db.read() as session:
            row = _get_row(session, profile_id, scope)
            return _to_public(row, self._hint(row))

    def update(self, profile_id: uuid.UUID, data: LlmProfileUpdate, scope: uuid.UUID | None = None) -> LlmProfilePublic:
        api_type = _check_api_type(data.api_type) if data.api_type is not None else None
        base_url = _check_base_url(data.base_url) if data.base_url is not None else None
        if base_url:
            self.policy.check(base_url)
        plain_key = _check_api_key(data.api_key) if data.api_key is not None else None
        encrypted = self.box.encrypt(plain_key) if plain_key else plain_key
        try:
            with self.db.write() as session:
                row = _get_row(session, profile_id, scope)
                if data.name is not None and data.name != row.name:
                    _check_name_free(session, row.workspace_id, data.name)
                    row.name = data.name
                moved = (api_type is not None and api_type != row.api_type) or (
                    base_url is not None and base_url != row.base_url
                )
                if api_type is not None:
                    row.api_type = api_type
                if data.model is not None:
                    row.model = data.model
                if base_url is not None:
                    row.base_url = base_url
                if encrypted is not None:
                    row.api_key_encrypted = encrypted
                elif moved:
                    # The key was given for the old endpoint: never send it to a new one.
                    row.api_key_encrypted = ""
                    plain_key = ""
                if data.is_default is not None:
                    if data.is_default and not row.is_default:
                        _clear_other_defaults(session, row)
                    row.is_default = data.is_default
                session.add(row)
                session.flush()
                hint = self._hint(row) if plain_key is None else (mask(plain_key) if plain_key else None)
                return _to_public(row, hint)
        except IntegrityError as exc:
            raise _name_taken(data.name or "") from exc

    def delete(self, profile_id: uuid.UUID, scope: uuid.UUID | None = None) -> None:
        with self.db.write() as session:
            session.delete(_get_row(session, profile_id, scope))

    def resolve(self, workspace_id: uuid.UUID, name: str | None = None) -> ResolvedLlm | None:
        """The profile called `name` (NotFound if the workspace has none), or without a name the
        workspace's default, or None: no default, so the offline demo model.

        Raises SecretKeyChanged if the stored key was encrypted with another secret key.
        """
        with self.db.read() as session:
            stmt = select(LlmProfile).where(LlmProfile.workspace_id == workspace_id)
            if name:
                row = session.exec(stmt.where(LlmProfile.name == name)).first()
                if row is None:
                    raise NotFound("llm profile", name)
            else:
                row = session.exec(stmt.where(col(LlmProfile.is_default).is_(True))).first()
                if row is None:
                    return None
        return ResolvedLlm(
            name=row.name,
            api_type=row.api_type,
            model=row.model,
            base_url=row.base_url,
            api_key=self.box.decrypt(row.api_key_encrypted) if row.api_key_encrypted else "",
        )

    def _hint(self, row: LlmProfile) -> str | None:
        """The masked key. The plain key lives only inside this function.

        A key encrypted under another secret key is still shown as present (fully masked), so
        the profile stays listable and the user can enter the key again; `resolve` is what says
        the key changed.
        """
        if not row.api_key_encrypted:
            return None
        try:
            return mask(self.box.decrypt(row.api_key_encrypted))
        except SecretKeyChanged:
            return MASKED


def _to_public(row: LlmProfile, hint: str | None) -> LlmProfilePublic:
    return LlmProfilePublic(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        api_type=row.api_type,
        model=row.model,
        base_url=row.base_url or None,
        has_api_key=bool(row.api_key_encrypted),
        api_key_hint=hint,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _get_row(session: Session, profile_id: uuid.UUID, scope: uuid.UUID | None) -> LlmProfile:
    """The profile, or NotFound — also when it belongs to a workspace other than `scope`."""
    row = session.get(LlmProfile, profile_id)
    if row is None or (scope is not None and row.workspace_id != scope):
        raise NotFound("llm profile", profile_id)
    return row


def _check_api_type(api_type: str) -> str:
    if api_type not in LLM_API_TYPES:
        raise InvalidInput(
            f"unknown api_type {api_type[:64]!r}; expected one of: {', '.join(LLM_API_TYPES)}",
            allowed=list(LLM_API_TYPES),
            field="api_type",
        )
    return api_type


def _check_base_url(url: str | None) -> str:
    """ "" for no URL, else an http(s) URL with a host and no user:password in it."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise InvalidInput(f"base_url {url[:200]!r} is not a valid URL", field="base_url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidInput(
            f"base_url must be an http:// or https:// URL with a host, not {url[:200]!r}", field="base_url"
        )
    if parts.username is not None or parts.password is not None:
        # The URL is shown to everyone; a credential belongs in api_key, which is encrypted.
        raise InvalidInput("base_url must not contain credentials: put the key in api_key", field="base_url")
    return url


def _check_api_key(key: SecretStr | None) -> str:
    """The key without surrounding whitespace (pasted keys often end in a newline); "" = none."""
    plain = key.get_secret_value().strip() if key is not None else ""
    if len(plain) > MAX_API_KEY_CHARS:
        raise InvalidInput(f"api_key is longer than {MAX_API_KEY_CHARS} characters", field="api_key")
    return plain


def _check_name_free(session: Session, workspace_id: uuid.UUID, name: str) -> None:
    taken = session.exec(
        select(LlmProfile.id).where(LlmProfile.workspace_id == workspace_id, LlmProfile.name == name)
    ).first()
    if taken is not None:
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"an LLM profile named {name!r} already exists in this workspace", name=name)


def _profile_count(session: Session, workspace_id: uuid.UUID) -> int:
    return session.exec(
        select(sa.func.count()).select_from(LlmProfile).where(LlmProfile.workspace_id == workspace_id)
    ).one()


def _clear_other_defaults(session: Session, row: LlmProfile) -> None:
    # Writers are serialized database-wide (storage/db.py), so this and the caller's write of
    # `row` leave exactly one default even when two requests race.
    session.execute(
        sa.update(LlmProfile)
        .where(
            col(LlmProfile.workspace_id) == row.workspace_id,
            col(LlmProfile.id) != row.id,
            col(LlmProfile.is_default).is_(True),
        )
        .values(is_default=False, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
