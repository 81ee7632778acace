"""The change journal in the window (issue #12), in headless Chromium against the real agent process:
its preferences (full scans, live mode's quiet time) and the Overview's line on how the next backup
looks for changes."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree
from tests.ui.helpers import AgentProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def saved_prefs(agent) -> dict:
    return json.loads(agent.paths.config_file.read_text())["prefs"]


def test_journal_preferences_saved_and_a_bad_value_refused_by_the_agent(open_page, agent):
    page = open_page("prefs")
    expect(page.locator("#pref-full-days")).to_have_value("7")
    expect(page.locator("#pref-full-runs")).to_have_value("0")
    expect(page.locator("#pref-quiet")).to_have_value("30")
    page.get_by_label("Check every file (full scan) at least every (days)").fill("3")
    page.get_by_label("… and every (backups)").fill("20")
    page.get_by_label("Live backups wait for (seconds of quiet)").fill("45")
    page.click("#prefs-save")
    expect(page.locator("#toasts")).to_contain_text("Preferences saved")
    prefs = saved_prefs(agent)
    assert (prefs["full_scan_days"], prefs["full_scan_runs"], prefs["live_quiet_seconds"]) == (3, 20, 45)

    # The agent's rule (Prefs.from_dict), its message shown by the field; nothing saved.
    page.fill("#pref-full-days", "0")
    page.fill("#pref-quiet", "15")
    page.click("#prefs-save")
    expect(page.locator("#pref-full-days-error")).to_have_text("Must be between 1 and 365.")
    expect(page.locator("#pref-full-days")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#pref-quiet-error")).to_have_text("")
    assert page.evaluate("document.activeElement.id") == "pref-full-days"
    assert saved_prefs(agent) == prefs

    page.fill("#pref-full-days", "14")
    page.click("#prefs-save")
    expect(page.locator("#pref-full-days-error")).to_have_text("")
    expect(page.locator("#toasts")).to_contain_text("Preferences saved")
    assert (saved_prefs(agent)["full_scan_days"], saved_prefs(agent)["live_quiet_seconds"]) == (14, 15)


def test_overview_says_how_the_next_backup_looks_for_changes(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n", "Taxes/2025.pdf": b"t"})
    job = {"name": "Documents", "sources": [str(src)], "destination": {"path": str(tmp_path / "backups")}}
    agent.call("job_save", job=job, start=False)
    page = open_page("overview")
    line = page.locator("[data-job='Documents'] .next-scan")
    expect(line).to_have_text("Next backup: checks every file — this is the job's first backup")
    expect(page.locator("[data-job='Documents'] .live-line")).to_have_count(0)
    agent.backup("Documents")

    # An agent that just started did not watch before: the next backup checks every file, and says why.
    agent.stop()
    restarted = AgentProcess.start(tmp_path / "agent-process-2.log")
    try:
        expect(line).to_have_text("Next backup: checks every file — "
                                  "Plugback was not watching the folders at some point since the last backup",
                                  timeout=15_000)
        restarted.backup("Documents")     # under a watching agent: the journal counts from this one
        expect(line).to_have_text("Next backup: only changed folders (0 folders changed so far)")
        (src / "Taxes" / "2026.pdf").write_bytes(b"new")
        # how many folders one new file makes is the journal's rule (core/agent/journal.py): some, not none
        expect(line).to_have_text(re.compile(r"^Next backup: only changed folders \([1-9]\d* folders? changed so far\)$"),
                                  timeout=15_000)

        restarted.call("job_save", original_name="Documents", job={**job, "triggers": {"live": True}})
        expect(page.locator("[data-job='Documents'] .live-line")).to_have_text(
            "Live: backs up changes while the backup folder is reachable")
    finally:
        restarted.stop()
