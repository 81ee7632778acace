"""Issue #15 in headless Chromium against the real agent: restore on a new computer from a real
ext4 drive holding another computer's sets (plain, and encrypted: unlocked with a wrong then the
right secret), and the Restore page's selection, result and search."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from core.agent.drives import enroll
from core.engine import crypto
from core.engine.layout import drive_set_path
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree, read_tree
from tests.ui.helpers import unlock_wrong_then_right, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASS = "the old laptop's passphrase"


def old_drive(mount, tmp_path, *, passphrase=None, job="My files", drive=True):
    """The old computer's drive (or a copy of it in a folder): Plugback/old-laptop/<job>, one snapshot."""
    if drive:
        enroll(mount, "Old drive")
    src = make_tree(tmp_path / "old" / "Documents", {"ada.txt": b"ada lovelace", "sub/b.txt": b"bravo"})
    set_path = drive_set_path(mount, "old-laptop", job)
    backup_path(set_path, [src], job=job, host="old-laptop", parents=True, passphrase=passphrase)
    return set_path


def restore_selected_into(page, folder, *, create):
    page.check("#target-other")
    page.fill("#target-path", str(folder))
    page.click("#restore-start")
    if create:
        expect(page.get_by_role("dialog")).to_contain_text(f"There is no folder at {folder}")
        page.get_by_role("button", name="Create and restore").click()
    expect(page.locator("#restore-result")).to_contain_text("Restore finished", timeout=30000)


@pytest.mark.realdrive
def test_a_fresh_plugback_restores_from_another_computers_drive(open_page, agent, ext4_drive, tmp_path):
    set_path = old_drive(ext4_drive.mount_point, tmp_path)
    page = open_page("restore")
    # No job here, yet the drive's set is offered, under its computer.
    group = page.locator("#restore-job optgroup[label='Made on old-laptop']")
    expect(group.locator("option")).to_have_text(["My files — drive Old drive"])
    expect(page.locator("#restore-job")).to_have_value(f"set:{set_path}")
    expect(page.locator("#target-original")).to_be_disabled()
    expect(page.locator("#target-original-note")).to_contain_text("made on old-laptop")
    page.get_by_role("button", name="Open folder Documents").click()
    page.get_by_label("Select ada.txt").check()
    page.get_by_label("Select sub").check()
    expect(page.locator("#restore-selection li")).to_have_count(3)        # two items and "Clear"
    out = tmp_path / "home" / "From the old laptop"                        # not there yet
    (tmp_path / "home").mkdir()
    page.fill("#target-path", str(out))
    expect(page.locator("#restore-plan")).to_contain_text(str(out / "Documents"))
    restore_selected_into(page, out, create=True)
    assert read_tree(out) == {"Documents/ada.txt": b"ada lovelace", "Documents/sub/b.txt": b"bravo"}
    # The selection is cleared after the restore (nothing is restored twice by accident).
    expect(page.locator("#restore-selected")).to_have_text("Select files or folders above.")
    expect(page.get_by_label("Select ada.txt")).not_to_be_checked()
    expect(page.locator("#restore-start")).to_be_disabled()


@pytest.mark.realdrive
def test_an_encrypted_set_is_unlocked_in_the_window(open_page, agent, ext4_drive, tmp_path):
    set_path = old_drive(ext4_drive.mount_point, tmp_path, passphrase=PASS)
    key = crypto.recovery_key(open_set(set_path, lambda enc, sid: crypto.unlock_with_passphrase(enc, PASS)).keys)
    page = open_page("restore")
    expect(page.locator("#restore-job option")).to_have_text(["My files (encrypted) — drive Old drive"])
    expect(page.locator("#unlock")).to_contain_text("This backup is encrypted")
    # No OS keyring for the agent's tests? Either way the page says what "remember" means.
    expect(page.locator("#unlock-remember, #unlock-no-keyring")).to_have_count(1)
    page.fill("#unlock-secret", "not it")
    page.click("#unlock-go")
    expect(page.locator("#unlock-error")).to_contain_text("Wrong passphrase")
    page.check("#unlock-recovery")
    page.fill("#unlock-secret", key)
    page.keyboard.press("Enter")
    expect(page.locator("#unlock")).to_have_count(0)
    page.get_by_role("button", name="Open folder Documents").click()
    page.get_by_label("Select ada.txt").check()
    out = tmp_path / "restored"
    out.mkdir()
    restore_selected_into(page, out, create=False)
    assert read_tree(out) == {"Documents/ada.txt": b"ada lovelace"}
    # The set stays open for this session: a reload browses without asking again,
    # and its recovery key can be shown to keep.
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    expect(page.get_by_role("button", name="Open folder Documents")).to_be_visible()
    expect(page.locator("#unlock")).to_have_count(0)
    page.click("#restore-recovery-key")
    expect(page.locator("#recovery-key")).to_have_text(key)
    expect(page.get_by_role("button", name="Done")).to_be_disabled()      # asks to confirm it was kept
    page.check("#recovery-kept")
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    set_id = agent.call("recovery_key", set=str(set_path))["set_id"]
    record = agent.paths.data_dir / "recovery-keys.json"
    wait_for(record.exists, 10, "the key recorded as kept")
    assert json.loads(record.read_text()) == {"shown": [set_id], "confirmed": [set_id]}


