"""MetaGPT is set up by the app: rooted in the data dir, blind to the user's home config, and
its `logger.remove()` at import leaves the app's logging alone. Checked in a fresh interpreter,
since MetaGPT can be imported (and rooted) only once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROBE = r"""
import json, logging, os, sys
from pathlib import Path
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.name, record.levelname, record.getMessage()))
logging.basicConfig(level=logging.INFO, handlers=[Keep()])
from core.runtime.bootstrap import configure_metagpt
root = configure_metagpt(Path(sys.argv[1]))
from loguru import logger
from metagpt.config2 import config
from metagpt.const import CONFIG_ROOT, METAGPT_ROOT
logging.getLogger("agentdeck.probe").info("app log after metagpt import")
logger.warning("metagpt warning routed")
logger.info("metagpt info kept in its file")
print(json.dumps({
    "root": str(root), "metagpt_root": str(METAGPT_ROOT), "config_root": str(CONFIG_ROOT),
    "base_url": config.llm.base_url, "home": os.environ.get("HOME"), "records": records,
}))
"""


def test_metagpt_is_rooted_in_the_data_dir_and_leaves_app_logging_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".metagpt").mkdir(parents=True)
    (home / ".metagpt" / "config2.yaml").write_text(
        "llm:\n  api_type: openai\n  model: gpt-4\n  base_url: https://user-home-config.invalid/v1\n  api_key: sk-home\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "METAGPT_PROJECT_ROOT"}
    env.update(HOME=str(home), PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(data)], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["root"] == str(data / "metagpt") == result["metagpt_root"]
    assert result["config_root"] == str(data / "metagpt" / "home" / ".metagpt")
    assert "user-home-config" not in result["base_url"]  # the user's ~/.metagpt was not read
    assert result["home"] == str(home)  # HOME is restored after the import
    records = [tuple(r) for r in result["records"]]
    assert ("agentdeck.probe", "INFO", "app log after metagpt import") in records
    assert ("metagpt", "WARNING", "metagpt warning routed") in records
    assert not any(message == "metagpt info kept in its file" for _, _, message in records)
    log_text = "".join(p.read_text() for p in (data / "metagpt" / "logs").glob("*.log"))
    assert "metagpt info kept in its file" in log_text
    assert sorted(p.name for p in cwd.iterdir()) == []  # nothing written to the working directory
