"""A new user's first minute (issue 17), in Chromium: an empty workspace's board offers the
software-company team; one click creates it and opens the start-run form with the team selected
and an example idea; "Start run" runs it on the offline demo model to completion.

DOM hooks: the offer's buttons by their text ("Create the software-company team"), the start
form's members select (label "Team members") and idea (label "Idea"), the run's status badge
`[data-status]` in the run header.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from core.schemas import WorkspaceCreate
from core.templates import BUILTIN_BY_SLUG, SOFTWARE_COMPANY
from tests.browser.conftest import PAGE_TIMEOUT_MS, Seed

pytestmark = pytest.mark.browser

RUN_TIMEOUT_MS = 240_000


def test_a_new_user_runs_the_software_company_team_from_the_empty_board(seed: Seed, user_a: Page) -> None:
    name = f"First run {uuid.uuid4().hex[:6]}"
    ws = seed.services.workspaces.create(WorkspaceCreate(slug=f"first-run-{uuid.uuid4().hex[:6]}", name=name))
    page = user_a
    page.goto(seed.url("/"))
    page.get_by_role("combobox", name="Workspace").click()
    page.get_by_role("option", name=re.compile(re.escape(name))).click()
    expect(page.get_by_text("No agents yet")).to_be_visible(timeout=PAGE_TIMEOUT_MS)

    page.get_by_role("button", name="Create the software-company team").click()
    expect(page).to_have_url(re.compile(r"/runs\?template=software-company&team="), timeout=PAGE_TIMEOUT_MS)
    template = BUILTIN_BY_SLUG[SOFTWARE_COMPANY]
    start = page.locator(".q-card", has_text="Start a team run")
    for member in template.members:
        expect(start.get_by_text(f"{member.name} · ", exact=False)).to_be_visible()
    expect(page.get_by_label("Idea")).to_have_value(template.idea)

    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"), timeout=60_000)
    badge = page.locator(".q-card .q-badge[data-status]").first
    expect(badge).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_MS)
    (run,) = seed.services.runs.list(ws.id).items
    assert run.status == "completed" and run.llm_label == "demo model"
    assert {m.agent_name for m in run.members} == {m.name for m in template.members}
