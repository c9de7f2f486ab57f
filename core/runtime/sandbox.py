"""Running the code a team run generates, inside a bubblewrap sandbox.

MetaGPT's QaEngineer installs the generated `requirements.txt` (plus pytest) and runs the tests
it wrote. That code was written by an LLM the token holder chose, so it is hostile. Here it runs
under bubblewrap (`bwrap`, Debian package `bubblewrap`), two steps per test run:

1. **install**: `python -m pip install --only-binary=:all:` of the requirement lines that are plain
   `name[extras] <op> version` specifiers, from the package index only (the operator's
   `AGENTDECK_PIP_INDEX_URL`, else pip's default). URLs, paths, `-e`, `-r`, `--index-url`,
   `--extra-index-url` and every other option line are refused and recorded. This step has the
   network (pip needs the index) but runs no code of the packages: wheels only, so no build
   script ever runs. The run's venv is writable in this step only.
2. **execute**: `python <the test file>` with no network at all (a new, empty network namespace),
   the run's venv and the interpreter read-only, and only the run's project folder writable.

In both steps the sandbox sees /usr and the interpreter read-only, a private /tmp, /proc and /dev,
and nothing else: no data dir (database, secret.key), no home, no other run. The environment is
built from scratch (PATH, HOME = the project folder, LANG; PYTHONPATH for the tests): nothing of
the server's. Every step runs with CPU-time, address-space, process-count, open-file and
file-size limits and a wall-clock timeout, in its own process group (killed whole on timeout
or cancel).

Where bubblewrap is missing or does not work (macOS, Windows, containers without user
namespaces), generated code is not executed unless the operator started AgentDeck with
`--allow-unsandboxed-code`; then steps run with the same environment, limits and install rules
but without the filesystem and network boundary. A run records which mode it used
(`runs.sandbox`: bubblewrap | unsandboxed | unavailable | off).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metagpt.actions import RunCode
from metagpt.const import MESSAGE_ROUTE_TO_NONE
from metagpt.roles import QaEngineer, Role
from metagpt.schema import Message, RunCodeContext
from metagpt.utils.common import parse_recipient
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import ConfigDict, Field

log = logging.getLogger(__name__)

EXECUTION_OFF_NOTE = "Code execution is turned off for this workspace: {test} was written but not run."
EXECUTION_UNAVAILABLE_NOTE = (
    "Code execution is unavailable on this server (no working bubblewrap sandbox, and the operator did not "
    "allow unsandboxed code): {test} was written but not run."
)

# Run modes, as recorded on the run.
MODE_BWRAP = "bubblewrap"
MODE_UNSANDBOXED = "unsandboxed"
MODE_UNAVAILABLE = "unavailable"
MODE_OFF = "off"

# How long a test run may take (MetaGPT's own RunCode allows 10 s).
EXECUTE_SECONDS = 30
MAX_REQUIREMENT_LINES = 100
MAX_OUTPUT_CHARS = 20_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of every sandboxed process (and each of its children)."""

    cpu_seconds: int = 60
    memory_bytes: int = 2 * 1024**3
    processes: int = 256
    open_files: int = 256
    file_bytes: int = 64 * 1024**2

    def apply(self) -> None:
        """Runs in the child between fork and exec (subprocess's preexec_fn)."""
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# ---------------------------------------------------------------------------------------------
# requirement lines
# ---------------------------------------------------------------------------------------------
_NAME_ONLY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?\s*([<>=!~].*)?$")


def check_requirement(line: str) -> str | None:
    """The requirement to install for one line of a requirements file, or None when the line is
    blank or a comment. Raises ValueError (saying why) for anything but a plain index requirement."""
    text = line.split(" #", 1)[0].strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("-"):
        raise ValueError("options (-e, -r, --index-url, --extra-index-url, ...) are not allowed")
    if any(mark in text for mark in ("://", "@", "/", "\\", ";")) or not _NAME_ONLY.match(text):
        raise ValueError("only `name==version`-style requirements from the package index are allowed")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"not a requirement: {exc}") from exc
    if requirement.url or requirement.marker:
        raise ValueError("URLs and markers are not allowed")
    return str(requirement)


