"""core/agent/jobs.py: one job end to end on the real engine (destination -> set -> history)."""

import pytest

from core.agent.config import Config, Destination, Job
from core.agent.history import History
from core.agent.jobs import resolve_target, retention_policy, run_job
from core.engine.layout import SetLayout
from core.engine.progress import CancelToken
from core.engine.repo import BackupSet
from core.errors import DriveNotConnected
from tests.support.cli import run_cli
from tests.support.trees import make_tree, read_tree


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 1000, "empty/": None})


def folder_job(src, dest, **kw):
    return Job(name="Docs", sources=[str(src)], destination=Destination(path=str(dest)), **kw)


def test_folder_job_runs_and_records_history(tmp_path, src):
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(src, tmp_path / "set")
    seen = []
    outcome = run_job(job, Config(jobs=[job]), history, progress=seen.append)
    assert outcome.status == "ok" and outcome.flushed and outcome.error is None
    assert outcome.files_copied == 2
    assert BackupSet.open(tmp_path / "set").snapshot_ids() == [outcome.snapshot_id]
    assert seen and {p.phase for p in seen} >= {"copy"}
    run = history.get(outcome.run_id)
    assert run.status == "ok" and run.snapshot_id == outcome.snapshot_id and run.files_copied == 2
    assert "snapshot " + outcome.snapshot_id in history.log(outcome.run_id)
    # Second run: nothing changed, nothing copied, a new snapshot.
    again = run_job(job, Config(jobs=[job]), history)
    assert again.status == "ok" and again.files_copied == 0 and again.snapshot_id != outcome.snapshot_id
    assert [r.id for r in history.runs("Docs")] == [again.run_id, outcome.run_id]


def test_drive_job_goes_to_the_drive_by_id(ext4_drive, tmp_path, src):
    from core.agent.drives import write_drive_file

    info = write_drive_file(ext4_drive.mount_point, "Blue")
    job = Job(name="Docs", sources=[str(src)], destination=Destination(drive_id=info.drive_id))
    cfg = Config(jobs=[job], drives=[{"drive_id": info.drive_id, "label": "Blue"}])
    target = resolve_target(job, cfg, host="pc")
    assert target.set_path == ext4_drive.mount_point / "Plugback" / "pc" / "Docs" and target.drive_id == info.drive_id
    outcome = run_job(job, cfg, History(tmp_path / "h.sqlite3"), host="pc")
    assert outcome.status == "ok"
    assert read_tree(SetLayout(target.set_path).latest / "Docs") == read_tree(src)
    ext4_drive.unmount()
    with pytest.raises(DriveNotConnected, match="Blue"):
        resolve_target(job, cfg)


