"""core/agent/watching.py's words: the Overview's lines on how the next backup looks for changes and on
live mode (the window shows them as they are; the reasons come from core/agent/journal.py)."""

from core.agent.config import Config, Destination, Job, Triggers
from core.agent.journal import FULL, JOURNAL, reason_text
from core.agent.watching import live_words, next_scan_words, offline_scan_status


def test_the_next_backup_in_words():
    assert next_scan_words({"next_scan": JOURNAL, "changed_folders": 2021}) == \
        "Next backup: only changed folders (2,021 folders changed so far)"
    assert next_scan_words({"next_scan": JOURNAL, "changed_folders": 1}) == \
        "Next backup: only changed folders (1 folder changed so far)"
    assert next_scan_words({"next_scan": FULL, "next_scan_reason": reason_text("first")}) == \
        "Next backup: checks every file — this is the job's first backup"


def job(live: bool, **dest) -> Job:
    return Job("Docs", ["/src"], Destination(**dest), Triggers(live=live))


def test_a_live_job_names_its_drive_or_its_folder():
    assert live_words(job(True, drive_id="d1"), "Backup A") == \
        "Live: backs up changes while “Backup A” is connected"
    assert live_words(job(True, path="/mnt/nas"), None) == "Live: backs up changes while the backup folder is reachable"
    assert live_words(job(False, drive_id="d1"), "Backup A") is None


def test_without_an_agent_the_words_say_nothing_is_watched(paths):
    config = Config(drives=[{"drive_id": "d1", "label": "Backup A"}])
    st = offline_scan_status(paths, job(True, drive_id="d1"), config)
    assert st["next_scan_text"] == f"Next backup: checks every file — {reason_text('no_watch')}"
    assert st["live_text"] == "Live: backs up changes while “Backup A” is connected"
