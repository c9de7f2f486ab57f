"""One settings object, built from flags and environment variables, passed down explicitly."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".agentdeck"


class Settings(BaseSettings):
    """Every knob of a running AgentDeck. Flags of main.py override the environment."""

    model_config = SettingsConfigDict(env_prefix="AGENTDECK_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # Without a URL the database is a SQLite file in the data dir.
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("database_url", "DATABASE_URL"))
    host: str = "127.0.0.1"
    port: int = 8080
    password: str | None = None
    native: bool = False
    demo: bool = False
    # Request bodies larger than this are refused (413) before they are parsed.
    max_body: int = 2 * 1024 * 1024
    # "N/period" as understood by the `limits` library, or "off".
    rate_limit: str = "600/minute"
    # Largest message content accepted, in characters.
    max_message_chars: int = 100_000
    # Persisted events older than this many days are deleted; 0 keeps them forever.
    event_retention_days: int = 30
    # Every LLM call's prompt and response are stored (core/llm_calls.py); each capped at this
    # many characters (longer ones are truncated and marked).
    record_llm_calls: bool = True
    llm_call_max_chars: int = 200_000
    # Bearer token that opens GET /metrics on a non-loopback bind (loopback binds need none).
    metrics_token: str | None = None
    # Seconds one LLM request may wait for its answer (per read; the client retries twice).
    llm_timeout: int = 120
    # Seconds a team run may take in all before it is stopped as failed.
    run_time_limit: int = 1800
    # Seconds allowed for creating a run's virtual environment and for each pip network wait.
    sandbox_timeout: int = 120
    # Team runs one process executes at once (a DBOS queue's worker concurrency); more wait queued.
    max_runs: int = Field(default=4, ge=1, le=64)
    # This process's executor id for durable runs; empty: derived from the host and the data dir.
    # Two live processes must never share one (each recovers its own workflows at start).
    worker_id: str = ""
    # False: this process serves the dashboard and API but executes no run or chat answer.
    executor: bool = True
    # False (`--no-resume`): the runs this process left unfinished are not resumed at its start but
    # marked `interrupted`; a person may resume each later. Chat answers still resume.
    resume: bool = True
    # Without a working bubblewrap, generated code runs only if the operator allows it unsandboxed.
    allow_unsandboxed_code: bool = False
    # The package index the sandbox installs generated requirements from (pip's default when unset).
    pip_index_url: str | None = None
    # Host names the server answers besides loopback ones (comma-separated), for Host and Origin.
    allowed_hosts: str = ""
    # LLM base_urls in private address ranges (refused outside loopback binds unless this is set).
    allow_private_llm: bool = False
    # Runs of one workspace that may be queued or running at once (more is 429).
    max_concurrent_runs: int = 4
    # Seconds the rate limiter counts a validated API token against the token's own budget.
    token_cache_seconds: float = 5.0
    # Seconds a validated API token is accepted again without a database read; revoking waits this
    # long, so every process of a deployment must share it (core/tokens.py).
    token_recheck_seconds: float = 0.5
    # WebSocket connections one token may hold open at once.
    max_ws_per_token: int = 20
    # Dashboard logins: wrong passwords allowed per client address (`limits` notation).
    login_rate_limit: str = "10/minute"
    # Seconds a dashboard login lasts.
    session_seconds: int = 12 * 3600
    # Import MetaGPT in the background at startup so the first run starts at once.
    preload_runtime: bool = True
    # WebSocket keep-alive: a ping every N seconds; a client silent this long is closed.
    ws_ping_seconds: float = 20.0
    ws_idle_seconds: float = 60.0
    # Secret for signing dashboard session cookies; generated into the data dir when unset.
    storage_secret: str | None = None
    # Key that encrypts LLM API keys at rest; read from <data_dir>/secret.key when unset.
    secret_key: str | None = None

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'agentdeck.db'}"

    @property
    def loopback_bind(self) -> bool:
        """Bound to loopback only (an empty host binds every interface)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        url = self.resolved_database_url
        return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
