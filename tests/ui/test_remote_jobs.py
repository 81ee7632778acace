"""A job to a cloud or network location (issue #13) in headless Chromium, against the real agent
process and Debian's rclone (a ``local`` remote of the test's own rclone configuration): the job
editor lists the remotes, "Test connection" says ok and says what is wrong, the job is saved
encrypted and backs up."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.rclone import local_remotes
from tests.support.trees import make_tree
from tests.ui.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def rclone_env(tmp_path, monkeypatch):
    """The test's rclone configuration (remotes ``cloud`` and ``nas``), for the agent process it starts."""
    world = local_remotes(tmp_path / "rclone", monkeypatch, "cloud", "nas")
    world._add("gone", {"type": "webdav", "url": "http://127.0.0.1:9/", "vendor": "other"})   # nothing listens
    # rclone's own retries short (its environment flags), so an unreachable server fails fast.
    monkeypatch.setenv("RCLONE_LOW_LEVEL_RETRIES", "1")
    monkeypatch.setenv("RCLONE_CONTIMEOUT", "5s")
    return world


def test_job_editor_picks_a_remote_tests_it_and_the_job_backs_up(rclone_env, open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n" * 100})
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not a backup")
    page = open_page("jobs/new")
    page.fill("#job-name", "Offsite")
    page.fill("#sources-path", str(src))
    page.click("#sources-add")
    page.check("#dest-kind-remote")
    expect(page.locator("#dest-remote option")).to_have_text(["Choose a remote…", "cloud", "gone", "nas"])
    # A remote set is always encrypted and runs on its schedule: nothing to plug in.
    expect(page.locator("#job-encrypt")).to_be_checked()
    expect(page.locator("#job-encrypt")).to_be_disabled()
    expect(page.locator("#trig-connect")).not_to_be_checked()
    expect(page.locator("#trig-connect")).to_be_disabled()

    page.select_option("#dest-remote", "cloud")
    page.fill("#dest-remote-path", str(tmp_path / "photos"))
    page.click("#dest-remote-test")
    expect(page.locator("#dest-remote-result [data-ok='false']")).to_contain_text("is not empty")
    target = tmp_path / "offsite"
    page.fill("#dest-remote-path", str(target))
    page.click("#dest-remote-test")
    expect(page.locator("#dest-remote-result [data-ok='true']")).to_contain_text(f"Connected to rclone:cloud:{target}")

    page.select_option("#sched-kind", "daily")
    page.fill("#job-pass", "a long passphrase")
    page.fill("#job-pass2", "a long passphrase")
    page.click("#job-save")
    page.wait_for_url("**#overview")
    (job,) = agent.call("config_get")["jobs"]
    assert job["destination"] == {"remote": f"rclone:cloud:{target}"} and job["encrypt"] is True
    assert job["triggers"]["on_connect"] is False

    agent.call("run_job", name="Offsite")
    (run,) = wait_for(lambda: [r for r in agent.call("history", job="Offsite") if r["status"] != "running"],
                      60, "the backup to the remote")
    assert run["status"] == "ok", agent.call("run_log", run_id=run["id"])["log"]
    assert (target / "plugback.json").is_file()
    page = open_page("jobs")
    expect(page.locator("[data-job='Offsite']")).to_contain_text(f"rclone:cloud:{target}")
    # The Restore page browses the remote job's snapshots like a drive job's.
    page = open_page("restore")
    page.select_option("#restore-job", "job:Offsite")
    expect(page.locator("#restore-snapshot option")).to_have_count(1)
    expect(page.locator("#restore-snapshot-facts")).to_contain_text("1 file")
    expect(page.locator("#restore-tree")).to_contain_text("Documents")


@pytest.fixture
def no_rclone(tmp_path, monkeypatch):
    """A PATH without rclone on it (this venv's programs only), for the agent process it starts."""
    import sys
    from pathlib import Path

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))


