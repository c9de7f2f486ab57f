"""Domain errors. Raised in core, mapped to HTTP statuses in one place (api/errors.py) and shown
as messages in the dashboard. Each one means: nothing was written."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can act on."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """The id is unknown, or belongs to another workspace (indistinguishable on purpose)."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found", kind=kind, id=str(ident))


class InvalidInput(DomainError):
    """The request itself is wrong: bad value, bad shape, too large."""


class TooLarge(InvalidInput):
    """Content over a configured size limit."""


class Forbidden(DomainError):
    """The caller is known but may not do this (e.g. a workspace token creating workspaces)."""


class Conflict(DomainError):
    """The request is valid but collides with the current state (duplicate name, race lost)."""


class InvalidTransition(Conflict):
    """A status change the status machine does not allow from the current status."""

    def __init__(self, current: str, target: str, allowed: list[str]) -> None:
        super().__init__(
            f"cannot go from {current!r} to {target!r}; allowed: {', '.join(allowed) or 'none'}",
            current=current,
            target=target,
            allowed=allowed,
        )
        self.current = current
        self.target = target
        self.allowed = allowed


class StaleVersion(Conflict):
    """An expected version (context version or lock_version) that is no longer current."""

    def __init__(self, expected: int, current: int, what: str = "context") -> None:
        super().__init__(
            f"{what} is at version {current}, not {expected}: reload and retry",
            expected=expected,
            current=current,
        )
        self.expected = expected
        self.current = current


class Unauthorized(DomainError):
    """Missing, unknown or revoked credentials."""
