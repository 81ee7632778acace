"""``plugback job`` / ``drive`` edits as a real subprocess: the config's rules, the stored schedule,
the one new-passphrase prompt."""

from __future__ import annotations

import json
import re

from core.agent.config import Paths
from tests.support.cli import run_cli


def stored_jobs():
    return json.loads(Paths.default().config_file.read_text())["jobs"]


def test_a_schedule_typed_any_way_is_stored_canonical(tmp_path):
    (tmp_path / "D").mkdir()
    r = run_cli("job", "add", "Docs", "--source", tmp_path / "D", "--to", tmp_path / "S", "--every", "Daily@9:30")
    assert r.returncode == 0, r.stderr
    assert "daily at 09:30" in r.stdout
    assert stored_jobs()[0]["triggers"]["schedule"] == "daily@09:30"
    assert "Docs: " in run_cli("job", "list").stdout and "daily at 09:30" in run_cli("job", "list").stdout


def test_encrypted_job_passphrase(tmp_path, plugback_env):
    (tmp_path / "D").mkdir()
    add = ("job", "add", "Vault", "--source", tmp_path / "D", "--to", tmp_path / "S", "--encrypt")
    r = run_cli(*add, env={"PLUGBACK_PASSPHRASE": ""})      # no terminal to ask on, no variable
    assert r.returncode == 2 and "PLUGBACK_PASSPHRASE" in r.stderr and "Traceback" not in r.stderr
    assert not Paths.default().config_file.exists()          # nothing half-made
    assert run_cli(*add, env={"PLUGBACK_PASSPHRASE": "first secret"}).returncode == 0
    stored = plugback_env.keyring_file.read_text()
    # A second job of the same name is refused before its passphrase replaces the first one's.
    r = run_cli(*add, env={"PLUGBACK_PASSPHRASE": "second secret"})
    assert r.returncode == 2 and "exists" in r.stderr
    assert plugback_env.keyring_file.read_text() == stored
    assert [j["name"] for j in stored_jobs()] == ["Vault"]


def test_remove_and_forget_say_what_is_missing(tmp_path):
    r = run_cli("job", "remove", "Nope")
    assert r.returncode == 2 and "There is no job 'Nope'" in r.stderr
    r = run_cli("drive", "forget", "Blue")
    assert r.returncode == 2 and "There is no enrolled drive 'Blue'" in r.stderr


def test_job_run_refuses_a_set_it_did_not_make_until_adopted(tmp_path):
    from core.engine.repo import BackupSet
    from tests.support.engine import backup_path
    from tests.support.trees import make_tree

    theirs = make_tree(tmp_path / "theirs" / "Stuff", {"x.txt": b"x"})
    backup_path(tmp_path / "S", [theirs], job="Docs", host="strangers-pc")
    mine = make_tree(tmp_path / "D", {"a.txt": b"a"})
    assert run_cli("job", "add", "Docs", "--source", mine, "--to", tmp_path / "S").returncode == 0
    r = run_cli("job", "run", "Docs")                       # no agent: runs in this process
    assert r.returncode == 1 and "strangers-pc" in r.stderr and "plugback job adopt" in r.stderr
    assert len(BackupSet.open(tmp_path / "S").snapshot_ids()) == 1
    r = run_cli("job", "adopt", "Docs")                     # no terminal to ask on
    assert r.returncode == 2 and "computer 'strangers-pc'" in r.stdout and "--yes" in r.stderr
    assert "set_id" not in stored_jobs()[0]
    assert run_cli("job", "adopt", "Docs", "--yes").returncode == 0
    assert stored_jobs()[0]["set_id"] == BackupSet.open(tmp_path / "S").set_id
    assert run_cli("job", "run", "Docs").returncode == 0
    assert len(BackupSet.open(tmp_path / "S").snapshot_ids()) == 2
    assert "already backs up" in run_cli("job", "adopt", "Docs").stdout


def test_job_remove_deletes_its_passphrases_from_the_keyring(tmp_path, plugback_env):
    (tmp_path / "D").mkdir()
    (tmp_path / "D" / "a.txt").write_text("a")
    pw = {"PLUGBACK_PASSPHRASE": "secret"}
    assert run_cli("job", "add", "Vault", "--source", tmp_path / "D", "--to", tmp_path / "S", "--encrypt",
                   env=pw).returncode == 0
    assert run_cli("job", "run", "Vault", env={"PLUGBACK_PASSPHRASE": ""}).returncode == 0
    from keyrings.alt.file import PlaintextKeyring

    file_keyring = PlaintextKeyring()            # the subprocesses' keyring file (XDG_DATA_HOME)
    assert file_keyring.file_path == str(plugback_env.keyring_file)
    set_id = stored_jobs()[0]["set_id"]
    assert file_keyring.get_password("plugback", "job:Vault") == "secret"
    assert file_keyring.get_password("plugback", set_id) == "secret"
    assert run_cli("job", "remove", "Vault").returncode == 0
    assert file_keyring.get_password("plugback", "job:Vault") is None
    assert file_keyring.get_password("plugback", set_id) is None


# -- issue #15: truthful status, validation where the input is, help ------------------------------

def test_job_add_refuses_a_bad_name_with_the_windows_message_and_writes_nothing(tmp_path):
    from core.agent.config import job_name_problem

    (tmp_path / "D").mkdir()
    r = run_cli("job", "add", "a/b", "--source", tmp_path / "D", "--to", tmp_path / "S")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"plugback: {job_name_problem('a/b')}"
    assert "settings file" not in r.stderr
    assert not Paths.default().config_file.exists() and not (tmp_path / "S").exists()
    # The name is checked first: also before a missing drive is named.
    r = run_cli("job", "add", " Docs", "--source", tmp_path / "D", "--drive", "Nope")
    assert r.returncode == 2 and "cannot be used" in r.stderr and "Nope" not in r.stderr