def test_a_passphrase_unlocks_a_set_in_an_opened_folder(open_page, agent, tmp_path):
    set_path = old_drive(tmp_path / "copy-of-the-drive", tmp_path, passphrase=PASS, drive=False)
    page = open_page("restore")
    expect(page.locator("#restore-nothing")).to_contain_text("nothing to restore yet")
    page.fill("#restore-open-path", str(tmp_path / "nowhere-special"))
    (tmp_path / "nowhere-special").mkdir()
    page.click("#restore-open-go")
    expect(page.locator("#restore-open-error")).to_contain_text("No Plugback backup")
    page.fill("#restore-open-path", str(tmp_path / "copy-of-the-drive"))
    page.click("#restore-open-go")
    expect(page.locator("#restore-job")).to_have_value(f"set:{set_path}")
    unlock_wrong_then_right(page, PASS)


def test_the_result_names_renamed_files_and_search_shows_versions(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"ada.txt": b"first", "same.txt": b"unchanged"})
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "b")}})
    agent.backup("Docs")
    (src / "ada.txt").write_bytes(b"second, longer")
    agent.backup("Docs")
    agent.backup("Docs")
    page = open_page("restore")
    page.fill("#restore-search", "txt")
    page.click("#restore-search-go")
    # Two files, three versions (same.txt is one version held by all three snapshots).
    rows = page.locator("#search-results tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#search-results")).to_contain_text("3 versions found")
    same = rows.filter(has_text="same.txt")
    expect(same).to_contain_text("3 backups")
    expect(same).to_contain_text("9 bytes")
    expect(same.locator("td").nth(1)).to_have_text(re.compile(r"\d{2}:\d{2}:\d{2}"))   # with seconds
    rows.filter(has_text="ada.txt").filter(has_text="5 bytes").get_by_role("button", name="Select this version").click()
    expect(page.locator("#restore-selection")).to_contain_text("Documents/ada.txt")
    expect(page.locator("#restore-conflict")).to_have_value("keep_both")
    page.click("#restore-start")
    expect(page.locator("#restore-result")).to_contain_text("Restore finished", timeout=30000)
    expect(page.locator("#restore-renamed")).to_contain_text(str(src / "ada (restored).txt"))
    assert (src / "ada (restored).txt").read_bytes() == b"first"
    assert (src / "ada.txt").read_bytes() == b"second, longer"
    expect(page.locator("#restore-selection li")).to_have_count(0)
    wait_for(lambda: not agent.call("status")["restore"]["running"], 10, "the restore to end")


CLIPPED_OPTIONS = """(select) => {
  // The width each option's text needs in the select's font, against the room the closed select has
  // (its inner width less the drop-down arrow): the visible text must not be cut.
  const style = getComputedStyle(select);
  const pen = document.createElement('canvas').getContext('2d');
  pen.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20;
  return [...select.options].filter((o) => pen.measureText(o.text).width > room).map((o) => o.text);
}"""


@pytest.mark.parametrize("width", [920, 1200])
def test_the_snapshot_list_shows_its_whole_text(open_page, agent, tmp_path, width):
    src = make_tree(tmp_path / "Documents", {f"f{i}.txt": b"x" * i for i in range(1, 30)})
    agent.call("job_save", job={"name": "Documents and photos of the family", "sources": [str(src)],
                                "destination": {"path": str(tmp_path / "backups")}})
    agent.backup("Documents and photos of the family")
    (src / "new.txt").write_bytes(b"new")
    agent.backup("Documents and photos of the family")
    page = open_page("restore", width=width)
    select = page.locator("#restore-snapshot")
    expect(select.locator("option")).to_have_count(2)
    assert select.evaluate(CLIPPED_OPTIONS) == []
    # The details the short label leaves out are with the selected snapshot, and in each option's title.
    expect(page.locator("#restore-snapshot-facts")).to_have_text(re.compile(r"^30 files, \d+ B$"))
    assert re.search(r"29 files", select.locator("option").nth(1).get_attribute("title"))
    select.select_option(index=1)
    expect(page.locator("#restore-snapshot-facts")).to_have_text(re.compile(r"^29 files, \d+ B$"))
