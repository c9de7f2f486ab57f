"""A page with 100,000 messages in its thread or 1,000 agents on its board opens as fast as an
empty one (issue #5), measured in a real browser.

    uv run python bench/bench_pages.py                      # 100,000 messages, 1,000 agents
    uv run python bench/bench_pages.py --messages 1000000 --agents 5000 --repeat 30

Three AgentDeck processes are started with the README's command, each on its own SQLite file:
`empty` holds one agent and no messages; `one page` holds just enough to fill the first page of
each list (the board's first page of agents, the thread's first page of messages); `big` holds the
given number of agents and messages. Debian's Chromium (driven by Playwright) opens the board and
the agent page of each, over and over in one browser context per app (assets cached, as for a
returning user), and the script prints for every page:

- `open ms`: median time from navigation to the page's content shown (the board's first cards,
  the thread's newest message or its empty state);
- `html ms` / `html KiB`: median server time and size of the page's HTML (NiceGUI embeds the
  whole element tree in it, so this is what the server builds per client);
- `elements`: DOM elements in the page once shown;

with the ratio of `open ms` and `elements` to the `empty` page of the same run. `one page` costs
more than `empty` by what one screenful of cards or messages costs to draw; `big` must cost the
same as `one page`, whatever its history holds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pagination import median_ms, seed
from core.config import Settings
from core.registry import sync_definitions
from core.services import build_services
from storage.migrate import upgrade
from tests.app_process import AppProcess
from ui import board, thread

CHROMIUM = os.environ.get("AGENTDECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000
# The board is shown when its first card is: cards are links to their agent page.
BOARD_SHOWN = 'a[href^="/agents/"]'


@dataclass
class Deck:
    label: str
    app: AppProcess
    agent_id: uuid.UUID
    messages: int


def seeded_app(root: Path, label: str, messages: int, agents: int) -> Deck:
    data_dir = root / label.replace(" ", "-")
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True)
    services = build_services(settings)
    upgrade(services.db.engine, settings.resolved_database_url, settings.sqlite_path)
    sync_definitions(services.db)
    _, agent_id = seed(services, messages, agents)
    services.db.dispose()
    # Rate limits off: the benchmark itself is the only client.
    app = AppProcess(data_dir, env={"AGENTDECK_RATE_LIMIT": "off", "AGENTDECK_PRELOAD_RUNTIME": "false"})
    return Deck(label, app.start(), agent_id, messages)


def thread_shown(deck: Deck) -> str:
    if deck.messages:
        return f'[data-seq="{deck.messages}"]'
    return "text=No messages yet"


def measure(page: Page, deck: Deck, path: str, shown: str, repeat: int) -> tuple[float, int]:
    url = deck.app.base_url + path

    def open_page() -> None:
        page.goto(url, wait_until="commit")
        page.wait_for_selector(shown, state="visible")

    ms = median_ms(open_page, repeat)
    elements = int(page.evaluate("document.getElementsByTagName('*').length"))
    return ms, elements


def html_cost(deck: Deck, path: str, repeat: int) -> tuple[float, float]:
    with httpx.Client(base_url=deck.app.base_url, timeout=60) as client:
        size = len(client.get(path).content) / 1024
        return median_ms(lambda: client.get(path).raise_for_status(), repeat), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="agentdeck-bench-pages-"))
    print(f"seeding: empty, one page, big ({args.agents + 1:,} agents, {args.messages:,} messages) ...")
    decks = [
        seeded_app(root, "empty", 0, 0),
        seeded_app(root, "one page", thread.PAGE_SIZE, board.PAGE_SIZE),
        seeded_app(root, "big", args.messages, args.agents),
    ]
    rows: list[tuple[str, str, float, float, float, int]] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            for deck in decks:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.set_default_timeout(TIMEOUT_MS)
                page = context.new_page()
                for name, path, shown in [
                    ("board /", "/", BOARD_SHOWN),
                    ("agent page /agents/{id}", f"/agents/{deck.agent_id}", thread_shown(deck)),
                ]:
                    open_ms, elements = measure(page, deck, path, shown, args.repeat)
                    server_ms, kib = html_cost(deck, path, args.repeat)
                    rows.append((name, deck.label, open_ms, server_ms, kib, elements))
                context.close()
            browser.close()
    finally:
        for deck in decks:
            deck.app.stop()

    print(
        f"\n{'page':26} {'data':9} {'open ms':>8} {'html ms':>8} {'html KiB':>9} {'elements':>9} {'x open':>7} {'x elem':>7}"
    )
    baseline: dict[str, tuple[float, int]] = {}
    for name, label, open_ms, server_ms, kib, elements in rows:
        base_ms, base_elements = baseline.setdefault(name, (open_ms, elements))
        print(
            f"{name:26} {label:9} {open_ms:8.1f} {server_ms:8.1f} {kib:9.1f} {elements:9,} "
            f"{open_ms / base_ms:7.2f} {elements / base_elements:7.2f}"
        )


if __name__ == "__main__":
    main()