def test_the_editor_says_what_to_install_without_rclone(no_rclone, open_page, agent):
    page = open_page("jobs/new")
    page.check("#dest-kind-remote")
    missing = page.locator("#dest-remote-missing [data-code='rclone_missing']")
    expect(missing).to_contain_text("need rclone, which was not found")
    expect(missing).to_contain_text("sudo apt install rclone")
    expect(page.locator("#dest-remote option")).to_have_text(["No rclone remotes yet"])


def test_overview_shows_a_remote_job_waiting_for_the_network(rclone_env, monkeypatch, open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n"})
    agent.call("job_save", job={"name": "Offsite", "sources": [str(src)], "destination": {"remote": "rclone:gone:x"}},
               passphrase="a long passphrase")
    agent.call("run_job", name="Offsite")
    page = open_page("overview")
    card = page.locator("[data-job='Offsite']")
    expect(card.locator("[data-waiting='true']")).to_have_text("Waiting for the network", timeout=90_000)
    expect(card.locator(".waiting")).to_contain_text("could not be reached")
    expect(card.locator(".checked")).to_have_text("Not checked yet")   # a remote job's check line
    assert agent.call("history", job="Offsite") == []   # nothing ran: nothing recorded, no failure shown


def test_a_remote_job_is_unlocked_in_the_window_and_shows_its_recovery_key(rclone_env, open_page, agent, tmp_path):
    """The agent's keyring has no passphrase for the set (made elsewhere): the Restore page asks,
    the agent opens the set through rclone, and its recovery key is shown as a drive set's is."""
    from core.agent.config import Job
    from core.agent.history import History
    from core.agent.keys import Secret, make_unlocker
    from core.agent.remote_jobs import open_remote, run_remote_job
    from core.engine import crypto

    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n" * 100})
    spec = f"rclone:cloud:{tmp_path / 'offsite'}"
    job = {"name": "Offsite", "sources": [str(src)], "destination": {"remote": spec}}
    made = run_remote_job(Job.from_dict(job), History(tmp_path / "elsewhere.jsonl"), passphrase="a long passphrase")
    assert made.status == "ok", made.log
    with open_remote(spec, make_unlocker(Secret.passphrase("a long passphrase"))) as rset:
        key = crypto.recovery_key(rset.keys)
    agent.call("job_save", job=job)
    page = open_page("restore")
    page.select_option("#restore-job", "job:Offsite")
    expect(page.locator("#unlock")).to_contain_text("This backup is encrypted")
    page.fill("#unlock-secret", "not it")
    page.click("#unlock-go")
    expect(page.locator("#unlock-error")).to_contain_text("Wrong passphrase")
    page.fill("#unlock-secret", "a long passphrase")
    page.click("#unlock-go")
    expect(page.locator("#unlock")).to_have_count(0)
    expect(page.locator("#restore-tree")).to_contain_text("Documents")
    page.click("#restore-recovery-key")
    expect(page.locator("#recovery-key")).to_have_text(key)


def test_the_first_run_backs_up_to_a_cloud_location(rclone_env, open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n" * 100})
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not a backup")
    page = open_page()
    page.fill("#sources-path", str(src))
    page.click("#sources-add")
    page.locator("#sources-list li", has_text=str(src)).wait_for()
    page.click("#welcome-next")
    page.click("#welcome-to-remote")
    expect(page.get_by_role("heading", name="Back up to a cloud or network location")).to_be_visible()
    expect(page.locator("#dest-remote option")).to_have_text(["Choose a remote…", "cloud", "gone", "nas"])
    page.select_option("#dest-remote", "cloud")
    page.fill("#dest-remote-path", str(tmp_path / "photos"))
    page.click("#welcome-next")            # Next tests the connection, and stops on what is wrong
    expect(page.locator("#dest-remote-result [data-ok='false']")).to_contain_text("is not empty")
    target = tmp_path / "offsite"
    page.fill("#dest-remote-path", str(target))
    page.click("#welcome-next")
    expect(page.get_by_role("heading", name="Name your backup")).to_be_visible()
    expect(page.locator("#welcome-remote-when")).to_contain_text(f"rclone:cloud:{target} every day at 12:00")
    expect(page.locator("#welcome-encrypt")).to_be_checked()
    expect(page.locator("#welcome-encrypt")).to_be_disabled()
    page.fill("#welcome-pass", "a long passphrase")
    page.fill("#welcome-pass2", "a long passphrase")
    page.click("#welcome-start")
    expect(page.locator("#welcome-backup-state")).to_contain_text(f"1 file (100 B) is safe at rclone:cloud:{target}",
                                                                   timeout=60_000)
    (job,) = agent.call("config_get")["jobs"]
    assert job["destination"] == {"remote": f"rclone:cloud:{target}"} and job["encrypt"] is True
    assert job["triggers"]["on_connect"] is False and job["triggers"]["schedule"] == "daily@12:00"
    # Encrypted: its recovery key is shown once, right after the first backup made the set.
    key = agent.call("recovery_key", job=job["name"])["recovery_key"]
    expect(page.locator("#dialog #recovery-key")).to_have_text(key, timeout=20_000)


def test_the_first_run_says_what_to_install_without_rclone(no_rclone, open_page, agent, tmp_path):
    (tmp_path / "Photos").mkdir()
    page = open_page()
    page.fill("#sources-path", str(tmp_path / "Photos"))
    page.click("#sources-add")
    page.locator("#sources-list li", has_text=str(tmp_path / "Photos")).wait_for()
    page.click("#welcome-next")
    page.click("#welcome-to-remote")
    expect(page.locator("#dest-remote-missing [data-code='rclone_missing']")).to_contain_text("sudo apt install rclone")
    page.click("#welcome-next")
    expect(page.locator("#dest-remote-error")).to_have_text("Choose a remote.")
    page.click("#welcome-to-drive")
    expect(page.get_by_role("heading", name="Plug in your backup drive")).to_be_visible()


def test_reading_cloud_backups_back_is_a_preference_off_by_default(open_page, agent):
    page = open_page("prefs")
    box = page.locator("#pref-read-back-remote")
    expect(box).not_to_be_checked()
    expect(page.locator("label", has=box)).to_contain_text("may charge for the downloads")
    box.check()
    page.click("#prefs-save")
    wait_for(lambda: agent.call("config_get")["prefs"]["read_back_remote"], 10, "the preference saved")
    page.reload()
    expect(page.locator("#pref-read-back-remote")).to_be_checked()


def test_the_first_run_goes_on_in_a_backup_already_at_the_location(rclone_env, open_page, agent, tmp_path):
    """This computer set up again: the location holds its backup; with its passphrase the first run
    goes on in that set (sending nothing it has) instead of failing or starting over."""
    from core.agent.config import Job
    from core.agent.history import History
    from core.agent.remote_jobs import run_remote_job

    src = make_tree(tmp_path / "Documents", {"notes.txt": b"n" * 100})
    target = tmp_path / "offsite"
    before = Job.from_dict({"name": "Old", "sources": [str(src)], "destination": {"remote": f"rclone:cloud:{target}"}})
    assert run_remote_job(before, History(tmp_path / "old.jsonl"), passphrase="a long passphrase").status == "ok"
    page = open_page()
    page.fill("#sources-path", str(src))
    page.click("#sources-add")
    page.locator("#sources-list li", has_text=str(src)).wait_for()
    page.click("#welcome-next")
    page.click("#welcome-to-remote")
    page.select_option("#dest-remote", "cloud")
    page.fill("#dest-remote-path", str(target))
    page.click("#welcome-next")
    expect(page.locator("#welcome-remote-found")).to_contain_text("A Plugback backup is there already")
    page.fill("#welcome-pass", "a long passphrase")
    page.fill("#welcome-pass2", "a long passphrase")
    page.click("#welcome-start")
    expect(page.locator("#welcome-backup-state")).to_contain_text("0 files (0 B) are safe", timeout=60_000)
    (job,) = agent.call("config_get")["jobs"]
    assert job["set_id"] == before.set_id
