"""The first-run wizard's watch of the first backup (ui/web/pages/welcome.js) in headless Chromium,
against the real agent process and a real ext4 drive."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree
from tests.ui.helpers import wait_for, wizard_to_details

pytestmark = [pytest.mark.browser, pytest.mark.realdrive]


def test_a_first_backup_that_ends_before_its_start_is_answered_offers_the_key_once(open_page, agent, ext4_drive,
                                                                                  tmp_path):
    """A small first backup can end before the reply that started it reaches the page: the watch is
    then handed the finished run at once, before ``onStatus`` returned the function that stops it. The
    old code could not stop there: it kept listening, and the next poll handled the run a second time
    (the recovery key offered twice: two ``recovery_reminders`` requests, two key dialogs raced).
    Here the reply is held back until the backup is done and a status poll has seen it."""
    photos = make_tree(tmp_path / "Photos", {"cat.jpg": b"meow", "dog.jpg": b"woof"})
    page = open_page()
    reminders: list[str] = []
    page.on("request", lambda r: reminders.append(r.url) if r.url.endswith("/api/recovery_reminders") else None)
    wizard_to_details(page, photos, ext4_drive.mount_point)
    page.fill("#welcome-name", "Photos")
    page.check("#welcome-encrypt")
    page.fill("#welcome-pass", "correct horse battery")
    page.fill("#welcome-pass2", "correct horse battery")

    def held(route):
        response = route.fetch()   # (the backup starts: the agent answers at once)
        wait_for(lambda: (agent.job("Photos")["last_run"] or {}).get("status") == "ok", 30, "the first backup")
        time.sleep(4.5)            # (a status poll, every 4 s at most, sees it finished)
        route.fulfill(response=response)

    page.route("**/api/run_job", held)
    page.click("#welcome-start")
    expect(page.locator("#welcome-backup-state")).to_contain_text("2 files", timeout=30000)
    key = agent.call("recovery_key", job="Photos")["recovery_key"]
    expect(page.locator("#dialog #recovery-key")).to_have_text(key, timeout=20000)
    page.wait_for_timeout(2500)    # (the old code's second offer came with the next poll, at once)
    assert len(reminders) == 1, reminders
    page.locator("#dialog").get_by_role("button", name="Later").click()
    expect(page.locator("#dialog")).not_to_be_visible()
    page.wait_for_timeout(1500)
    expect(page.locator("#dialog")).not_to_be_visible()
    assert len(reminders) == 1, reminders
