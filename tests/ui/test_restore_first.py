"""Restore first (issue #14) in headless Chromium against the real agent process and a real ext4 drive:
the open Restore page holds the automatic backup of a drive plugged in until the page is left, and a
restore that waits for another process's backup says so and can be stopped."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.engine.lock import SetLock
from core.engine.progress import Clock
from core.engine.repo import BackupSet
from tests.support.trees import make_tree, read_tree
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.realdrive]
TREE = {"notes.txt": b"first notes\n", "sub/report.odt": b"R" * 5000}


def drive_job(agent, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Documents", TREE)
    agent.call("prefs_save", prefs={"connect_delay_seconds": 0})
    drive_id = agent.call("drive_init", mount=str(ext4_drive.mount_point), label="Blue")["drive_id"]
    agent.call("job_save", job={"name": "Documents", "sources": [str(src)], "destination": {"drive_id": drive_id},
                                "triggers": {"on_connect": True}}, start=False)
    return src, drive_id


def test_the_open_restore_page_holds_the_backup_of_a_drive_plugged_in(open_page, agent, ext4_drive, tmp_path):
    _, drive_id = drive_job(agent, ext4_drive, tmp_path)
    ext4_drive.unmount()
    wait_for(lambda: not agent.job("Documents")["drive_present"], 20, "the agent to see the drive go")
    page = open_page("restore")
    expect(page.locator("#restore-job")).to_have_value("job:Documents")
    ext4_drive.mount()                                                   # plugged in while restoring
    pending = wait_for(lambda: agent.call("status")["pending"], 20, "the agent to see the drive")
    assert pending[0]["drive_id"] == drive_id and pending[0]["held"] and pending[0]["jobs"] == ["Documents"]
    assert agent.job("Documents")["last_run"] is None and not agent.job("Documents")["queued"]
    page.locator("nav a[data-page='overview']").click()                  # the Restore page closes
    run = agent.wait_idle("Documents")
    assert run["status"] == "ok" and run["trigger"] == "connect" and agent.call("status")["pending"] == []


def test_a_restore_waiting_for_another_backup_says_so_and_can_be_stopped(open_page, agent, ext4_drive, tmp_path):
    drive_job(agent, ext4_drive, tmp_path)
    agent.backup("Documents")
    set_path = next((ext4_drive.mount_point / "Plugback").glob("*/Documents"))
    # Another process (here: this test) is backing up into the same set, as `plugback job run` would.
    other = SetLock(BackupSet.open(set_path).layout.lock, Clock(), purpose="backup").acquire()
    try:
        page = open_page("restore")
        page.locator("#restore-tree input[type=checkbox]").first.check()
        page.check("#target-other")
        out = tmp_path / "out"
        out.mkdir()
        page.fill("#target-path", str(out))
        page.click("#restore-start")
        expect(page.locator("#restore-waiting")).to_contain_text("Waiting for the backup of Documents to finish "
                                                                 "(process ", timeout=20000)
        page.click("#restore-stop")
        expect(page.locator("#restore-result")).to_contain_text("The restore was stopped", timeout=20000)
        assert list(out.iterdir()) == []
        # Started again and the other backup ends: the restore goes ahead.
        page.locator("#restore-tree input[type=checkbox]").first.check()
        page.click("#restore-start")
        expect(page.locator("#restore-waiting")).to_be_visible(timeout=20000)
        other.release()
        expect(page.locator("#restore-result")).to_contain_text("Restore finished", timeout=30000)
        assert read_tree(out / "Documents") == TREE
    finally:
        other.release()


def test_restore_instead_opens_the_restore_page_on_that_drive(open_page, agent, make_drive, tmp_path):
    """`#restore/<drive id>` (the agent's "Restore instead") starts on the backup on that drive."""
    blue, red = make_drive("ext4", label="BLUE"), make_drive("ext4", label="RED")
    drive_job(agent, blue, tmp_path)
    src = make_tree(tmp_path / "Photos", {"p.jpg": b"photo"})
    red_id = agent.call("drive_init", mount=str(red.mount_point), label="Red")["drive_id"]
    agent.call("job_save", job={"name": "Photos", "sources": [str(src)], "destination": {"drive_id": red_id}},
               start=False)
    agent.backup("Documents")
    agent.backup("Photos")
    page = open_page("restore")
    expect(page.locator("#restore-job")).to_have_value("job:Documents")   # the first job, as before
    page = open_page(f"restore/{red_id}")
    expect(page.locator("#restore-job")).to_have_value("job:Photos")
    expect(page.locator("#restore-tree")).to_contain_text("Photos")


def test_a_restore_that_ends_before_its_start_is_answered_shows_its_result(open_page, agent, ext4_drive, tmp_path):
    """A small restore can end before the reply that started it reaches the page: the page's status
    watch is then handed the finished restore at once (the old code threw "watching is not a
    function" there, an uncaught error, and kept listening). Here the reply is held back until the
    restore is done and a status poll has seen it."""
    import time

    drive_job(agent, ext4_drive, tmp_path)
    agent.backup("Documents")
    page = open_page("restore")
    expect(page.locator("#restore-job")).to_have_value("job:Documents")
    page.locator("#restore-tree input[type=checkbox]").first.check()
    page.check("#target-other")
    out = tmp_path / "out"
    out.mkdir()
    page.fill("#target-path", str(out))

    def held(route):
        response = route.fetch()   # (the restore starts: the agent answers at once)
        wait_for(lambda: (out / "Documents").exists() and read_tree(out / "Documents") == TREE, 20,
                 "the restore to finish")
        time.sleep(4.5)            # (a status poll, every 4 s at most, sees it finished)
        route.fulfill(response=response)

    page.route("**/api/restore", held)
    page.click("#restore-start")
    expect(page.locator("#restore-result")).to_contain_text("Restore finished", timeout=30000)
    expect(page.locator("#restore-start")).to_be_disabled()   # (nothing stays ticked)
