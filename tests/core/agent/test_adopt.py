"""A job is bound to the set it made; a set found at its destination is used only after the user
confirms (core/agent/adopt.py, issue #10). The real in-process agent and its IPC handlers, the
real engine, and for the stranger's stick a real ext4 drive."""

import json
import os
import shutil

import pytest

from core.agent.config_file import read_config, update_config
from core.agent.drives import enroll
from core.agent.handlers import Handlers
from core.agent.jobs import host_name
from core.engine import crypto
from core.engine.layout import drive_set_path
from core.engine.repo import BackupSet
from core.errors import SetNeedsConfirmation, UsageError
from core.platform.notify import read_log
from tests.support.agent import wait_for
from tests.support.engine import backup_path
from tests.support.trees import make_tree, read_tree

DEFAULT_JOB = "My files"   # what the first-run window calls the first job (ui/web/pages/welcome.js)


@pytest.fixture
def agent(make_agent):
    agent, watcher = make_agent()
    return agent, watcher, Handlers(agent).table()


def run_once(agent, handlers, name):
    """Start the job by hand (as "Back up now" does) and wait for its run; returns it."""
    before = len(agent.history.runs(name))
    handlers["run_job"]({"name": name})
    return wait_for(lambda: len(agent.history.runs(name)) > before and not agent.running()
                    and agent.history.runs(name)[0].status != "running" and agent.history.runs(name)[0],
                    what=f"a run of {name}")


def foreign_set(set_path, tmp_path, *, host="strangers-pc", passphrase=None):
    """A set someone else made (another computer, a job named like ours), with one snapshot."""
    theirs = make_tree(tmp_path / "theirs" / "Stuff", {"notes.txt": b"not yours"})
    backup_path(set_path, [theirs], job=DEFAULT_JOB, host=host, parents=True, passphrase=passphrase)
    return BackupSet.open(set_path, lambda enc, set_id: crypto.unlock_with_passphrase(enc, passphrase))


def job_dict(name, sources, destination):
    return {"name": name, "sources": [str(s) for s in sources], "destination": destination,
            "triggers": {"on_connect": False}}


def test_a_strangers_stick_is_not_adopted_by_the_first_run(agent, paths, ext4_drive, tmp_path):
    agent, watcher, handlers = agent
    mount = ext4_drive.mount_point
    # The stick: a drive.json of its own, and under this computer's name a set named like the
    # first-run job, whose Latest/ is a symlink to a folder in the user's home.
    enroll(mount, "Free stick")
    set_path = drive_set_path(mount, host_name(), DEFAULT_JOB)
    theirs = foreign_set(set_path, tmp_path)
    victim = make_tree(tmp_path / "home" / "Projects", {"thesis.tex": b"years of work", "data/r.csv": b"1,2"})
    shutil.rmtree(set_path / "Latest")
    os.symlink(victim, set_path / "Latest")
    before = read_tree(victim, modes=True, mtimes=True)
    snapshots = theirs.snapshot_ids()
    mine = make_tree(tmp_path / "home" / "Documents", {"letter.txt": b"dear", "thesis.tex": b"other"})

    # The first-run window: prepare the drive, save the default job, start the first backup.
    drive_id = handlers["drive_init"]({"mount": str(mount), "label": "Free stick"})["drive_id"]
    watcher.poll()
    handlers["job_save"]({"job": job_dict(DEFAULT_JOB, [mine], {"drive_id": drive_id})})
    run = run_once(agent, handlers, DEFAULT_JOB)

    assert run.status == "failed" and run.error_code == "set_needs_confirmation"
    assert "strangers-pc" in run.error and f"'{DEFAULT_JOB}'" in run.error and "Use this backup" in run.error
    last = handlers["status"]({})["jobs"][0]["last_run"]
    assert last["error_code"] == "set_needs_confirmation"
    assert read_log(paths.notifications_log)[-1]["kind"] == "failed"
    assert read_tree(victim, modes=True, mtimes=True) == before          # nothing in the home changed
    assert BackupSet.open(set_path).snapshot_ids() == snapshots          # nothing was added to the set
    assert read_config(paths.config_file).jobs[0].set_id is None
    # What the window's dialog shows: whose set it is and how recent.
    info = handlers["set_info"]({"name": DEFAULT_JOB})
    assert info["own"] is False and info["path"] == str(set_path)
    facts = info["set"]
    assert (facts["host"], facts["job"], facts["newest"], facts["snapshots"]) == ("strangers-pc", DEFAULT_JOB,
                                                                                 snapshots[-1], 1)
    assert facts["set_id"] == theirs.set_id and "strangers-pc" in facts["summary"]
    # Running it again (or on the next connect) is refused the same way.
    assert run_once(agent, handlers, DEFAULT_JOB).error_code == "set_needs_confirmation"
    assert read_tree(victim, modes=True, mtimes=True) == before


