"""Issue #14 with issue #10 in the window (headless Chromium, the real agent process, two real ext4
drives): a job in rotation refused someone else's set on its second drive; "Review the backup on the
drive…" shows and adopts the set on that drive, even with the job's first drive plugged in too."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.agent.jobs import host_name
from core.engine.layout import drive_set_path
from core.engine.repo import BackupSet
from tests.support.engine import backup_path
from tests.support.trees import make_tree
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.realdrive]


def test_review_adopts_the_set_on_the_drive_that_refused_it(open_page, agent, make_drive, tmp_path):
    blue, red = make_drive("ext4", label="BLUE"), make_drive("ext4", label="RED")
    blue_id = agent.call("drive_init", mount=str(blue.mount_point), label="Blue")["drive_id"]
    red_id = agent.call("drive_init", mount=str(red.mount_point), label="Red")["drive_id"]
    set_path = drive_set_path(red.mount_point, host_name(), "Docs")
    backup_path(set_path, [make_tree(tmp_path / "theirs" / "Stuff", {"x.txt": b"x"})], job="Docs",
                host="strangers-pc", parents=True)
    blue_mount = blue.mount_point
    blue.unmount()
    wait_for(lambda: not [d for d in agent.call("status")["drives"] if d["drive_id"] == blue_id][0]["present"], 20,
             "the agent to see Blue go")
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "triggers": {"on_connect": False},
                                "destination": {"drive_id": blue_id, "rotation": [{"drive_id": red_id}]}}, start=False)
    agent.call("run_job", name="Docs")
    run = agent.wait_idle("Docs")
    assert run["error_code"] == "set_needs_confirmation" and run["drive_id"] == red_id
    blue.mount(at=blue_mount)                                      # the first drive is back too
    wait_for(lambda: all(d["present"] for d in agent.call("status")["drives"]), 20, "the agent to see Blue")

    page = open_page("overview")
    page.get_by_role("button", name="Review the backup on the drive…").click()
    dialog = page.locator("dialog")
    expect(dialog.locator("#adopt-host")).to_have_text("strangers-pc")
    expect(dialog).to_contain_text(str(set_path))
    dialog.get_by_role("button", name="Use this backup").click()
    wait_for(lambda: agent.call("config_get")["jobs"][0]["destination"]["rotation"][0].get("set_id"), 20,
             "the set on Red to be adopted")
    job = agent.call("config_get")["jobs"][0]
    assert job["destination"]["rotation"][0]["set_id"] == BackupSet.open(set_path).set_id