def filter_requirements(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(allowed requirements, [(refused line, why)])."""
    allowed: list[str] = []
    refused: list[tuple[str, str]] = []
    for line in text.splitlines()[:MAX_REQUIREMENT_LINES]:
        try:
            requirement = check_requirement(line)
        except ValueError as exc:
            refused.append((line.strip()[:200], str(exc)))
            continue
        if requirement is not None:
            allowed.append(requirement)
    return allowed, refused


# ---------------------------------------------------------------------------------------------
# availability
# ---------------------------------------------------------------------------------------------
@functools.cache
def bwrap_path() -> str | None:
    """The bubblewrap binary, if it is installed and can make a sandbox here (it needs user
    namespaces; some containers forbid them)."""
    found = shutil.which("bwrap")
    if found is None or sys.platform != "linux":
        return None
    probe = [found, "--unshare-all", "--die-with-parent", *_system_binds(), "--", "/bin/true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        log.warning("bubblewrap is installed but cannot create a sandbox here; generated code will not run")
    return found if ok else None


def execution_mode(code_execution: bool, allow_unsandboxed: bool) -> str:
    if not code_execution:
        return MODE_OFF
    if bwrap_path() is not None:
        return MODE_BWRAP
    return MODE_UNSANDBOXED if allow_unsandboxed else MODE_UNAVAILABLE


def _system_binds() -> list[str]:
    """Read-only system folders every sandbox sees (merged-/usr layouts get their symlinks)."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    return args


# ---------------------------------------------------------------------------------------------
# the sandbox of one run
# ---------------------------------------------------------------------------------------------
# Processes started by sandboxes, by venv, so a cancel from another thread can stop them.
_LIVE: dict[Path, set[subprocess.Popen[bytes]]] = {}
_LIVE_LOCK = threading.Lock()


@dataclass
class StepResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass
class Sandbox:
    """One run's sandbox: `venv` holds what the run installs, `root` (the run's project folder
    tree) is the only place its code may write."""

    venv: Path
    timeout: float
    root: Path | None = None
    mode: str = MODE_BWRAP
    index_url: str | None = None
    limits: Limits = field(default_factory=Limits)
    events: list[dict[str, Any]] = field(default_factory=list)
    on_event: Any = None

    def _event(self, detail: dict[str, Any]) -> None:
        self.events.append(detail)
        if self.on_event is not None:
            try:
                self.on_event(detail)
            except Exception:
                log.exception("recording a sandbox event failed")

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @classmethod
    def create(
        cls,
        venv: Path,
        timeout: float,
        *,
        root: Path | None = None,
        mode: str = MODE_BWRAP,
        index_url: str | None = None,
    ) -> Sandbox:
        """A fresh venv (with pip, from the base interpreter, no access to the app's packages)."""
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [_base_python(), "-m", "venv", str(venv)],
            check=True,
            timeout=timeout,
            capture_output=True,
            env=_clean_env(),
        )
        return cls(venv=venv, timeout=timeout, root=root or venv.parent / "workspace", mode=mode, index_url=index_url)

    # -- commands ---------------------------------------------------------------------------
    def environ(self, home: Path, pythonpath: list[str] | None = None) -> dict[str, str]:
        env = _clean_env()
        env["PATH"] = os.pathsep.join([str(self.bin), "/usr/local/bin", "/usr/bin", "/bin"])
        env["HOME"] = str(home)
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DEFAULT_TIMEOUT"] = str(max(5, int(self.timeout)))
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        return env

    def command(self, argv: list[str], cwd: Path, *, network: bool, venv_writable: bool) -> list[str]:
        """`argv` wrapped in bwrap (or as it is, unsandboxed)."""
        if self.mode != MODE_BWRAP:
            return argv
        bwrap = bwrap_path()
        if bwrap is None:
            raise RuntimeError("bubblewrap is not available")
        root = self.root or cwd
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", *_system_binds()]
        base = Path(sys.base_prefix).resolve()
        if not str(base).startswith("/usr/"):
            args += ["--ro-bind", str(base), str(base)]
        if network:
            args.append("--share-net")
            for name in ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates"):
                args += ["--ro-bind-try", name, name]
        args += ["--bind" if venv_writable else "--ro-bind", str(self.venv), str(self.venv)]
        args += ["--bind", str(root), str(root), "--chdir", str(cwd)]
        return [*args, "--", *argv]

    def run_step(
        self, argv: list[str], cwd: Path, *, network: bool, venv_writable: bool, timeout: float, env: dict[str, str]
    ) -> StepResult:
        process = subprocess.Popen(
            self.command(argv, cwd, network=network, venv_writable=venv_writable),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=self.limits.apply,
        )
        with _LIVE_LOCK:
            _LIVE.setdefault(self.venv, set()).add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, stderr = process.communicate()
            timed_out = True
        finally:
            with _LIVE_LOCK:
                _LIVE.get(self.venv, set()).discard(process)
        return StepResult(
            process.returncode,
            stdout.decode("utf-8", errors="replace")[-MAX_OUTPUT_CHARS:],
            stderr.decode("utf-8", errors="replace")[-MAX_OUTPUT_CHARS:],
            timed_out,
        )

    # -- the two steps ---------------------------------------------------------------------------
    def install(self, workdir: Path) -> StepResult:
        """Install the project's requirements (and pytest), refusing every non-index line."""
        requirements_file = workdir / "requirements.txt"
        text = ""
        if requirements_file.is_file() and not requirements_file.is_symlink():
            text = requirements_file.read_text(errors="replace")[:100_000]
        allowed, refused = filter_requirements(text)
        if refused:
            self._event({"sandbox": "requirements refused", "refused": [line for line, _ in refused]})
        argv = ["python", "-m", "pip", "install", "--only-binary=:all:", "--no-input"]
        if self.index_url:
            argv += ["--index-url", self.index_url]
        # Like MetaGPT: the project's requirements, then pytest, each its own pip call (one
        # missing package must not keep the others out).
        steps: list[StepResult] = []
        for packages in (allowed, ["pytest"]):
            if not packages:
                continue
            step = self.run_step(
                [*argv, *packages],
                workdir,
                network=True,
                venv_writable=True,
                timeout=max(self.timeout, 30),
                env=self.environ(workdir),
            )
            self._event({"sandbox": "install", "packages": packages, "returncode": step.returncode})
            steps.append(step)
        # What the caller reports: the first failure, else the last step.
        result = next((step for step in steps if step.returncode != 0), steps[-1])
        notes = [f"refused requirement {line!r}: {why}" for line, why in refused]
        if notes:
            result.stderr = "\n".join(notes) + "\n" + result.stderr
        return result

    def execute(self, workdir: Path, script: str, pythonpath: list[str]) -> StepResult:
        """`python <script>` in the project folder, offline."""
        result = self.run_step(
            ["python", script],
            workdir,
            network=False,
            venv_writable=False,
            timeout=EXECUTE_SECONDS,
            env=self.environ(workdir, pythonpath),
        )
        self._event({"sandbox": "execute", "script": script, "returncode": result.returncode})
        if result.timed_out:
            result.stderr += f"\n[stopped by AgentDeck after {EXECUTE_SECONDS} s]"
        return result

    def kill_processes(self) -> int:
        """Stop every process this run's sandbox started (on cancel or timeout)."""
        with _LIVE_LOCK:
            processes = list(_LIVE.get(self.venv, set()))
        for process in processes:
            _kill_group(process)
        return len(processes)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            process.kill()