def test_after_the_user_adopts_the_set_the_job_backs_up_into_it(agent, paths, ext4_drive, tmp_path):
    agent, watcher, handlers = agent
    mount = ext4_drive.mount_point
    drive_id = handlers["drive_init"]({"mount": str(mount), "label": "Old drive"})["drive_id"]
    watcher.poll()
    # The user's own backup from a previous installation (another computer name then).
    set_path = drive_set_path(mount, host_name(), DEFAULT_JOB)
    old = foreign_set(set_path, tmp_path, host="old-laptop")
    mine = make_tree(tmp_path / "Documents", {"letter.txt": b"dear"})
    handlers["job_save"]({"job": job_dict(DEFAULT_JOB, [mine], {"drive_id": drive_id})})
    assert run_once(agent, handlers, DEFAULT_JOB).error_code == "set_needs_confirmation"

    with pytest.raises(UsageError, match="not the one you confirmed"):
        handlers["adopt_set"]({"name": DEFAULT_JOB, "set_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12})
    assert handlers["adopt_set"]({"name": DEFAULT_JOB, "set_id": old.set_id}) == {"job": DEFAULT_JOB,
                                                                                  "set_id": old.set_id,
                                                                                  "drive_id": drive_id}
    assert json.loads(paths.config_file.read_text())["jobs"][0]["set_id"] == old.set_id
    assert handlers["set_info"]({"name": DEFAULT_JOB})["own"] is True
    run = run_once(agent, handlers, DEFAULT_JOB)
    assert run.status == "ok"
    bset = BackupSet.open(set_path)
    assert len(bset.snapshot_ids()) == 2 and run.snapshot_id == bset.newest_id()
    assert [e.path for e in bset.manifest(run.snapshot_id).entries] == ["Documents", "Documents/letter.txt"]
    # An edit in the window keeps the binding; the window cannot set one itself.
    saved = handlers["config_get"]({})["jobs"][0]
    handlers["job_save"]({"job": {**saved, "set_id": None, "excludes": ["*.tmp"]}, "original_name": DEFAULT_JOB})
    assert read_config(paths.config_file).jobs[0].set_id == old.set_id

    # Another set put in its place (same path, another id) is not the job's any more.
    shutil.rmtree(set_path)
    foreign_set(set_path, tmp_path / "again")
    assert run_once(agent, handlers, DEFAULT_JOB).error_code == "set_needs_confirmation"


def test_a_new_set_is_bound_by_the_run_that_made_it(agent, paths, tmp_path):
    agent, _, handlers = agent
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    handlers["job_save"]({"job": job_dict("Docs", [src], {"path": str(tmp_path / "set")})})
    assert run_once(agent, handlers, "Docs").status == "ok"
    set_id = BackupSet.open(tmp_path / "set").set_id
    assert read_config(paths.config_file).jobs[0].set_id == set_id
    assert handlers["config_get"]({})["jobs"][0]["set_id"] == set_id
    assert run_once(agent, handlers, "Docs").status == "ok"


def test_a_job_from_before_set_ids_keeps_its_set_through_its_history(agent, paths, tmp_path):
    agent, _, handlers = agent
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    handlers["job_save"]({"job": job_dict("Docs", [src], {"path": str(tmp_path / "set")})})
    assert run_once(agent, handlers, "Docs").status == "ok"
    set_id = read_config(paths.config_file).jobs[0].set_id

    def forget_binding(cfg):   # a config.json written before set ids
        cfg.jobs[0].set_id = None

    update_config(paths.config_file, forget_binding)
    agent.check_config()
    run = run_once(agent, handlers, "Docs")
    assert run.status == "ok" and "backup set is" in agent.history.log(run.id)
    assert read_config(paths.config_file).jobs[0].set_id == set_id
    # Without that history (another job's name, no backup of it in the set): confirmation.
    shutil.copytree(tmp_path / "set", tmp_path / "copy")
    handlers["job_save"]({"job": job_dict("Other", [src], {"path": str(tmp_path / "copy")})})
    assert run_once(agent, handlers, "Other").error_code == "set_needs_confirmation"


def test_an_encrypted_foreign_set_is_refused_before_any_passphrase_is_tried(agent, paths, tmp_path, monkeypatch):
    agent, _, handlers = agent
    foreign_set(tmp_path / "set", tmp_path, passphrase="their secret")
    monkeypatch.setenv("PLUGBACK_PASSPHRASE", "their secret")     # would open it
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    handlers["job_save"]({"job": job_dict("Docs", [src], {"path": str(tmp_path / "set")})})
    run = run_once(agent, handlers, "Docs")
    assert run.error_code == "set_needs_confirmation" and "encrypted" in run.error
    facts = handlers["set_info"]({"name": "Docs"})["set"]
    assert facts["encrypted"] is True and facts["host"] is None and facts["snapshots"] == 1


def test_the_error_names_what_was_found_and_how_to_confirm(tmp_path):
    from core.agent.adopt import needs_confirmation

    foreign_set(tmp_path / "set", tmp_path)
    err = needs_confirmation("Docs", tmp_path / "set")
    assert isinstance(err, SetNeedsConfirmation) and err.code == "set_needs_confirmation"
    assert "computer 'strangers-pc'" in err.message and f"job '{DEFAULT_JOB}'" in err.message
    assert "plugback job adopt" in err.message and "newest snapshot 2" in err.message


def test_a_removed_job_leaves_no_passphrase_in_the_keyring(agent, paths, tmp_path):
    import keyring

    agent, _, handlers = agent
    stored = keyring.get_keyring().passwords
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    vault = {**job_dict("Vault", [src], {"path": str(tmp_path / "set")}), "encrypt": True}
    handlers["job_save"]({"job": vault, "passphrase": "pw one"})
    assert run_once(agent, handlers, "Vault").status == "ok"
    set_id = read_config(paths.config_file).jobs[0].set_id
    assert {("plugback", "job:Vault"), ("plugback", set_id)} <= set(stored)
    # A second job that adopted the same set keeps the set's passphrase while it exists.
    handlers["job_save"]({"job": {**vault, "name": "Vault2"}})
    handlers["adopt_set"]({"name": "Vault2", "set_id": set_id})
    handlers["job_remove"]({"name": "Vault"})
    assert [u for _, u in stored] == [set_id]
    handlers["job_remove"]({"name": "Vault2"})
    assert stored == {}
