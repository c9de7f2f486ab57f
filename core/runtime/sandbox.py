"""Containing the code a team run generates.

MetaGPT's QaEngineer runs `python -m pip install -r requirements.txt`, `pip install pytest` and the
generated tests with whatever `python` comes first on PATH; left alone it installs LLM-chosen
packages into the host's Python. A run with code execution on gets its own virtual environment
under its folder, and MetaGPT's subprocess environment (SandboxedContext.new_environ) puts that
venv first on PATH, with the app's own venv and PYTHONPATH removed. With code execution off, the
QaEngineer still writes tests but never runs or installs anything.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from metagpt.actions import RunCode
from metagpt.const import MESSAGE_ROUTE_TO_NONE
from metagpt.roles import QaEngineer, Role
from metagpt.schema import Message, RunCodeContext

log = logging.getLogger(__name__)

EXECUTION_OFF_NOTE = "Code execution is turned off for this workspace: {test} was written but not run."


@dataclass(frozen=True)
class Sandbox:
    venv: Path
    timeout: float

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @classmethod
    def create(cls, venv: Path, timeout: float) -> Sandbox:
        """A fresh venv (with pip, from the base interpreter, no access to the app's packages)."""
        venv.parent.mkdir(parents=True, exist_ok=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run(
            [base_python, "-m", "venv", str(venv)], check=True, timeout=timeout, capture_output=True, env=_base_env()
        )
        return cls(venv=venv, timeout=timeout)

    def environ(self) -> dict[str, str]:
        env = _base_env()
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PIP_DEFAULT_TIMEOUT"] = str(int(self.timeout))
        return env

    def kill_processes(self) -> int:
        """Stop every process running from this venv (on cancel or timeout). Linux: via /proc."""
        killed = 0
        proc = Path("/proc")
        if not proc.exists():
            return 0
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                exe = Path(os.readlink(entry / "exe"))
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            first = Path(cmdline[0].decode(errors="replace")) if cmdline and cmdline[0] else exe
            if self.venv in first.parents or self.venv in exe.parents:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        return killed


def _base_env() -> dict[str, str]:
    """The process environment without the app's virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT"}}
    app_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != app_bin)
    return env


def disable_code_execution(role: Role) -> None:
    """Make a QaEngineer note, instead of run, the tests it writes."""
    if not isinstance(role, QaEngineer):
        return

    async def _run_code_disabled(msg: Message) -> None:
        try:
            test = RunCodeContext.loads(msg.content).test_filename or "the test"
        except Exception:
            test = "the test"
        role.publish_message(
            Message(
                content=EXECUTION_OFF_NOTE.format(test=test),
                role=role.profile,
                cause_by=RunCode,
                sent_from=role,
                send_to=MESSAGE_ROUTE_TO_NONE,
            )
        )

    # An instance attribute shadows the method for this role only.
    object.__setattr__(role, "_run_code", _run_code_disabled)


__all__ = ["EXECUTION_OFF_NOTE", "Sandbox", "disable_code_execution"]