def _base_python() -> str:
    return getattr(sys, "_base_executable", sys.executable)


def _clean_env() -> dict[str, str]:
    """Built from nothing: no variable of the server's (secret keys, database URLs, tokens)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


# ---------------------------------------------------------------------------------------------
# MetaGPT: the QaEngineer's RunCode, through the sandbox
# ---------------------------------------------------------------------------------------------
class SandboxedRunCode(RunCode):
    """MetaGPT's RunCode with its two subprocess calls (install, run the script) made in the
    sandbox. Script mode only: "text" mode would `exec` LLM code in the server itself."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    sandbox: Any = Field(default=None, exclude=True)

    async def run_script(
        self,
        working_directory: str | Path,
        additional_python_paths: Iterable[str | Path] = (),
        command: Iterable[str] = (),
    ) -> tuple[str, str]:
        workdir = Path(working_directory)
        argv = list(command)
        if len(argv) != 2 or argv[0] != "python" or argv[1].startswith("-"):
            return "", f"refused command {argv!r}: only `python <test file>` is run"
        pythonpath = [str(workdir), *[str(p) for p in additional_python_paths]]
        install = await asyncio.to_thread(self.sandbox.install, workdir)
        result = await asyncio.to_thread(self.sandbox.execute, workdir, argv[1], pythonpath)
        errors = result.stderr
        if install.returncode != 0:
            errors = f"[installing requirements failed]\n{install.stderr[-2000:]}\n{errors}"
        return result.stdout, errors

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        self.i_context.mode = "script"
        return await super().run(*args, **kwargs)


