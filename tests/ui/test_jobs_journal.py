"""The Jobs page and the change journal (issue #12) in headless Chromium, against the real agent
process (which watches the job's folders): the live checkbox, "Full check now", and what the next
backup checks."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def finished_runs(agent, name):
    return [r for r in agent.call("history", job=name) if r["status"] != "running"]


def test_live_checkbox_full_check_and_what_the_next_backup_checks(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n", "Taxes/2025.pdf": b"t"})
    agent.call("job_save", job={"name": "Documents", "sources": [str(src)],
                                "destination": {"path": str(tmp_path / "backups")}})
    page = open_page("jobs")
    card = page.locator("[data-job='Documents']")
    expect(card.locator(".scan-next")).to_contain_text("Every folder: this is the job's first backup")

    card.get_by_role("button", name="Edit").click()
    expect(page.locator("#trig-live")).not_to_be_checked()
    page.check("#trig-live")
    page.click("#job-save")
    expect(card).to_contain_text("continuously while the drive is connected")
    assert agent.call("config_get")["jobs"][0]["triggers"]["live"] is True

    card.get_by_role("button", name="Full check now").click()
    (run,) = wait_for(lambda: finished_runs(agent, "Documents"), 60, "the full check")
    assert run["status"] == "ok"
    assert "a full check was asked for" in agent.call("run_log", run_id=run["id"])["log"]
    page.reload()
    card = page.locator("[data-job='Documents']")
    expect(card.locator(".scan-last")).to_contain_text("because a full check was asked for")
    expect(card.locator(".scan-next")).to_contain_text("Only the folders that changed")

    page.locator("[data-job='Documents']").get_by_role("button", name="Edit").click()
    page.uncheck("#trig-live")
    page.click("#job-save")
    expect(page.locator("[data-job='Documents']")).not_to_contain_text("continuously")
    assert agent.call("config_get")["jobs"][0]["triggers"]["live"] is False
