"""Issue #10, the write side: a crafted drive never makes a backup, forget or restore touch
anything outside the set (or the restore folder).

Each test snapshots a "victim" tree outside the set before and after, and asserts it is
unchanged and that the run reports the problem. Manifests are crafted by hand (gzip'd
JSON lines, docs/format.md), independently of core/engine/manifest.py. Once the manifest
decoder (issue #10, read side) refuses such manifests, a backup treats the crafted newest
manifest as damaged (warning ``snapshot_damaged``, exit 3) instead of refusing the write
(exit 4): both report it, and in both the victim stays untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from core.agent.config import Config, Destination, Job
from core.agent.history import History
from core.agent.jobs import Target, run_job
from core.engine.layout import SetLayout
from core.engine.repo import BackupSet
from core.errors import DriveGone, UnsafeSet, UsageError
from tests.support.cli import run_cli
from tests.support.engine import backup_path, forget_path, restore_path, verify_path
from tests.support.trees import File, Symlink, make_tree

VICTIM = {"a.txt": b"victim's a", "b.txt": b"victim's b", "sub/c.txt": b"victim's c", "link": Symlink("a.txt")}


def _state(root: Path) -> dict:
    """Everything under ``root``: type, content or link target, mode, mtime (nothing followed)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("d", None)
            else:
                what = ("f", p.read_bytes())
            out[str(p.relative_to(root))] = (what, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def victim(tmp_path):
    """A tree outside every set, and a check that it is exactly as it was."""
    root = make_tree(tmp_path / "victim", VICTIM)
    for name in range(2):   # files that look like another tool's content-addressed repository
        (root / f"{name:064x}").write_bytes(b"someone else's data")
    before = _state(root)
    yield root
    assert _state(root) == before, "something outside the set was changed"


def _first_set(base: Path, src_spec=None) -> tuple[Path, Path]:
    src = make_tree(base / "src" / "Data", src_spec or {"a.txt": b"source a v1", "sub/s.txt": b"sub file"})
    set_path = base / "set"
    backup_path(set_path, [src])
    return src, set_path


def _craft_manifest(set_path: Path, entries: list[dict]) -> str:
    """Replace the newest manifest of ``set_path`` by one with ``entries`` (written by hand)."""
    layout = SetLayout(set_path)
    sid = layout.manifest_ids()[-1]
    old = gzip.decompress(layout.manifest(sid).read_bytes()).split(b"\n")
    header = json.loads(old[0])
    body = b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in [header] + entries)
    trailer = {"type": "trailer", "entries": len(entries), "sha256": hashlib.sha256(body).hexdigest()}
    layout.manifest(sid).write_bytes(gzip.compress(body + json.dumps(trailer).encode() + b"\n"))
    return sid


def _file(path: str, data: bytes, **extra) -> dict:
    return {"path": path, "type": "f", "mtime_ns": 1, "mode": 0o644, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), **extra}


def _escaping_entries(victim: Path, set_path: Path) -> list[dict]:
    """Entries whose path or mirror reach the victim: the next backup would displace (move into
    objects/), delete, or overwrite them."""
    up = os.path.relpath(victim, SetLayout(set_path).latest / "Data").replace(os.sep, "/")
    return [
        {"path": "Data", "type": "d", "mtime_ns": 1, "mode": 0o755},
        _file("Data/a.txt", VICTIM["a.txt"], mirror=f"Data/{up}/a.txt"),      # changed: displaced
        _file("Data/gone.txt", VICTIM["b.txt"], mirror=f"Data/{up}/b.txt"),   # removed: displaced
        _file(f"Data/{up}/sub/c.txt", VICTIM["sub/c.txt"]),                  # removed, by its path
    ]


