"""AgentDeck entry point: parse flags, build settings, migrate, wire core + api + ui, serve.

uv run main.py                      # dashboard on http://127.0.0.1:8080, SQLite in ~/.agentdeck
uv run main.py --demo               # ... with a seeded `demo` workspace
uv run main.py workspace create SLUG [--name N]
uv run main.py token create --workspace SLUG [--name N]   # prints the token once
uv run main.py token list --workspace SLUG
uv run main.py token revoke ID
uv run main.py worker [--worker-id ID]     # executes runs and chat answers only (PostgreSQL)
uv run main.py --no-executor              # dashboard + API only; workers execute
uv run main.py --no-resume                # runs left unfinished are marked interrupted, not resumed
uv run main.py export --workspace SLUG --output FILE.agentdeck   # the workspace and its whole history
uv run main.py import FILE.agentdeck [--as NEW_SLUG]             # all or nothing
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import sys
from pathlib import Path

from core.config import Settings

log = logging.getLogger("agentdeck")

NATIVE_WINDOW_SIZE = (1280, 800)


class StartupError(Exception):
    """Startup cannot go on; the message tells the user what to do."""


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Declared on the main parser and on every sub-command so options work before or after it;
    # SUPPRESS on the sub-commands keeps them from overwriting a value given before the command.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--data-dir", default=default, help="data folder (AGENTDECK_DATA_DIR)")
    parser.add_argument("--database-url", default=default, help="database URL (DATABASE_URL)")
    parser.add_argument("--host", default=default, help="address to bind (AGENTDECK_HOST)")
    parser.add_argument("--port", type=int, default=default, help="port (AGENTDECK_PORT)")
    parser.add_argument(
        "--password",
        default=default,
        help="dashboard password (AGENTDECK_PASSWORD; visible to local users: prefer a file)",
    )
    parser.add_argument("--password-file", default=default, help="read the dashboard password from this file")
    parser.add_argument("--native", action="store_true", default=default, help="open a desktop window")
    parser.add_argument("--demo", action="store_true", default=default, help="seed a `demo` workspace")
    parser.add_argument(
        "--worker-id", default=default, help="this process's executor id, unique per live process (AGENTDECK_WORKER_ID)"
    )
    parser.add_argument(
        "--no-executor",
        action="store_true",
        default=default,
        help="serve the dashboard and API but execute no run (AGENTDECK_EXECUTOR=false)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        default=default,
        help="do not resume the runs left unfinished: mark them interrupted (AGENTDECK_RESUME=false)",
    )
    parser.add_argument(
        "--allow-unsandboxed-code",
        action="store_true",
        default=default,
        help="without a working bubblewrap sandbox, still run generated code (with the server's rights)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="AgentDeck: a control room for LLM agents")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command")

    workspace = commands.add_parser("workspace", help="manage workspaces")
    ws_commands = workspace.add_subparsers(dest="action", required=True)
    ws_create = ws_commands.add_parser("create", help="create a workspace")
    ws_create.add_argument("slug")
    ws_create.add_argument("--name")
    _common_options(ws_create, suppress=True)
    ws_list = ws_commands.add_parser("list", help="list workspaces")
    _common_options(ws_list, suppress=True)
    ws_set = ws_commands.add_parser("set", help="change a workspace's settings")
    ws_set.add_argument("slug")
    ws_set.add_argument("--code-execution", choices=["on", "off"], help="run generated code (in the sandbox)")
    _common_options(ws_set, suppress=True)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="action", required=True)
    token_create = token_commands.add_parser("create", help="create a token (printed once)")
    token_create.add_argument("--workspace", required=True, help="workspace slug")
    token_create.add_argument("--name", default="api", help="shown in lists and in the audit trail")
    token_create.add_argument("--admin", action="store_true", help="may also create workspaces over the API")
    _common_options(token_create, suppress=True)
    token_list = token_commands.add_parser("list", help="list a workspace's tokens")
    token_list.add_argument("--workspace", required=True, help="workspace slug")
    _common_options(token_list, suppress=True)
    token_revoke = token_commands.add_parser("revoke", help="revoke a token")
    token_revoke.add_argument("id")
    _common_options(token_revoke, suppress=True)

    worker = commands.add_parser("worker", help="execute team runs and chat answers, without the dashboard")
    _common_options(worker, suppress=True)

    export = commands.add_parser("export", help="export a workspace with its whole history to a bundle")
    export.add_argument("--workspace", required=True, help="workspace slug")
    export.add_argument("--output", required=True, help="bundle file to write, e.g. acme.agentdeck")
    _common_options(export, suppress=True)
    import_ = commands.add_parser("import", help="import a bundle as a new workspace (all or nothing)")
    import_.add_argument("file", help="a .agentdeck bundle")
    import_.add_argument("--as", dest="as_slug", help="slug for the new workspace (default: the bundle's)")
    _common_options(import_, suppress=True)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "data_dir": getattr(args, "data_dir", None),
            "database_url": getattr(args, "database_url", None),
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "password": getattr(args, "password", None),
            "native": getattr(args, "native", None) or None,
            "demo": getattr(args, "demo", None) or None,
            "worker_id": getattr(args, "worker_id", None),
            "executor": False if getattr(args, "no_executor", None) else None,
            "resume": False if getattr(args, "no_resume", None) else None,
            "allow_unsandboxed_code": getattr(args, "allow_unsandboxed_code", None) or None,
        }.items()
        if value is not None
    }
    if getattr(args, "password", None):
        log.warning(
            "--password is visible to every local user in the process list; use AGENTDECK_PASSWORD or "
            "--password-file instead"
        )
    password_file = getattr(args, "password_file", None)
    if password_file:
        try:
            overrides["password"] = Path(password_file).read_text().strip()
        except OSError as exc:
            raise StartupError(f"cannot read the password file {password_file}: {exc.strerror}") from exc
        if not overrides["password"]:
            raise StartupError(f"the password file {password_file} is empty")
    # Keyword arguments take precedence over the environment in pydantic-settings.
    return Settings(**overrides)


def secure_data_dir(settings: Settings) -> None:
    """Everything AgentDeck creates is its owner's only: umask 077, the data dir 0700, and the
    SQLite database (and its journal files) 0600, also when an older version made them wider."""
    os.umask(0o077)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.data_dir.chmod(0o700)
    sqlite = settings.sqlite_path
    if sqlite is not None:
        for path in (sqlite, sqlite.with_name(sqlite.name + "-wal"), sqlite.with_name(sqlite.name + "-shm")):
            if path.exists():
                path.chmod(0o600)


def prepare(settings: Settings):  # type: ignore[no-untyped-def]
    """Create the data dir, migrate the database and build the services. Raises StartupError."""
    from core.db import Database
    from core.registry import sync_definitions
    from core.services import build_services
    from storage.migrate import DatabaseTooNew, upgrade

    secure_data_dir(settings)
    db = Database(settings.resolved_database_url)
    try:
        result = upgrade(db.engine, settings.resolved_database_url, settings.sqlite_path)
    except DatabaseTooNew as exc:
        db.dispose()
        raise StartupError(str(exc)) from exc
    if result.migrated:
        log.info("database migrated %s -> %s", result.from_revision or "empty", result.to_revision)
    secure_data_dir(settings)  # the database file may have just been created
    services = build_services(settings, db)
    sync_definitions(db)
    return services


def check_bind_address(settings: Settings) -> None:
    """SPEC §8: anything but loopback needs a password."""
    host = settings.host
    if host == "localhost":
        return
    # An empty host binds every interface: it counts as non-loopback.
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not settings.password:
        raise StartupError(
            f"Refusing to serve the dashboard on {host} without a password: anyone who can reach "
            "that address could control your agents. Set one with --password or AGENTDECK_PASSWORD, "
            "or bind to 127.0.0.1."
        )


def check_native(settings: Settings) -> None:
    """`--native` needs pywebview and a desktop; say so up front instead of a window that never opens."""
    if not settings.native:
        return
    import importlib.util

    if importlib.util.find_spec("webview") is None:
        raise StartupError(
            "--native needs pywebview and a web view: install them with `uv sync --extra native`, "
            "or leave out --native and open the dashboard in a browser."
        )
    if sys.platform != "linux":
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StartupError("--native needs a desktop session: neither DISPLAY nor WAYLAND_DISPLAY is set.")
    if os.geteuid() == 0 and not os.environ.get("QTWEBENGINE_DISABLE_SANDBOX"):
        # Qt WebEngine's Chromium aborts as root unless its sandbox is turned off.
        raise StartupError(
            "--native as root: the window's web engine (Qt WebEngine) will not run its sandbox as root. "
            "Run AgentDeck as a normal user, or set QTWEBENGINE_DISABLE_SANDBOX=1 to run it unsandboxed."
        )


def storage_secret(settings: Settings) -> str:
    if settings.storage_secret:
        return settings.storage_secret
    from core.secrets import read_or_create_secret_file

    return read_or_create_secret_file(settings.data_dir / "storage_secret", lambda: secrets.token_urlsafe(32).encode())


def serve(settings: Settings) -> None:
    from nicegui import app, ui

    from api.app import install_api
    from ui import agent_page, analytics, auth, board, catalog, inbox, run_page, runs
    from ui import settings as settings_page
    from ui.state import keep_storage_in

    check_bind_address(settings)
    check_native(settings)
    services = prepare(settings)
    # The app carries its services: API routes and middlewares read them from the request's app,
    # dashboard pages from `ui.state.app_services`, and hand them down to what they build.
    app.state.services = services
    check_executor_id(services)
    if settings.demo:
        from core.demo import seed_demo

        seed_demo(services)
    if settings.preload_runtime and not os.environ.get("NICEGUI_USER_SIMULATION"):
        services.runtime.warm_up()

    try:
        install_api(app, settings)
    except ValueError as exc:
        raise StartupError(f"AGENTDECK_RATE_LIMIT: {exc}") from exc
    for page in (board, catalog, settings_page, agent_page, runs, run_page, analytics, inbox):
        app.include_router(page.router)
    app.include_router(auth.router)
    if settings.password:
        auth.install(settings)  # before ui.run, so it runs inside NiceGUI's session middleware
    keep_storage_in(settings.data_dir / "ui-storage")
    if settings.native and sys.platform == "linux":
        # Straight to Qt (the `native` extra): GTK's bindings can't be installed in a virtualenv, and
        # pywebview would print a traceback for trying them first.
        app.native.start_args["gui"] = "qt"
    app.on_startup(services.start)
    app.on_shutdown(services.stop)
    app.on_shutdown(services.db.dispose)

    ui.run(
        host=settings.host,
        port=settings.port,
        title="AgentDeck",
        native=settings.native,
        # NiceGUI's native default (800x600) cuts the board to one column; this is a laptop's screen.
        window_size=NATIVE_WINDOW_SIZE if settings.native else None,
        reload=False,
        show=False,
        storage_secret=storage_secret(settings),
        fastapi_docs=True,
    )


def check_executor_id(services) -> None:  # type: ignore[no-untyped-def]
    """Two live processes must not execute under one id (PostgreSQL; see core/runtime/durable.py)."""
    from core.runtime.durable import ExecutorIdInUse

    try:
        services.runtime.durable.check_executor_id_free()
    except ExecutorIdInUse as exc:
        services.db.dispose()
        raise StartupError(str(exc)) from exc


def run_worker(settings: Settings) -> int:
    """`main.py worker`: executors only. Stops on SIGTERM/SIGINT; what it was executing resumes
    at its next start, or is taken over by another live process (PostgreSQL)."""
    import asyncio
    import signal

    services = prepare(settings)
    if not settings.executor:
        raise StartupError("`worker` executes runs; --no-executor makes no sense with it")
    check_executor_id(services)

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await services.start()
        log.info("worker %s executing (max %d runs at once)", services.runtime.durable.executor_id, settings.max_runs)
        try:
            await stop.wait()
        finally:
            await services.stop()

    try:
        asyncio.run(work())
    finally:
        services.db.dispose()
    return 0


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    from core.errors import DomainError
    from core.schemas import WorkspaceCreate
    from core.workspaces import code_execution_enabled

    services = prepare(settings)
    try:
        if args.command == "workspace" and args.action == "create":
            ws = services.workspaces.create(WorkspaceCreate(slug=args.slug, name=args.name))
            print(f"created workspace {ws.slug} ({ws.id})")
        elif args.command == "workspace" and args.action == "list":
            for ws in services.workspaces.list():
                print(f"{ws.slug}\t{ws.name}\t{ws.id}")
        elif args.command == "workspace" and args.action == "set":
            ws = services.workspaces.get_by_slug(args.slug)
            if args.code_execution is not None:
                ws = services.workspaces.set_code_execution(ws.id, args.code_execution == "on")
            print(f"workspace {ws.slug}: code execution {'on' if code_execution_enabled(ws.settings) else 'off'}")
        elif args.command == "token":
            token_command(args, services)
        elif args.command in {"export", "import"}:
            bundle_command(args, services)
        return 0
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        services.db.dispose()


def token_command(args: argparse.Namespace, services) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from core.errors import InvalidInput

    tokens = services.tokens
    if args.action == "create":
        ws = services.workspaces.get_by_slug(args.workspace)
        token, secret = tokens.create(ws.id, args.name, admin=args.admin)
        # The secret alone on stdout, so `TOKEN=$(uv run main.py token create ...)` works.
        print(f"created token {token.name!r} ({token.id}) in workspace {ws.slug}; copy it now:", file=sys.stderr)
        print(secret)
    elif args.action == "list":
        ws = services.workspaces.get_by_slug(args.workspace)
        for t in tokens.list(ws.id):
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            print(f"{t.id}\t{t.name}\t{t.prefix}…\t{state}\tlast used {used}")
    elif args.action == "revoke":
        try:
            token_id = uuid.UUID(args.id)
        except ValueError as exc:
            raise InvalidInput(f"{args.id!r} is not a token id") from exc
        token = tokens.revoke(token_id)
        print(f"revoked token {token.name!r} ({token.id})")


def bundle_command(args: argparse.Namespace, services) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    if args.command == "export":
        ws = services.workspaces.get_by_slug(args.workspace)
        size = services.bundles.export_to(ws.id, Path(args.output))
        print(f"exported workspace {ws.slug} to {args.output} ({size:,} bytes)")
    else:
        result = services.bundles.import_file(Path(args.file), args.as_slug, actor="system")
        rows = sum(result.rows.values())
        print(f"imported workspace {result.slug} ({result.workspace_id}): {rows:,} rows, {result.files:,} run files")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.version:
        from core.version import VERSION

        print(f"AgentDeck {VERSION}")
        return 0
    try:
        settings = settings_from_args(args)
        if args.command == "worker":
            return run_worker(settings)
        if args.command:
            return run_command(args, settings)
        serve(settings)
        return 0
    except StartupError as exc:
        print(f"AgentDeck cannot start: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    if os.environ.get("NICEGUI_USER_SIMULATION"):
        # NiceGUI's `user` test fixture runs this file in-process; settings come from the env.
        serve(Settings())
    else:
        sys.exit(main())
