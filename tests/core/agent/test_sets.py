"""Restore anywhere (issue #15): the sets found on a real drive and in folders (core/agent/sets.py),
browsing and restoring one that no job here uses, and unlocking encrypted ones for the session
(core/agent/unlock.py) — through the real in-process agent's IPC handlers."""

import os

import pytest

from core.agent.drives import enroll, list_volumes
from core.agent.handlers import Handlers
from core.agent.sets import MAX_FOLDERS, Found, find_sets, scan_folder
from core.engine import crypto
from core.engine.layout import drive_set_path
from core.errors import UnsafeSet, UsageError, WrongPassphrase, WrongRecoveryKey
from tests.support.agent import wait_for
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree, read_tree

PASS = "correct horse battery"


@pytest.fixture
def agent(make_agent):
    agent, _ = make_agent()
    return agent, Handlers(agent).table()


def old_computer_set(mount, tmp_path, *, host="old-laptop", job="My files", passphrase=None, files=None):
    """What the old computer left on its drive: Plugback/<host>/<job>, one snapshot."""
    src = make_tree(tmp_path / host / "Documents", files or {"ada.txt": b"ada", "sub/b.txt": b"bravo"})
    set_path = drive_set_path(mount, host, job)
    backup_path(set_path, [src], job=job, host=host, parents=True, passphrase=passphrase)
    return set_path


def restored(agent, handlers, args):
    handlers["restore"](args)
    return wait_for(lambda: not agent.restore_task["running"] and agent.restore_task, what="the restore")


@pytest.mark.realdrive
def test_a_fresh_plugback_lists_and_restores_another_computers_set(agent, ext4_drive, tmp_path):
    agent, handlers = agent
    mount = ext4_drive.mount_point
    enroll(mount, "Old drive")
    set_path = old_computer_set(mount, tmp_path)
    found = handlers["sets"]({})
    [s] = [s for s in found["sets"] if s["path"] == str(set_path)]
    assert (s["computer"], s["job"], s["encrypted"], s["snapshots"], s["used_by"]) == (
        "old-laptop", "My files", False, 1, [])
    assert s["drive_label"] == "Old drive" and s["where"] == str(mount)

    which = {"set": s["path"]}
    [snap] = handlers["snapshots"](which)
    assert [e["name"] for e in handlers["ls"]({**which, "snapshot": snap["id"], "path": "Documents"})] == [
        "ada.txt", "sub"]
    # No job here made it: there is no original place on this computer.
    with pytest.raises(UsageError, match="Choose a folder"):
        handlers["restore_plan"]({**which, "paths": ["Documents/ada.txt"]})
    out = tmp_path / "new" / "Restored"           # does not exist yet
    plan = handlers["restore_plan"]({**which, "paths": ["Documents"], "target": str(out)})
    assert plan["creates"] and plan["destinations"] == [{"top": "Documents", "to": str(out / "Documents")}]
    with pytest.raises(UsageError, match="Confirm to create it"):
        handlers["restore"]({**which, "paths": ["Documents"], "target": str(out)})
    (tmp_path / "new").mkdir()
    task = restored(agent, handlers, {**which, "paths": ["Documents"], "target": str(out), "create_target": True})
    assert task["error"] is None, task
    assert read_tree(out) == {"Documents/ada.txt": b"ada", "Documents/sub/b.txt": b"bravo"}
    assert agent.restore_drive is None


def test_a_restore_names_every_file_kept_under_another_name(agent, tmp_path):
    agent, handlers = agent
    set_path = old_computer_set(tmp_path / "stick", tmp_path)
    out = make_tree(tmp_path / "out", {"Documents/ada.txt": b"mine", "Documents/sub/b.txt": b"bravo"})
    task = restored(agent, handlers, {"set": str(set_path), "paths": ["Documents"], "target": str(out)})
    assert task["error"] is None and task["result"]["kept_both"] == 2          # keep-both is the default
    assert sorted((r["path"], r["as"]) for r in task["result"]["renamed"]) == [
        ("Documents/ada.txt", str(out / "Documents" / "ada (restored).txt")),
        ("Documents/sub/b.txt", str(out / "Documents" / "sub" / "b (restored).txt"))]
    assert (out / "Documents" / "ada.txt").read_bytes() == b"mine"