def _assert_reported(proc, sid: str) -> None:
    """Refused by the write side (exit 4, naming the path) or, with the manifest decoder, the
    crafted manifest set aside as damaged (exit 3, naming it)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode in (3, 4), out
    assert ("outside Latest/" in out) if proc.returncode == 4 else (sid in out), out


def test_manifest_paths_never_steer_writes_outside_the_set(tmp_path, victim):
    src, set_path = _first_set(tmp_path)
    sid = _craft_manifest(set_path, _escaping_entries(victim, set_path))
    (src / "a.txt").write_bytes(b"source a v2, longer")
    proc = run_cli("backup", src, "--to", set_path)
    _assert_reported(proc, sid)


def test_manifest_paths_on_exfat(exfat_drive, tmp_path, victim):
    """exFAT holds no symlinks; crafted paths are the way out there."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"source a v1"})
    set_path = exfat_drive.mount_point / "set"
    backup_path(set_path, [src])
    sid = _craft_manifest(set_path, _escaping_entries(victim, set_path))
    (src / "a.txt").write_bytes(b"source a v2, longer")
    _assert_reported(run_cli("backup", src, "--to", set_path), sid)


# --- symlinks in or above a set ---------------------------------------------------------------

def _plant(set_path: Path, victim: Path, where: str) -> Path:
    """Replace the set's folder ``where`` by a symlink to ``victim`` (filled to look the part)."""
    layout = SetLayout(set_path)
    p = {"tmp": layout.tmp, "Latest": layout.latest, "objects": layout.objects, "snapshots": layout.snapshots,
         "objects/xx": None, "Latest/Data/sub": layout.latest / "Data" / "sub"}[where]
    if p is None:
        p = next(d for d in layout.objects.iterdir())   # objects/<2 hex>: made when a file is displaced
    shutil.rmtree(p)
    os.symlink(victim, p)
    return p


LINKED = ["tmp", "Latest", "objects", "objects/xx", "snapshots", "Latest/Data/sub"]


def _with_object(base: Path) -> tuple[Path, Path]:
    """A set with two snapshots, so objects/ holds a displaced version."""
    src, set_path = _first_set(base)
    (src / "a.txt").write_bytes(b"source a v2, longer")
    backup_path(set_path, [src])
    (src / "a.txt").write_bytes(b"source a v3, longer still")
    (src / "sub" / "s.txt").write_bytes(b"sub file changed")
    return src, set_path


@pytest.mark.parametrize("where", LINKED)
def test_symlinked_set_folder_is_refused_before_anything_is_written(tmp_path, victim, where):
    src, set_path = _with_object(tmp_path)
    link = _plant(set_path, victim, where)
    proc = run_cli("backup", src, "--to", set_path)
    assert proc.returncode == 4 and "symbolic link" in proc.stderr and str(link) in proc.stderr, proc.stderr
    assert not SetLayout(set_path).lock.exists()


@pytest.mark.parametrize("where", ["objects", "objects/xx"])
def test_forget_never_prunes_through_a_symlink(tmp_path, victim, where):
    src, set_path = _with_object(tmp_path)
    _plant(set_path, victim, where)
    proc = run_cli("forget", set_path, "--keep-last", "1", "--prune")
    assert proc.returncode == 4 and "symbolic link" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["journal.json", "Latest.sha256", "lock"])
def test_symlinked_set_files_are_replaced_never_written_through(tmp_path, victim, name):
    """The set's files are created exclusively, replaced by rename or unlinked: a symlink in their
    place is dropped (or the run refused), its target never written."""
    src, set_path = _with_object(tmp_path)
    if name != "lock":
        (set_path / name).unlink(missing_ok=True)
    os.symlink(victim / "a.txt", set_path / name)
    proc = run_cli("backup", src, "--to", set_path)
    assert proc.returncode in (0, 1), proc.stderr   # 1: the lock's holder cannot be read (locked)
    assert proc.returncode == 0 or name == "lock"


def test_symlinks_on_ext4_drive(ext4_drive, tmp_path, victim):
    """The same refusals on a real kernel file system, one set per planted link."""
    for where in LINKED:
        base = ext4_drive.mount_point / where.replace("/", "_")
        src, set_path = _with_object(base)
        link = _plant(set_path, victim, where)
        with pytest.raises(UnsafeSet, match="symbolic link") as err:
            backup_path(set_path, [src])
        assert str(link) in str(err.value)


