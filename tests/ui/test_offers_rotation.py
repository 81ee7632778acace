"""Issue #14 in the window (headless Chromium, the real agent process): a drive offered on the Overview
("Not this drive" remembered), a job's newest backup on each drive, the reminder, its preference."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from core.agent.config_file import update_config
from core.agent.history import History, RunEnd, RunStatus
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_unknown_drive_is_offered_on_the_overview_and_can_be_declined(open_page, agent, make_drive, tmp_path):
    page = open_page("overview")
    drive = make_drive("exfat", label="HOLIDAYS", mount=False)
    drive.mount(at=tmp_path / "sdx1")
    mount = str(drive.mount_point)
    wait_for(lambda: [o for o in agent.call("status")["offers"] if o["mount"] == mount], 30, "the drive to be offered")
    offer = page.locator(f"[data-offer='{mount}']")
    expect(offer).to_contain_text("Use ‘HOLIDAYS’ for backups?")
    expect(offer.get_by_role("button", name="Set it up for backups…")).to_be_visible()
    offer.get_by_role("button", name="Not this drive").click()
    expect(page.locator("#toasts")).to_contain_text("‘HOLIDAYS’ will not be offered again")
    expect(offer).to_have_count(0)
    declined = agent.call("config_get")["declined_drives"]
    assert [d["name"] for d in declined] == ["HOLIDAYS"]


def ran(history: History, job: str, drive_id: str, when: datetime, status=RunStatus.OK) -> None:
    run_id = history.start(job, when - timedelta(minutes=2), drive_id=drive_id)
    history.finish(run_id, RunEnd(status=status, ended=when))


def test_a_jobs_drives_their_ages_and_the_reminder_are_shown(open_page, agent, tmp_path):
    (tmp_path / "Docs").mkdir()
    now = datetime.now(timezone.utc)
    blue, red = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    update_config(agent.paths.config_file, lambda cfg: (cfg.enroll_drive(blue, "Blue"), cfg.enroll_drive(red, "Red")))
    wait_for(lambda: len(agent.call("config_get")["drives"]) == 2, 10, "the agent to read the drives")
    agent.call("job_save", job={"name": "Docs", "sources": [str(tmp_path / "Docs")], "destination": {"drive_id": blue}})
    history = History(agent.paths.history_file)
    ran(history, "Docs", blue, now - timedelta(days=12))
    ran(history, "Docs", red, now - timedelta(days=9))             # Red holds the newest backup
    ran(history, "Docs", blue, now - timedelta(days=1), RunStatus.FAILED)   # a failure is no backup

    status = agent.call("status")
    (job,) = status["jobs"]
    assert [(d["label"], d["newest"]) for d in job["drives"]] == [("Blue", False), ("Red", True)]
    assert job["reminder"]["days"] == 9

    page = open_page("overview")
    card = page.locator("[data-job='Docs']")
    ages = card.locator(".drive-ages li")
    expect(ages).to_have_count(2)
    expect(ages.nth(0)).to_contain_text("Blue: 12 days ago")
    expect(ages.nth(1)).to_contain_text("Red: 9 days ago")
    expect(ages.nth(1).locator(".badge")).to_have_text("Newest")
    expect(ages.nth(0).locator(".badge")).to_have_count(0)
    expect(page.locator("#reminder-banner")).to_contain_text("Docs: no backup for 9 days")
    expect(card.locator(".reminder")).to_have_text("Docs: no backup for 9 days")

    page = open_page("jobs")
    expect(page.locator("[data-job='Docs'] .drive-ages li")).to_have_count(2)
    expect(page.locator("[data-job='Docs'] .drive-ages li[data-drive='%s']" % red)).to_contain_text("Newest")

    # The editor puts Red in rotation; the list says both drives; the binding of each set stays the agent's.
    page.locator("[data-job='Docs']").get_by_role("button", name="Edit").click()
    rotation = page.locator("#dest-rotation input[name='dest-rotation']")
    expect(rotation).to_have_count(1)                              # the other drive, not Blue itself
    page.check(f"#dest-rotation input[value='{red}']")
    page.click("#job-save")
    expect(page.locator("[data-job='Docs']")).to_contain_text("Drive “Blue” or “Red”")
    assert agent.call("config_get")["jobs"][0]["destination"] == {"drive_id": blue, "rotation": [{"drive_id": red}]}
    page.locator("[data-job='Docs']").get_by_role("button", name="Edit").click()
    expect(page.locator(f"#dest-rotation input[value='{red}']")).to_be_checked()
    page.select_option("#dest-drive", red)                         # Red first now: Blue is the other one
    expect(page.locator(f"#dest-rotation input[value='{blue}']")).not_to_be_checked()
    page.check(f"#dest-rotation input[value='{blue}']")
    page.click("#job-save")
    expect(page.locator("[data-job='Docs']")).to_contain_text("Drive “Red” or “Blue”")
    assert agent.call("config_get")["jobs"][0]["destination"] == {"drive_id": red, "rotation": [{"drive_id": blue}]}

    page = open_page("prefs")
    expect(page.locator("#pref-remind")).to_have_value("7")
    page.fill("#pref-remind", "400")
    page.click("#prefs-save")
    expect(page.locator("#pref-remind-error")).to_have_text("Must be between 0 (never) and 365 days.")
    page.fill("#pref-remind", "10")
    page.click("#prefs-save")
    expect(page.locator("#toasts")).to_contain_text("Preferences saved")
    assert agent.call("config_get")["prefs"]["remind_after_days"] == 10
    assert agent.call("status")["reminders"] == []                   # 9 days < 10: no reminder now
