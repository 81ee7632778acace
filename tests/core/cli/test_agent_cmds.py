"""``plugback job`` / ``drive`` edits as a real subprocess: the config's rules, the stored schedule,
the one new-passphrase prompt."""

from __future__ import annotations

import json

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