def test_symlink_between_the_mount_and_the_set(tmp_path, victim):
    """``Plugback/<computer>`` pointing off the drive: the whole backup would land elsewhere."""
    mount = tmp_path / "drive"
    elsewhere = tmp_path / "elsewhere"
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"a"})
    backup_path(elsewhere / "Docs", [src], parents=True)
    (mount / "Plugback").mkdir(parents=True)
    os.symlink(elsewhere, mount / "Plugback" / "pc")
    bset = BackupSet.open(mount / "Plugback" / "pc" / "Docs")
    with pytest.raises(UnsafeSet, match="symbolic link") as err:
        from core.engine.backup import BackupOptions, backup

        backup(bset, [src], BackupOptions(boundary=mount))
    assert str(mount / "Plugback" / "pc") in str(err.value)
    assert BackupSet.open(elsewhere / "Docs").snapshot_ids() == bset.snapshot_ids()   # nothing new


def test_agent_refuses_a_set_off_the_drive(ext4_drive, tmp_path, victim):
    """A real drive whose ``Plugback/<computer>`` points at the victim: the agent creates no set there."""
    from core.agent.drives import write_drive_file

    info = write_drive_file(ext4_drive.mount_point, "Blue")
    os.symlink(victim, ext4_drive.mount_point / "Plugback" / "pc")
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    job = Job(name="Docs", sources=[str(src)], destination=Destination(drive_id=info.drive_id))
    cfg = Config(jobs=[job], drives=[{"drive_id": info.drive_id, "label": "Blue"}])
    outcome = run_job(job, cfg, History(tmp_path / "h.sqlite3"), host="pc")
    assert outcome.status == "failed" and outcome.error.code == "unsafe_set"
    assert "Plugback/pc" in outcome.error.message and not outcome.flushed


def test_drive_pulled_before_the_set_is_created(tmp_path):
    """The mount point left behind is a folder on this computer's own disk: no set is made there."""
    mount = tmp_path / "media" / "BLUE"   # not a mount (any more)
    mount.mkdir(parents=True)
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    job = Job(name="Docs", sources=[str(src)], destination=Destination(drive_id="x"))
    target = Target(set_path=mount / "Plugback" / "pc" / "Docs", drive_id="x", mount=mount)
    outcome = run_job(job, Config(jobs=[job]), History(tmp_path / "h.sqlite3"), target=target, host="pc")
    assert outcome.status == "drive_removed" and isinstance(outcome.error, DriveGone)
    assert list(mount.iterdir()) == []


def test_fifo_in_place_of_latest_sums_does_not_hang(tmp_path):
    src, set_path = _first_set(tmp_path)
    os.unlink(SetLayout(set_path).latest_sums)
    os.mkfifo(SetLayout(set_path).latest_sums)
    r = backup_path(set_path, [src])
    assert r.status.value == "ok" and SetLayout(set_path).latest_sums.is_file()


def test_symlink_in_place_of_a_latest_copy_is_not_followed(tmp_path, victim):
    """A copy in Latest/ swapped for a symlink to a same-size file: its target keeps its content,
    mode and time; the link is not moved into objects/ and the loss is reported."""
    src, set_path = _first_set(tmp_path, {"a.txt": VICTIM["a.txt"].upper()})
    copy = SetLayout(set_path).latest / "Data" / "a.txt"
    copy.unlink()
    os.symlink(victim / "a.txt", copy)
    os.utime(src / "a.txt", ns=(5, 5))            # same content, new time: Latest/ gets the new time
    os.chmod(src / "a.txt", 0o600)
    r = backup_path(set_path, [src])
    assert [w.code.value for w in r.warnings] in ([], ["latest_edited"])
    (src / "a.txt").write_bytes(b"new content")   # changed: the old copy is displaced
    r = backup_path(set_path, [src])
    assert not any(p.is_symlink() for p in SetLayout(set_path).objects.rglob("*"))
    assert verify_path(set_path, read_all=True).ok


# --- encrypted sets: half-written objects --------------------------------------------------

