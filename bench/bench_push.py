"""Push latency: from an API write to its text visible in every open dashboard tab (issue 15).

    uv run python bench/bench_push.py                  # 1, 10, 20 tabs, 20 messages each
    uv run python bench/bench_push.py --tabs 1 10 20 40 --samples 50
    uv run python bench/bench_push.py --app-root /tmp/agentdeck-old   # the same bench, older code

One AgentDeck process is started with the README's command (rate limit off) on a fresh SQLite file
holding one idle agent. Debian's Chromium (Playwright) opens that agent's page in N tabs; each tab
records, with a MutationObserver, the wall-clock time at which a message's text first appears in
its thread. The bench then posts messages one at a time through `POST /api/agents/{id}/messages`
and, for each, takes `seen - sent` in every tab, where `sent` is taken just before the request.
It prints p50 / p95 / max over all samples and tabs, per tab count, the ratio to one tab, and the
server's CPU milliseconds per message (all tabs' updates included; read from /proc, so the figure
least disturbed by a busy machine).

Browser and server share the machine's cores (and, usually, other people's work): compare the
figures of one run, and old with new code via `--app-root` in the same session.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import App  # noqa: E402
from core.config import Settings  # noqa: E402
from core.registry import sync_definitions  # noqa: E402
from core.schemas import AgentCreate, WorkspaceCreate  # noqa: E402
from core.services import build_services  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

CHROMIUM = os.environ.get("AGENTDECK_CHROMIUM", "/usr/bin/chromium")
# Background tabs must not be throttled: every tab stands for a person looking at the page.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
TIMEOUT_MS = 60_000

# Records when each "push-<n>-" text first shows up in the thread (wall clock, ms).
OBSERVER_JS = """() => {
    window.__seen = {};
    const scan = () => {
        for (const el of document.querySelectorAll('[data-seq]')) {
            if (el.__pushSeen) continue;
            const m = /push-(\\d+)-/.exec(el.textContent || '');
            if (!m) continue;  // not ours, or its text is not rendered yet
            el.__pushSeen = true;
            if (!(m[1] in window.__seen)) window.__seen[m[1]] = Date.now();
        }
    };
    new MutationObserver(scan).observe(document.body, {childList: true, subtree: true, characterData: true});
    scan();
}"""


def prepare(data_dir: Path) -> tuple[uuid.UUID, str]:
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    services = build_services(settings)
    upgrade(services.db.engine, settings.resolved_database_url, settings.sqlite_path)
    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug="push"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="listener"))
    services.messages.append(agent.id, "the thread is open", sender="listener", role="assistant")
    _, secret = services.tokens.create(ws.id, "push")
    services.db.dispose()
    return agent.id, secret


def open_tab(context: object, app: App, agent_id: uuid.UUID) -> Page:
    page: Page = context.new_page()  # type: ignore[attr-defined]
    page.goto(f"{app.base_url}/agents/{agent_id}")
    page.wait_for_selector('[data-seq="1"]', state="attached")
    page.evaluate(OBSERVER_JS)
    return page


def measure(pages: list[Page], http: httpx.Client, url: str, start: int, samples: int) -> list[float]:
    """Latency of every sample in every tab, in ms."""
    latencies: list[float] = []
    for n in range(start, start + samples):
        sent = time.time() * 1000
        http.post(url, json={"content": f"push-{n}- a message for every open tab"}).raise_for_status()
        for page in pages:
            page.wait_for_function("(n) => n in window.__seen", arg=str(n), timeout=TIMEOUT_MS)
            latencies.append(float(page.evaluate("(n) => window.__seen[n]", str(n))) - sent)
        time.sleep(0.05)  # let the tabs settle: each sample is one isolated write
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--samples", type=int, default=20, help="messages posted per tab count")
    parser.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose main.py is measured")
    args = parser.parse_args()
    # A terminated bench still stops the app it started (the `finally` blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-push-"))
    agent_id, secret = prepare(tmp / "data")
    app = App(args.app_root, tmp / "data", f"sqlite:///{tmp / 'data' / 'agentdeck.db'}")
    print(f"app: {args.app_root}; load: {os.getloadavg()}")
    results: list[tuple[int, float, float, float, float]] = []
    try:
        with (
            sync_playwright() as playwright,
            httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as http,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(TIMEOUT_MS)
            pages: list[Page] = []
            url = f"{app.base_url}/api/agents/{agent_id}/messages"
            next_n = 0
            for count in sorted(args.tabs):
                while len(pages) < count:
                    pages.append(open_tab(context, app, agent_id))
                measure(pages, http, url, next_n, 2)  # warm up the new tabs
                next_n += 2
                cpu = app.cpu_seconds()
                lat = sorted(measure(pages, http, url, next_n, args.samples))
                cpu_ms = (app.cpu_seconds() - cpu) * 1000 / args.samples
                next_n += args.samples
                p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
                results.append((count, statistics.median(lat), p95, lat[-1], cpu_ms))
            browser.close()
    finally:
        app.stop()
    print(f"\n{'tabs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95 x 1 tab':>12} {'server CPU ms/msg':>18}")
    base = results[0][2] if results else 1.0
    for count, p50, p95, worst, cpu_ms in results:
        print(f"{count:5d} {p50:8.1f} {p95:8.1f} {worst:8.1f} {p95 / base:12.2f} {cpu_ms:18.1f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
