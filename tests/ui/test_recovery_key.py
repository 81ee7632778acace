"""Issue #15: a new encrypted set's recovery key is shown once, and the Overview reminds until it is kept.

Headless Chromium through the real server and api, against a real agent (tests/ui/helpers.py).
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree
from tests.ui.helpers import wizard_to_details

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.realdrive]


def test_first_run_of_an_encrypted_backup_shows_its_key_once_and_reminds_until_kept(open_page, agent, ext4_drive,
                                                                                    tmp_path):
    mount = ext4_drive.mount_point
    photos = make_tree(tmp_path / "Photos", {"cat.jpg": b"meow", "dog.jpg": b"woof"})
    page = open_page()
    wizard_to_details(page, photos, mount)
    page.fill("#welcome-name", "Photos")
    expect(page.locator("#welcome-pass")).to_be_hidden()
    page.check("#welcome-encrypt")
    page.fill("#welcome-pass", "short")
    page.click("#welcome-start")
    expect(page.locator("#welcome-pass-error")).to_have_text("Use at least 8 characters.")
    assert agent.call("config_get")["jobs"] == []
    page.fill("#welcome-pass", "correct horse battery")
    page.fill("#welcome-pass2", "correct horse battery")
    page.click("#welcome-start")
    expect(page.locator("#welcome-backup-state")).to_contain_text("2 files", timeout=30000)
    # The key pops up once the first backup made the set: the set's own key.
    (job,) = agent.call("config_get")["jobs"]
    assert job["encrypt"] and job["set_id"]
    key = agent.call("recovery_key", job="Photos")["recovery_key"]
    dialog = page.locator("#dialog")
    expect(dialog.locator("#recovery-key")).to_have_text(key, timeout=20000)
    expect(dialog.get_by_role("button", name="Save as file…")).to_be_visible()
    expect(dialog.get_by_role("button", name="Print")).to_be_visible()
    dialog.get_by_role("button", name="Later").click()
    expect(dialog).not_to_be_visible()
    # "Later": no second pop-up, but a reminder on the Overview.
    page.click("text=Go to overview")
    reminder = page.locator("[data-recovery='Photos']")
    expect(reminder).to_contain_text("Save the recovery key of Photos")
    page.wait_for_timeout(1500)
    expect(dialog).not_to_be_visible()
    # "Done" waits for the box "I have kept the recovery key"; ticked, the reminder goes for good.
    reminder.get_by_role("button", name="Show the recovery key…").click()
    expect(dialog.locator("#recovery-key")).to_have_text(key)
    expect(dialog.get_by_role("button", name="Done")).to_be_disabled()
    page.check("#recovery-kept")
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).not_to_be_visible()
    expect(reminder).to_have_count(0)
    record = json.loads((agent.paths.data_dir / "recovery-keys.json").read_text())
    assert record == {"shown": [job["set_id"]], "confirmed": [job["set_id"]]}
    assert key not in (agent.paths.data_dir / "recovery-keys.json").read_text()
    page.reload()
    expect(page.locator(".job-card[data-job='Photos']")).to_be_visible()
    page.wait_for_timeout(1500)
    expect(dialog).not_to_be_visible()
    expect(page.locator("[data-recovery]")).to_have_count(0)
