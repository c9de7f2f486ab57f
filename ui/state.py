"""Where a page finds the services, and per-user dashboard state: which workspace the person is
looking at (SPEC §11).

Each page handler calls `app_services()` once and passes the services to everything it builds
(components, dialogs, helpers, event handlers): nothing below a page looks them up.

The workspace choice lives in `app.storage.user` (server-side, keyed by the signed session
cookie), so it follows the person across tabs and reloads. Pages call
`current_workspace(services)` and scope every service call with its id.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from nicegui import app
from nicegui.storage import Storage

from core.errors import Conflict, NotFound
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.services import Services

ACTOR = "user"  # who the dashboard's changes are recorded as (docs/conventions.md: actor strings)

WORKSPACE_KEY = "workspace_id"
DEFAULT_SLUG = "default"


def app_services() -> Services:
    """The services of the running app (main.py's `serve` puts them in the app's state).

    For page handlers and the dashboard's own routes only, once per request.
    """
    services: Services = app.state.services
    return services


def current_workspace(services: Services) -> WorkspacePublic:
    """The workspace chosen by this user; else the first one; else a new `default` workspace.

    A stored id that no longer exists (the workspace was deleted) falls back the same way.
    Must be called in a UI context (page builder or event handler), not in a worker thread.
    """
    workspaces = services.workspaces
    stored = app.storage.user.get(WORKSPACE_KEY)
    if stored:
        try:
            return workspaces.get(uuid.UUID(str(stored)))
        except (NotFound, ValueError):
            pass
    listed = workspaces.list()
    workspace = listed[0] if listed else _ensure_default(services)
    set_current_workspace(workspace.id)
    return workspace


def keep_storage_in(directory: Path) -> None:
    """Keep `app.storage.user` files in AgentDeck's data dir, not NiceGUI's default `./.nicegui`
    of whatever directory the app was started from. Call before `ui.run`.

    NICEGUI_STORAGE_PATH (or Redis) still wins, and the `user` test fixture's own temp dir is kept.
    """
    if os.environ.get("NICEGUI_STORAGE_PATH") or os.environ.get("NICEGUI_USER_SIMULATION"):
        return
    Storage.path = directory.resolve()
    app.storage = Storage()  # its persistent dicts take the path when they are created


def set_current_workspace(workspace_id: uuid.UUID | str) -> None:
    app.storage.user[WORKSPACE_KEY] = str(workspace_id)


def _ensure_default(services: Services) -> WorkspacePublic:
    """A new user on an empty database lands in a `default` workspace instead of nowhere."""
    workspaces = services.workspaces
    try:
        return workspaces.create(WorkspaceCreate(slug=DEFAULT_SLUG, name="Default"))
    except Conflict:  # another tab or user created it a moment ago
        return workspaces.get_by_slug(DEFAULT_SLUG)