def contain(role: Role, mode: str, sandbox: Sandbox | None) -> None:
    """Make a QaEngineer run its tests in `sandbox`, or note instead of running them."""
    if not isinstance(role, QaEngineer):
        return
    if mode in {MODE_OFF, MODE_UNAVAILABLE} or sandbox is None:
        _note_instead(role, EXECUTION_OFF_NOTE if mode == MODE_OFF else EXECUTION_UNAVAILABLE_NOTE)
        return

    async def _run_code_sandboxed(msg: Message) -> None:
        # QaEngineer._run_code of MetaGPT 0.8.2, with SandboxedRunCode in place of RunCode.
        run_code_context = RunCodeContext.loads(msg.content)
        src_doc = await role.project_repo.with_src_path(role.context.src_workspace).srcs.get(
            run_code_context.code_filename
        )
        if not src_doc:
            return
        test_doc = await role.project_repo.tests.get(run_code_context.test_filename)
        if not test_doc:
            return
        run_code_context.code = src_doc.content
        run_code_context.test_code = test_doc.content
        result = await SandboxedRunCode(
            i_context=run_code_context, context=role.context, llm=role.llm, sandbox=sandbox
        ).run()
        run_code_context.output_filename = run_code_context.test_filename + ".json"
        await role.project_repo.test_outputs.save(
            filename=run_code_context.output_filename,
            content=result.model_dump_json(),
            dependencies={src_doc.root_relative_path, test_doc.root_relative_path},
        )
        run_code_context.code = None
        run_code_context.test_code = None
        recipient = parse_recipient(result.summary)
        mappings = {"Engineer": "Alex", "QaEngineer": "Edward"}
        role.publish_message(
            Message(
                content=run_code_context.model_dump_json(),
                role=role.profile,
                cause_by=RunCode,
                sent_from=role,
                send_to=mappings.get(recipient, MESSAGE_ROUTE_TO_NONE),
            )
        )

    object.__setattr__(role, "_run_code", _run_code_sandboxed)


def _note_instead(role: Role, note: str) -> None:
    async def _run_code_disabled(msg: Message) -> None:
        try:
            test = RunCodeContext.loads(msg.content).test_filename or "the test"
        except Exception:
            test = "the test"
        role.publish_message(
            Message(
                content=note.format(test=test),
                role=role.profile,
                cause_by=RunCode,
                sent_from=role,
                send_to=MESSAGE_ROUTE_TO_NONE,
            )
        )

    # An instance attribute shadows the method for this role only.
    object.__setattr__(role, "_run_code", _run_code_disabled)


async def prepare(
    services: Any, run_id: Any, workspace_id: Any, run_dir: Path, code_execution: bool, timeout: float
) -> tuple[str, Sandbox | None]:
    """Confine the run's file writes to its folder; decide (and record on the run) how its
    generated code runs; make its sandbox when code will run."""
    from core.events import EventType, append_event
    from core.runtime import confine

    def record(detail: dict[str, Any]) -> None:
        with services.db.write() as session:
            append_event(session, EventType.AGENT_ACTIVITY, workspace_id, detail, run_id=run_id)

    confine.confine(run_dir / "workspace", record)
    settings = services.settings
    mode = execution_mode(code_execution, settings.allow_unsandboxed_code)
    services.runs.set_sandbox(run_id, mode)
    if mode not in {MODE_BWRAP, MODE_UNSANDBOXED}:
        return mode, None
    sandbox = await asyncio.to_thread(
        Sandbox.create,
        run_dir / "venv",
        timeout,
        root=run_dir / "workspace",
        mode=mode,
        index_url=settings.pip_index_url,
    )
    sandbox.on_event = lambda detail: record({"activity": "sandbox", **detail})
    return mode, sandbox


def disable_code_execution(role: Role) -> None:
    """Make a QaEngineer note, instead of run, the tests it writes."""
    contain(role, MODE_OFF, None)


__all__ = [
    "EXECUTION_OFF_NOTE",
    "EXECUTION_UNAVAILABLE_NOTE",
    "MODE_BWRAP",
    "MODE_OFF",
    "MODE_UNAVAILABLE",
    "MODE_UNSANDBOXED",
    "Limits",
    "Sandbox",
    "bwrap_path",
    "check_requirement",
    "contain",
    "disable_code_execution",
    "execution_mode",
    "filter_requirements",
]
