"""Prepare MetaGPT before its first import.

MetaGPT decides at import time where its root is (`METAGPT_PROJECT_ROOT`, else the current
directory), reads `config2.yaml` from that root and from `~/.metagpt` (the home one wins), builds
a default config that fails without an `llm` section, and replaces every loguru sink. AgentDeck
gives it a root inside the data dir with a placeholder config, hides the user's home config during
the import, and routes MetaGPT's loguru output to a log file plus warnings into stdlib logging.
Every role AgentDeck builds gets an explicit context and LLM, so the placeholder is never used to
call a model (its endpoint is a closed local port, so an accidental call fails at once).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("agentdeck.runtime")

PLACEHOLDER_CONFIG = """\
# Written by AgentDeck. MetaGPT needs an `llm` section at import time; AgentDeck never uses this
# one: every role gets the workspace's LLM profile or the offline demo model explicitly.
llm:
  api_type: openai
  model: gpt-4o-mini
  base_url: http://127.0.0.1:9/v1
  api_key: unused-agentdeck-placeholder
"""

_configured_root: Path | None = None


def metagpt_root(data_dir: Path) -> Path:
    return data_dir / "metagpt"


def configure_metagpt(data_dir: Path) -> Path:
    """Point MetaGPT at `<data_dir>/metagpt` and import it once. Returns the root.

    Safe to call again with the same data dir; with another one after MetaGPT was imported it
    keeps the first root (MetaGPT cannot be re-rooted in a running process) and says so.
    """
    global _configured_root
    root = metagpt_root(data_dir)
    if _configured_root is not None:
        if _configured_root != root:
            log.warning("MetaGPT already rooted at %s; ignoring %s", _configured_root, root)
        return _configured_root
    if "metagpt" in sys.modules:
        # Imported before us (e.g. by a test); adopt its root rather than pretend to move it.
        from metagpt.const import METAGPT_ROOT

        _configured_root = Path(METAGPT_ROOT)
        _route_loguru(_configured_root)
        return _configured_root

    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    config = root / "config" / "config2.yaml"
    if not config.exists():
        config.write_text(PLACEHOLDER_CONFIG)
    os.environ["METAGPT_PROJECT_ROOT"] = str(root)

    # MetaGPT fixes `~/.metagpt` (whose config would override ours) when metagpt.const is
    # imported: import it with HOME pointing inside the data dir, then put HOME back.
    saved_home = os.environ.get("HOME")
    os.environ["HOME"] = str(root / "home")
    try:
        importlib.import_module("metagpt.const")
        # Roles first: pydantic needs Role defined before team/environment are built.
        importlib.import_module("metagpt.roles")
        importlib.import_module("metagpt.team")
    finally:
        if saved_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved_home
    _configured_root = root
    _route_loguru(root)
    return root


class _ToStdlib:
    """A loguru sink that re-emits records into stdlib logging under `metagpt`."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("metagpt")

    def write(self, message: object) -> None:
        record = getattr(message, "record", None)
        if record is None:
            return
        self.logger.log(record["level"].no, "%s", record["message"])


def _route_loguru(root: Path) -> None:
    from loguru import logger

    logger.remove()
    logger.add(root / "logs" / "metagpt.log", level="INFO", rotation="10 MB", retention=5, enqueue=False)
    logger.add(_ToStdlib(), level="WARNING", format="{message}")
