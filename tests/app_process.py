"""The app as a real process: `main.py` started with the README's command on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The parent's environment minus what would make NiceGUI think it runs inside pytest."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NICEGUI_")) and k not in {"DATABASE_URL"}
    }
    env.update(overrides)
    return env


class AppProcess:
    """`python main.py [args]` with its own data dir; waits until /api/health answers."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.base_url = f"http://127.0.0.1:{self.port}"
        extra = {"AGENTDECK_DATA_DIR": str(data_dir), "AGENTDECK_PORT": str(self.port), **(env or {})}
        if database_url:
            extra["DATABASE_URL"] = database_url
        self.env = clean_env(**extra)
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.log_path = data_dir.parent / f"app-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"app did not answer within {self.startup_timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
