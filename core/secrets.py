"""Encryption at rest for secrets AgentDeck must give back later (LLM API keys, SPEC §8).

One Fernet key (AES-128-CBC + HMAC-SHA256) per deployment: `Settings.secret_key`
(AGENTDECK_SECRET_KEY) when set — every process of a multi-process deployment needs the same
one — else `<data_dir>/secret.key`, generated on first use with mode 0600. The key is never
logged, never put in an error message and never shown in a repr.

Losing or changing the key makes stored secrets unreadable: decrypting then raises
`SecretKeyChanged`, which says so instead of failing somewhere deep in an LLM call.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.config import Settings
from core.errors import Conflict

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
KEY_FILE_MODE = 0o600
# A secret shorter than this is fully masked: showing 4 of its characters would show too much.
MIN_LEN_FOR_HINT = 12
MASKED = "••••"
# A vendor prefix such as `sk-`, `gsk_` or `xai-` says which service a key is for, not the key.
_VENDOR_PREFIX = re.compile(r"^[A-Za-z]{2,4}[-_]")


class SecretKeyError(Conflict):
    """The secret key is malformed, or not the key a stored secret was encrypted with."""


class SecretKeyChanged(SecretKeyError):
    """A stored secret was encrypted with another key: it cannot be read, only replaced."""


class SecretBox:
    """Encrypts and decrypts short strings with the deployment's key (loaded on first use)."""

    def __init__(self, settings: Settings) -> None:
        self._configured_key = settings.secret_key
        self.key_file = settings.data_dir / KEY_FILE
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretBox(key from {self.key_source})"

    @property
    def key_source(self) -> str:
        """Where the key comes from, for messages (never the key itself)."""
        return "AGENTDECK_SECRET_KEY" if self._configured_key else str(self.key_file)

    def ensure_key(self) -> None:
        """Load (or create) the key now, so a bad key fails at startup rather than mid-request."""
        self._get_fernet()

    def encrypt(self, plain: str) -> str:
        return self._get_fernet().encrypt(plain.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._get_fernet().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise SecretKeyChanged(
                f"a stored secret cannot be decrypted: the secret key ({self.key_source}) is not the one "
                "it was encrypted with. Restore the previous key, or enter the API key again."
            ) from exc

    def _get_fernet(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = self._load()
            return self._fernet

    def _load(self) -> Fernet:
        if self._configured_key:
            return _fernet(self._configured_key.strip(), "AGENTDECK_SECRET_KEY")
        return _fernet(_read_or_create_key_file(self.key_file), str(self.key_file))


def mask(secret: str | None) -> str:
    """What may be shown of a secret: a vendor prefix and at most its last 4 characters.

    `sk-proj-4f9c…7d2a` shows as `sk-…7d2a`; anything shorter than MIN_LEN_FOR_HINT is fully
    masked; no secret gives "".
    """
    if not secret:
        return ""
    if len(secret) < MIN_LEN_FOR_HINT:
        return MASKED
    prefix = _VENDOR_PREFIX.match(secret)
    return f"{prefix.group(0) if prefix else ''}…{secret[-4:]}"


def _fernet(key: str, source: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError as exc:
        # Never echo the value: it is meant to be secret even when it is wrong.
        raise SecretKeyError(
            f"the secret key from {source} is not a valid Fernet key (32 url-safe base64-encoded bytes); "
            'generate one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        ) from exc


def _read_or_create_key_file(path: Path) -> str:
    return read_or_create_secret_file(path, Fernet.generate_key)


def read_or_create_secret_file(path: Path, make: Callable[[], bytes]) -> str:
    """The secret in `path`; if there is none, a new one (`make()`), created 0600.

    The new secret is written to a private temporary file (created 0600, never wider) and
    hard-linked into place, which fails if the file appeared meanwhile: processes starting
    together agree on one secret, and none can read a half-written file.
    """
    if path.exists():
        return _read_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, KEY_FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "wb") as out:
            out.write(make())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
            log.info("generated a new secret in %s", path)
        except FileExistsError:
            pass  # another process got there first: its key is the key
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def _read_key_file(path: Path) -> str:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("%s was readable by other users; restricting it to its owner", path)
        path.chmod(KEY_FILE_MODE)
    key = path.read_text().strip()
    if not key:
        raise SecretKeyError(f"the secret key file {path} is empty; remove it to generate a new key")
    return key
