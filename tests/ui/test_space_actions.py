"""A run that failed because the drive is full (issue #14): the window shows the numbers and offers
"Free up space…" and "Choose what to leave out…", never a command line. Real agent, real small ext4
drive, real pages in headless Chromium."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.realdrive]


def test_a_full_drive_offers_actions_not_commands(open_page, agent, make_drive, tmp_path):
    drive = make_drive("ext4", size_mb=16)
    big = tmp_path / "Big"
    big.mkdir()
    (big / "video.bin").write_bytes(os.urandom(20_000_000))
    agent.call("job_save", job={"name": "Big", "sources": [str(big)],
                                "destination": {"path": str(drive.mount_point / "Big")}})
    agent.call("job_save", job={"name": "Gone", "sources": [str(tmp_path / "vanished")],
                                "destination": {"path": str(tmp_path / "other")}})
    for name in ("Big", "Gone"):
        agent.call("run_job", name=name)
        wait_for(lambda name=name: (agent.job(name)["last_run"] or {}).get("status") == "failed", 60,
                 f"the failing run of {name}")
    assert agent.job("Big")["last_run"]["error_code"] == "drive_full"

    page = open_page("overview")
    card = page.locator("[data-job='Big']")
    expect(card.locator(".error-text")).to_contain_text(re.compile(r"needs about 2\d\.\d MB, but the drive has \d+\.\d MB free"))
    expect(card).not_to_contain_text("plugback")
    expect(page.locator("[data-job='Gone'] .space-actions")).to_have_count(0)   # other failures: no such actions
    card.get_by_role("button", name="Choose what to leave out…").click()
    expect(page).to_have_url(re.compile("#jobs/edit/Big$"))
    expect(page.locator("#job-excludes")).to_be_focused()

    page.goto(page.url.split("#")[0] + "#history")
    row = page.locator("#history-runs .error-row", has_text="needs about")
    expect(row.locator(".space-actions")).to_have_count(1)
    expect(page.locator("#history-runs .error-row", has_text="vanished").locator(".space-actions")).to_have_count(0)
    row.get_by_role("button", name="Free up space…").click()
    dialog = page.locator("dialog")
    expect(dialog).to_contain_text("removes the oldest backups of “Big”")
    expect(dialog).to_contain_text("needs about")
    dialog.get_by_role("button", name="Open Drives").click()
    expect(page).to_have_url(re.compile("#drives$"))
    page.wait_for_selector("#drives-enrolled")
