"""The Restore page's "Look for backups in a folder…" with ``rclone:REMOTE:PATH`` (issue #13), in headless
Chromium against the real agent process and Debian's rclone (a ``local`` remote of the test's own rclone
configuration): a set no job here uses is found, unlocked with its passphrase and browsed; an unknown
remote is said in plain words."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.agent import remote_jobs
from core.agent.config import Job
from core.agent.history import History
from tests.support.rclone import FAST_FAIL, local_remotes
from tests.support.trees import make_tree
from tests.ui.helpers import unlock_wrong_then_right

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASS = "a long passphrase"


@pytest.fixture
def rclone_env(tmp_path, monkeypatch):
    """The test's rclone configuration (remote ``cloud``), for this process and the agent it starts."""
    return local_remotes(tmp_path / "rclone", monkeypatch, "cloud")


def test_a_typed_remote_set_is_found_unlocked_and_browsed(rclone_env, open_page, agent, tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Documents", {"ada.txt": b"ada lovelace"})
    spec = f"rclone:cloud:{tmp_path / 'old-laptop'}"
    monkeypatch.setattr(remote_jobs, "RCLONE_FLAGS", FAST_FAIL)
    job = Job.from_dict({"name": "Docs", "sources": [str(src)], "destination": {"remote": spec}})
    # Made by "another computer" (this test process): the agent has no job for it, nor its passphrase.
    assert remote_jobs.run_remote_job(job, History(tmp_path / "other.db"), passphrase=PASS).status == "ok"
    page = open_page("restore")
    expect(page.locator("#restore-open-hint")).to_contain_text("rclone:REMOTE:FOLDER")
    page.fill("#restore-open-path", "rclone:nosuch:backups")
    page.click("#restore-open-go")
    expect(page.locator("#restore-open-error")).to_contain_text("no rclone remote called 'nosuch'")
    page.fill("#restore-open-path", spec)
    page.click("#restore-open-go")
    expect(page.locator("#restore-job")).to_have_value(f"set:{spec}")
    unlock_wrong_then_right(page, PASS)
    page.get_by_role("button", name="Open folder Documents").click()
    expect(page.locator("#restore-tree")).to_contain_text("ada.txt")