def test_min_interval_is_in_hours_like_the_window(tmp_path):
    (tmp_path / "D").mkdir()
    add = ("--source", tmp_path / "D", "--to", tmp_path / "S", "--on-connect", "--min-interval")
    assert run_cli("job", "add", "A", *add, "2").returncode == 0
    assert run_cli("job", "add", "B", *add, "30m").returncode == 0
    r = run_cli("job", "add", "C", *add, "soon")
    assert r.returncode == 2 and "give hours" in r.stderr
    assert [j["triggers"]["min_interval_minutes"] for j in stored_jobs()] == [120, 30]


def test_help_describes_every_argument():
    import argparse

    from core.cli import build_parser

    def bare(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from bare(sub, [*path, name])
            elif not action.help and not isinstance(action, argparse._HelpAction):
                yield " ".join(path) + " " + (action.option_strings or [action.dest])[0]

    assert list(bare(build_parser(), ["plugback"])) == []
    assert "exit status" in run_cli("status", "--help").stdout.lower()


def test_status_without_an_agent_exits_non_zero_with_last_success_and_attempt(tmp_path):
    src = tmp_path / "D"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert run_cli("job", "add", "Docs", "--source", src, "--to", tmp_path / "S").returncode == 0
    assert run_cli("job", "run", "Docs").returncode == 0          # in this process: no agent runs
    r = run_cli("status", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 5 and data["agent"] is False
    (job,) = data["jobs"]
    assert job["last_success"]["status"] == "ok" and job["last_attempt"]["id"] == job["last_success"]["id"]
    assert job["attention"] is None and data["attention"] == []
    r = run_cli("status")
    assert r.returncode == 5 and "not running" in r.stdout
    assert "Docs: Last successful backup: just now (today " in r.stdout
    assert not re.search(r"\d{4}-\d\d-\d\dT", r.stdout)              # no raw ISO timestamp


def test_status_through_the_agent_exits_1_when_a_job_needs_attention_and_0_when_all_is_fine(tmp_path,
                                                                                          plugback_env):
    from tests.ui.helpers import AgentProcess

    src = tmp_path / "D"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert run_cli("job", "add", "Docs", "--source", src, "--to", tmp_path / "S").returncode == 0
    assert run_cli("job", "add", "Huge", "--source", tmp_path / "gone-later", "--to", tmp_path / "H").returncode \
        == 2                                                         # a missing folder is refused at once
    (tmp_path / "gone-later").mkdir()
    assert run_cli("job", "add", "Huge", "--source", tmp_path / "gone-later", "--to", tmp_path / "H").returncode == 0
    (tmp_path / "gone-later").rmdir()
    agent = AgentProcess.start(tmp_path / "agent.log")
    try:
        agent.backup("Docs")
        agent.call("run_job", name="Huge")
        wait = agent.wait_idle("Huge")
        assert wait["status"] == "failed"
        r = run_cli("status", "--json")
        data = json.loads(r.stdout)
        assert r.returncode == 1 and data["agent"] is True
        assert [a["job"] for a in data["attention"]] == ["Huge"]
        huge = next(j for j in data["jobs"] if j["name"] == "Huge")
        assert huge["last_success"] is None and huge["last_attempt"]["status"] == "failed"
        r = run_cli("status")
        assert r.returncode == 1
        assert "Huge: Last successful backup: never · last attempt failed just now: " in r.stdout
        agent.call("job_remove", name="Huge")
        r = run_cli("status")
        assert r.returncode == 0, r.stdout
        assert "Agent: running" in r.stdout
    finally:
        agent.stop()


def test_status_says_how_the_next_backup_looks_for_changes_in_the_overview_s_words():
    from datetime import datetime, timezone

    from core.cli.agent_cmds import job_line

    job = {"name": "Docs", "last_success": None, "last_attempt": None, "running": False, "drive_present": True,
           "watching": True, "next_scan_text": "Next backup: only changed folders (2 folders changed so far)"}
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert job_line(job, now).endswith("; drive connected; next backup: only changed folders (2 folders changed so far)")
    assert "next backup:" not in job_line({**job, "watching": False}, now)   # no agent: nothing is known


def test_job_add_to_a_remote_keeps_the_spec_and_always_encrypts(tmp_path, plugback_env):
    (tmp_path / "D").mkdir()
    add = ("job", "add", "Cloud", "--source", tmp_path / "D", "--every", "daily@02:00")
    r = run_cli(*add, "--to", "rclone:mycloud:backups/laptop", env={"PLUGBACK_PASSPHRASE": "cloud secret"})
    assert r.returncode == 0, r.stderr
    assert "-> rclone:mycloud:backups/laptop; daily at 02:00" in r.stdout
    (job,) = stored_jobs()
    assert job["destination"] == {"remote": "rclone:mycloud:backups/laptop"} and job["encrypt"] is True
    assert "job_3acloud" in plugback_env.keyring_file.read_text()   # job:Cloud, for the agent's first run
    r = run_cli("job", "add", "Bad", "--source", tmp_path / "D", "--to", "rclone:mycloud:../x")
    assert r.returncode != 0 and "destination.remote" in r.stderr and "'..'" in r.stderr
    r = run_cli("job", "add", "Plug", "--source", tmp_path / "D", "--to", "rclone:c:x", "--on-connect")
    assert r.returncode != 0 and "on_connect" in r.stderr and "schedule or by hand" in r.stderr
