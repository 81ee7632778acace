"""Issue #15 in headless Chromium against the real agent: the Restore page's "Versions…" of a file
(IPC ``versions``) lists its distinct versions newest first, and picking one restores that content."""

from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree, read_tree
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
A, B = b"alpha", b"bravo, a longer text"


def short_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:8]


def test_picking_the_middle_of_three_versions_restores_it(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": A, "same.txt": b"unchanged"})
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "b")},
                                "triggers": {"on_connect": False}})
    for content in (A, B, A):                   # changed, then changed back: three versions
        (src / "notes.txt").write_bytes(content)
        agent.backup("Docs")
    snaps = [s["id"] for s in agent.call("snapshots", job="Docs")]          # newest first
    page = open_page("restore")
    page.get_by_role("button", name="Open folder Documents").click()
    # The action shows on a selected (or focused) file row, and only on files.
    page.mouse.move(0, 0)
    action = page.get_by_role("button", name="Versions of notes.txt")
    expect(action).to_have_css("opacity", "0")
    page.get_by_label("Select notes.txt").check()
    expect(action).to_have_css("opacity", "1")
    action.click()

    rows = page.locator("#versions tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#versions")).to_contain_text("Documents/notes.txt — 3 versions")
    for row, (content, snap) in enumerate(zip((A, B, A), snaps, strict=True)):
        expect(rows.nth(row)).to_contain_text(short_hash(content))
        expect(rows.nth(row)).to_contain_text(snap)
        expect(rows.nth(row)).to_contain_text(f"({len(content)} bytes)")
        expect(rows.nth(row).locator("td").first).to_have_text(re.compile(r"\d{2}:\d{2}:\d{2}"))   # with seconds
    expect(rows.nth(0)).to_contain_text("(newest)")

    rows.nth(1).get_by_role("button", name=re.compile("^Select the version of .* to restore$")).click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    # That snapshot is open, and only that file is selected (ticked and focused).
    expect(page.locator("#restore-snapshot")).to_have_value(snaps[1])
    expect(page.locator("#restore-selection li")).to_have_count(1)
    expect(page.locator("#restore-selection")).to_contain_text("Documents/notes.txt")
    expect(page.get_by_label("Select notes.txt")).to_be_checked()
    expect(page.get_by_label("Select notes.txt")).to_be_focused()

    out = tmp_path / "restored"
    out.mkdir()
    page.check("#target-other")
    page.fill("#target-path", str(out))
    page.click("#restore-start")
    expect(page.locator("#restore-result")).to_contain_text("Restore finished", timeout=30000)
    assert read_tree(out) == {"Documents/notes.txt": B}
    wait_for(lambda: not agent.call("status")["restore"]["running"], 10, "the restore to end")


def test_folders_have_no_versions_action_and_a_failure_is_said(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": A, "sub/x.txt": b"x"})
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "b")},
                                "triggers": {"on_connect": False}})
    agent.backup("Docs")
    page = open_page("restore")
    page.get_by_role("button", name="Open folder Documents").click()
    expect(page.get_by_role("button", name="Versions of notes.txt")).to_have_count(1)
    expect(page.get_by_role("button", name="Versions of sub")).to_have_count(0)
    # One version only; and once the set is not there, the dialog says why instead of a list.
    page.get_by_role("button", name="Versions of notes.txt").click()
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Versions of notes.txt")).to_be_focused()
    (tmp_path / "b").rename(tmp_path / "b-moved")
    page.get_by_role("button", name="Versions of notes.txt").click()
    expect(page.get_by_role("dialog")).to_contain_text("Cannot list its versions.")
    expect(page.locator("#versions")).to_have_count(0)