def test_search_shows_one_row_per_distinct_version(agent, tmp_path):
    agent, handlers = agent
    src = make_tree(tmp_path / "Documents", {"ada.txt": b"one", "same.txt": b"unchanged"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    os.utime(src / "ada.txt", ns=(1, 1))
    (src / "ada.txt").write_bytes(b"two")
    backup_path(set_path, [src])
    backup_path(set_path, [src])
    ids = open_set(set_path).snapshot_ids()
    rows = handlers["search"]({"set": str(set_path), "query": "txt"})
    by = {(r["path"], r["size"]) for r in rows}
    assert len(rows) == 3 and by == {("Documents/ada.txt", 3), ("Documents/same.txt", 9)}
    same = next(r for r in rows if r["path"] == "Documents/same.txt")
    assert (same["snapshot"], same["first_snapshot"], same["snapshots"]) == (ids[-1], ids[0], 3)


def test_sets_are_found_in_an_opened_folder_and_a_link_is_not_followed(tmp_path):
    stick = tmp_path / "stick"
    set_path = old_computer_set(stick, tmp_path)
    home = make_tree(tmp_path / "home", {"secret.txt": b"x"})
    (stick / "Plugback" / "evil").mkdir()
    os.symlink(home, stick / "Plugback" / "evil" / "job")       # a set name pointing into the home
    os.symlink(set_path, stick / "Plugback" / "linked-computer")
    for folder in (stick, stick / "Plugback", set_path):
        found = Found()
        scan_folder(folder, found)
        assert [s.path for s in found.sets] == [str(set_path)], folder
    # The set's own folders are checked too: a symlinked snapshots/ makes it a problem, not a set.
    other = old_computer_set(stick, tmp_path, host="desk")
    (other / "snapshots").rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", other / "snapshots")
    found = find_sets([], [str(stick)])
    assert [s.path for s in found.sets] == [str(set_path)]
    assert found.problems[0]["path"] == str(other) and "symbolic link" in found.problems[0]["message"]
    nothing = find_sets([], [str(home)])
    assert nothing.sets == [] and "no Plugback backup" in nothing.problems[0]["message"]


def test_the_number_of_folders_looked_at_is_bounded(tmp_path):
    top = tmp_path / "Plugback"
    for i in range(MAX_FOLDERS + 20):
        (top / f"c{i:04d}").mkdir(parents=True)
    found = find_sets([], [str(top)])
    assert found.sets == [] and len(found.problems) == 1


def test_a_found_set_is_refused_when_a_folder_above_it_is_a_link(agent, tmp_path):
    agent, handlers = agent
    set_path = old_computer_set(tmp_path / "real", tmp_path)
    link = tmp_path / "linked"
    os.symlink(tmp_path / "real" / "Plugback", link)
    with pytest.raises(UnsafeSet):
        handlers["snapshots"]({"set": str(link / "old-laptop" / "My files")})
    assert handlers["snapshots"]({"set": str(set_path)})


def test_unlock_wrong_then_right_keeps_the_keys_for_the_session_only(agent, tmp_path, monkeypatch):
    agent, handlers = agent
    set_path = old_computer_set(tmp_path / "stick", tmp_path, passphrase=PASS)
    which = {"set": str(set_path)}
    [s] = handlers["sets"]({"folders": [str(tmp_path / "stick")]})["sets"]
    # Encrypted: its names come from the folders, and it is not open yet.
    assert (s["computer"], s["job"], s["named_by"], s["unlocked"]) == ("old-laptop", "My files", "folders", False)
    with pytest.raises(Exception) as err:
        handlers["snapshots"](which)
    assert err.value.code == "passphrase_needed"
    with pytest.raises(WrongPassphrase):
        handlers["unlock"]({**which, "kind": "passphrase", "secret": "wrong"})
    opened = handlers["unlock"]({**which, "kind": "passphrase", "secret": PASS})
    assert opened["remembered"] is False and opened["set_id"] == s["set_id"]
    assert handlers["sets"]({"folders": [str(tmp_path / "stick")]})["sets"][0]["unlocked"] is True
    # The key is kept in memory: browsing runs no key derivation again (issue #11).
    derived = []
    real = crypto.unlock_with_passphrase
    monkeypatch.setattr(crypto, "unlock_with_passphrase", lambda *a, **k: derived.append(1) or real(*a, **k))
    [snap] = handlers["snapshots"](which)
    handlers["ls"]({**which, "snapshot": snap["id"], "path": ""})
    assert derived == []
    import keyring
    assert keyring.get_keyring().passwords == {}      # nothing stored without "remember"


def test_unlock_with_the_recovery_key_and_remember_a_passphrase(agent, tmp_path):
    import keyring

    agent, handlers = agent
    set_path = old_computer_set(tmp_path / "stick", tmp_path, passphrase=PASS)
    bset = open_set(set_path, lambda enc, sid: crypto.unlock_with_passphrase(enc, PASS))
    key = crypto.recovery_key(bset.keys)
    which = {"set": str(set_path)}
    other = old_computer_set(tmp_path / "other", tmp_path, host="b", passphrase="another one")
    with pytest.raises(WrongRecoveryKey):
        handlers["unlock"]({"set": str(other), "kind": "recovery_key", "secret": key})
    handlers["unlock"]({**which, "kind": "recovery_key", "secret": f"  {key}\n"})
    assert handlers["recovery_key"](which)["recovery_key"] == key
    out = tmp_path / "out"
    out.mkdir()
    task = restored(agent, handlers, {**which, "paths": ["Documents/ada.txt"], "target": str(out)})
    assert task["error"] is None and (out / "Documents" / "ada.txt").read_bytes() == b"ada"
    # "Remember" stores the passphrase under the set's id (where unattended backups look).
    handlers["unlock"]({"set": str(other), "kind": "passphrase", "secret": "another one", "remember": True})
    assert keyring.get_keyring().passwords == {("plugback", bset_id(other)): "another one"}


def bset_id(set_path):
    from core.engine.repo import BackupSet

    return BackupSet.open(set_path, lambda enc, sid: None).set_id


def test_a_set_used_by_a_job_here_says_so_and_restores_to_the_original_place(agent, tmp_path):
    agent, handlers = agent
    src = make_tree(tmp_path / "Documents", {"a.txt": b"alpha"})
    job = {"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "Plugback" / "me" / "Docs")},
           "triggers": {"on_connect": False}}
    handlers["job_save"]({"job": job})
    handlers["run_job"]({"name": "Docs"})
    wait_for(lambda: agent.history.runs("Docs") and agent.history.runs("Docs")[0].status == "ok", what="the backup")
    [s] = handlers["sets"]({"folders": [str(tmp_path / "Plugback")]})["sets"]
    assert s["used_by"] == ["Docs"]
    plan = handlers["restore_plan"]({"set": s["path"], "paths": ["Documents/a.txt"]})
    assert plan["destinations"] == [{"top": "Documents", "to": str(src)}]
    assert list_volumes is not None


def test_backups_use_the_keys_unlocked_this_session_but_only_for_the_same_keys(tmp_path, monkeypatch):
    from core.agent.unlock import KeyCache, cached_unlocker

    keys, enc = crypto.create_encryption(PASS)
    cache = KeyCache()
    cache.put("set-1", keys)
    monkeypatch.delenv("PLUGBACK_PASSPHRASE", raising=False)
    unlock = cached_unlocker(cache, prompt=None)
    assert unlock(enc, "set-1") is keys                  # no passphrase anywhere: the session's keys
    # Another set that copied the id (a stranger's stick) has other keys: the cache is not used for it.
    _, other_enc = crypto.create_encryption("another passphrase")
    with pytest.raises(Exception) as err:
        unlock(other_enc, "set-1")
    assert err.value.code == "passphrase_needed"