def test_encrypted_half_written_object_is_replaced(tmp_path):
    """An object no committed manifest names (a crash before the commit) is not trusted."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"first"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], passphrase="pw")
    unlock = _unlocker()
    (src / "b.txt").write_bytes(os.urandom(300_000))
    second = backup_path(set_path, [src], unlock=unlock)
    bset = BackupSet.open(set_path, unlock)
    obj = bset.content_paths(next(e for e in bset.manifest(second.snapshot_id).entries
                                  if e.path == "Data/b.txt"))[0]
    # The crash: the manifest never made it, and the object is cut short.
    SetLayout(set_path).manifest(second.snapshot_id).unlink()
    with open(obj, "r+b") as f:
        f.truncate(1000)
    third = backup_path(set_path, [src], unlock=unlock)
    assert third.status.value == "ok" and third.files_copied == 1
    assert verify_path(set_path, unlock=unlock, read_all=True).ok
    restore_path(set_path, tmp_path / "out", unlock=unlock)
    assert (tmp_path / "out" / "Data" / "b.txt").read_bytes() == (src / "b.txt").read_bytes()


def _unlocker():
    from core.agent.keys import Secret, make_unlocker

    return make_unlocker(Secret.passphrase("pw"))


# --- repair ----------------------------------------------------------------------------------

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("encrypted", [False, True])
def test_rehash_replaces_a_damaged_stored_copy(tmp_path, encrypted):
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"important words " * 100})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], passphrase="pw" if encrypted else None)
    unlock = _unlocker() if encrypted else None
    bset = BackupSet.open(set_path, unlock)
    stored = bset.content_paths(bset.manifest(bset.newest_id()).entries[-1])[0]
    _flip(stored)                                           # bit rot: same size, other bytes
    assert not verify_path(set_path, unlock=unlock, read_all=True).ok
    env = {"PLUGBACK_PASSPHRASE": "pw"} if encrypted else None
    proc = run_cli("backup", src, "--to", set_path, "--rehash", env=env)
    assert proc.returncode == 0, proc.stderr
    assert verify_path(set_path, unlock=unlock, read_all=True).ok


class _BadFirstWrite:
    """A fault: the first block written to the drive is corrupted (a flaky drive or cable)."""

    @staticmethod
    def make():
        from core.engine.fs import FileSystem

        class FS(FileSystem):
            bad = 1

            def write_fd(self, fd, data):
                if self.bad:
                    self.bad -= 1
                    data = bytes(data[:-1]) + bytes([data[-1] ^ 0xFF])
                return super().write_fd(fd, data)
        return FS()


def test_read_back_damage_is_repaired_from_the_source(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"only file"})
    r = backup_path(tmp_path / "set", [src], fs=_BadFirstWrite.make(), workers=1)
    assert r.status.value == "ok" and r.damaged == []
    assert verify_path(tmp_path / "set", read_all=True).ok


# --- restore ----------------------------------------------------------------------------------

def test_restore_strips_setuid_and_setgid(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"tool": File(b"#!/bin/sh\n", 0o6755), "shared/": None})
    os.chmod(src / "shared", 0o3775)
    backup_path(tmp_path / "set", [src])
    restore_path(tmp_path / "set", tmp_path / "out")
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "Data" / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "Data" / "shared").st_mode) == 0o1775


def test_restore_makes_no_folder_through_a_symlink_in_the_target(tmp_path, victim):
    src = make_tree(tmp_path / "src" / "Data", {"sub/deeper/x.txt": b"x"})
    backup_path(tmp_path / "set", [src])
    out = tmp_path / "out"
    (out / "Data").mkdir(parents=True)
    os.symlink(victim, out / "Data" / "sub")
    with pytest.raises(UsageError, match="in the way"):   # a subset: Data/sub itself is not restored
        restore_path(tmp_path / "set", out, paths=["Data/sub/deeper"])


def test_forget_keeps_working_on_a_clean_set(tmp_path):
    """The containment checks refuse only what is wrong: an ordinary forget still prunes."""
    from core.engine.retention import RetentionPolicy

    src, set_path = _with_object(tmp_path)
    backup_path(set_path, [src])
    r = forget_path(set_path, RetentionPolicy(last=1))
    assert len(r.forgotten) == 2 and r.objects_removed >= 1
    assert verify_path(set_path, read_all=True).ok