def test_missing_source_fails_with_message(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(tmp_path / "gone", tmp_path / "set")
    outcome = run_job(job, Config(jobs=[job]), history)
    assert outcome.status == "failed" and outcome.error.code == "source_missing"
    run = history.get(outcome.run_id)
    assert run.status == "failed" and "does not exist" in run.error and run.error_code == "source_missing"


def test_cancelled_run_is_recorded(tmp_path, src):
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(src, tmp_path / "set")
    cancel = CancelToken()
    cancel.cancel()
    outcome = run_job(job, Config(jobs=[job]), history, cancel=cancel)
    assert outcome.status == "cancelled" and history.get(outcome.run_id).status == "cancelled"
    assert not outcome.flushed


def test_retention_keeps_last_n(tmp_path, src):
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(src, tmp_path / "set", retention={"keep_last": 2})
    for i in range(4):
        (src / "a.txt").write_bytes(b"v%d" % i)
        assert run_job(job, Config(jobs=[job]), history).status == "ok"
    assert len(BackupSet.open(tmp_path / "set").snapshot_ids()) == 2
    assert retention_policy(job).last == 2 and retention_policy(folder_job(src, "/x")).within_hours == 24


def test_cli_job_add_list_run_in_process(tmp_path, src):
    dest = tmp_path / "set"
    r = run_cli("job", "add", "Docs", "--source", src, "--to", dest, "--every", "daily@09:30", "--keep-last", "3")
    assert r.returncode == 0, r.stderr
    assert "daily at 09:30" in r.stdout
    r = run_cli("job", "list", "--json")
    import json

    (job,) = json.loads(r.stdout)
    assert job["retention"] == {"keep_last": 3} and job["destination"] == {"path": str(dest)}
    r = run_cli("job", "add", "Docs", "--source", src, "--to", dest)
    assert r.returncode == 2 and "exists" in r.stderr
    r = run_cli("job", "add", "Bad", "--source", src, "--to", dest, "--every", "sometimes")
    assert r.returncode == 2 and "schedule" in r.stderr
    r = run_cli("job", "run", "Docs")     # no agent: runs in this process
    assert r.returncode == 0, r.stderr
    assert "Backed up 'Docs'" in r.stdout
    assert len(BackupSet.open(dest).snapshot_ids()) == 1
    r = run_cli("status", "--json")
    status = json.loads(r.stdout)
    assert status["agent"] is False and status["jobs"][0]["last_run"]["status"] == "ok"
    assert "Last successful backup: just now" in run_cli("status").stdout
    assert run_cli("job", "remove", "Docs").returncode == 0
    assert run_cli("job", "run", "Docs").returncode == 2


def test_encrypted_job_takes_its_passphrase_from_the_keyring(tmp_path, src):
    import json

    import keyring

    from core.agent import keys
    from core.agent.jobs import job_key_name

    keys.store_passphrase(job_key_name("Docs"), "correct horse")
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(src, tmp_path / "set", encrypt=True)
    first = run_job(job, Config(jobs=[job]), history)
    assert first.status == "ok", first.log
    bset_meta = (tmp_path / "set" / "plugback.json").read_text()
    assert '"encryption": null' not in bset_meta
    # The set's own entry (by set_id) now opens it unattended, even without the job's entry.
    set_id = json.loads((tmp_path / "set" / "plugback.json").read_text())["set_id"]
    stored = keyring.get_keyring().passwords
    assert stored[(keys.SERVICE, set_id)] == "correct horse"
    del stored[(keys.SERVICE, job_key_name("Docs"))]
    assert run_job(job, Config(jobs=[job]), history).status == "ok"


def test_cli_encrypted_job_add_stores_the_passphrase(tmp_path, src):
    r = run_cli("job", "add", "Secret", "--source", src, "--to", tmp_path / "set", "--encrypt",
                env={"PLUGBACK_PASSPHRASE": "pw-1"})
    assert r.returncode == 0, r.stderr
    r = run_cli("job", "run", "Secret")          # no PLUGBACK_PASSPHRASE now: the keyring has it
    assert r.returncode == 0, r.stderr
    assert '"encryption": null' not in (tmp_path / "set" / "plugback.json").read_text()
    r = run_cli("job", "add", "Other", "--source", src, "--to", tmp_path / "set2", "--encrypt")
    assert r.returncode == 2 and "PLUGBACK_PASSPHRASE" in r.stderr


def test_encrypt_job_on_a_plain_set_fails_clearly_and_a_missing_source_creates_nothing(tmp_path, src):
    history = History(tmp_path / "h.sqlite3")
    plain = folder_job(src, tmp_path / "set")
    assert run_job(plain, Config(jobs=[plain]), history).status == "ok"
    secret = folder_job(src, tmp_path / "set", encrypt=True)
    outcome = run_job(secret, Config(jobs=[secret]), history, passphrase="pw")
    assert outcome.status == "failed" and "not encrypted" in outcome.error.message
    assert history.get(outcome.run_id).error_code == outcome.error.code == "bad_input"
    gone = Job(name="Gone", sources=[str(tmp_path / "nowhere")], destination=Destination(path=str(tmp_path / "new")))
    assert run_job(gone, Config(jobs=[gone]), history).status == "failed"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("codes, text", [
    (["unreadable"], "1 file skipped"),
    (["unreadable", "unreadable", "special_file"], "2 files skipped, 1 special file skipped"),
    (["kept_previous"], "1 file kept its previous version"),
    (["kept_previous"] * 3, "3 files kept their previous version"),
    (["latest_edited"], "1 copy in Latest/ changed outside Plugback (its older version is lost)"),
    (["latest_edited"] * 2, "2 copies in Latest/ changed outside Plugback (their older versions are lost)"),
    (["latest_foreign"] * 2, "2 folders in Latest/ hold files Plugback did not put there"),
    (["snapshot_damaged"], "1 damaged snapshot (everything was copied again)"),
    (["changed_while_reading"] * 1001, "1,001 files changed while copied (copied again next time)"),
])
def test_warning_summary_counts_in_words(codes, text):
    from core.agent.jobs import warning_summary
    from core.engine.progress import RunWarning, WarningCode

    summary = warning_summary([RunWarning(WarningCode(c), f"/p/{i}", "why") for i, c in enumerate(codes)])
    assert summary == text and "(s)" not in summary


def test_no_counted_word_with_a_parenthesised_plural_in_the_agent_or_its_cli():
    """Issue #15: "file(s)" / "snapshot(s)" are gone from every text; core.agent.words.plural counts."""
    import io
    import re
    import tokenize
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    files = [*sorted((root / "core/agent").glob("*.py")), root / "core/cli/agent_cmds.py"]
    found = [f"{f.name}:{tok.start[0]}" for f in files if f.name != "words.py"
             for tok in tokenize.generate_tokens(io.StringIO(f.read_text()).readline)
             if tok.type == tokenize.STRING and re.search(r"[a-z]\(s\)", tok.string)]
    assert len(files) > 10 and found == []


def test_retention_logs_count_in_words(tmp_path, src):
    history = History(tmp_path / "h.sqlite3")
    job = folder_job(src, tmp_path / "set", retention={"keep_last": 1})
    run_job(job, Config(jobs=[job]), history)
    (src / "a.txt").write_bytes(b"alpha two")
    second = run_job(job, Config(jobs=[job]), history)
    assert "retention: forgot 1 old snapshot, freed " in history.log(second.run_id)
