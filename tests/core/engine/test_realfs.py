"""The engine on real file systems: ext4 (kernel), exFAT and FAT32 (FUSE) loop drives.

Each test backs up a real tree to a set on a mounted drive, changes the tree,
backs up again, and restores every snapshot to a local folder, comparing it
byte for byte (and mode and mtime) with what the source was. exFAT and FAT
cannot hold symlinks, POSIX modes, exact mtimes or many names: the manifest
holds the truth, and restore must bring all of it back anyway.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

import core.engine.fs
from core.engine.layout import SetLayout
from core.engine.manifest import DIR, FILE, LINK
from core.engine.progress import Progress
from core.engine.repo import BackupSet
from core.engine.retention import RetentionPolicy
from core.errors import DriveGone
from tests.support.drives import _device_open, _wait_for
from tests.support.engine import backup_path, forget_path, restore_path, verify_path
from tests.support.trees import File, Symlink, make_tree, read_tree

FS_KINDS = ["ext4", "exfat", "vfat"]
T0 = 1_600_000_000_123_456_789     # odd nanoseconds: FAT keeps 2 s, exFAT 10 ms; restore must be exact


def _blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _tree_v1() -> dict:
    return {
        "report.txt": File(b"quarterly numbers\n" * 50, 0o640, T0),
        "Résumé.pdf": File(_blob(1, 150_000), 0o600, T0 + 2_000_001),
        "日本語/メモ.txt": File("こんにちは\n".encode(), 0o644, T0 + 3),
        "empty/": None,
        "deep/a/b/c.bin": File(_blob(2, 70_000), 0o644, T0 + 5),
        "script.sh": File(b"#!/bin/sh\necho hi\n", 0o755, T0 + 7),
        "same-1.txt": File(b"identical content\n", 0o644, T0 + 11),
        "same-2.txt": File(b"identical content\n", 0o644, T0 + 13),
        "becomes-dir": File(b"a file first\n", 0o644, T0 + 17),
        "zero.bin": File(b"", 0o644, T0 + 19),
        "link-rel": Symlink("report.txt"),
        "link-abs": Symlink("/etc/hostname"),
        "link-dangling": Symlink("does/not/exist"),
    }


def _change(src: Path) -> None:
    """Change, add, rename and delete; also a mode-only change and two type changes."""
    (src / "report.txt").write_bytes(b"revised numbers\n" * 60)
    os.utime(src / "report.txt", ns=(T0 + 100_000_000_001, T0 + 100_000_000_001))
    os.rename(src / "Résumé.pdf", src / "Résumé-final.pdf")
    os.unlink(src / "deep/a/b/c.bin")
    os.chmod(src / "script.sh", 0o700)
    os.unlink(src / "link-rel")
    os.symlink("script.sh", src / "link-rel")
    os.rmdir(src / "empty")
    (src / "empty").write_bytes(b"was an empty folder\n")          # dir -> file
    os.unlink(src / "becomes-dir")
    make_tree(src, {"becomes-dir/inside.txt": File(b"now a folder\n", 0o644, T0 + 23),   # file -> dir
                    "new/ñandú.txt": File(b"new file\n", 0o604, T0 + 29),
                    "same-3.txt": File(b"identical content\n", 0o644, T0 + 31)})


def _snapshot_of(src: Path) -> dict:
    return read_tree(src, modes=True, mtimes=True)


def readers(fstype: str) -> int:
    """Threads for restore / verify. fusefat 0.1a (our FAT32 test driver; the container has no
    kernel vfat) returns zeros when two handles read the same file at the same moment, which
    restore does for identical contents held once in Latest/. Real FAT drivers do not."""
    return 1 if fstype == "vfat" else 4


def _restore_to(set_path: Path, snapshot: str, target: Path, fstype: str) -> dict:
    result = restore_path(set_path, target, snapshot=snapshot, workers=readers(fstype))
    assert result.damaged == [] and result.warnings == [], result.damaged
    return read_tree(target / "Docs", modes=True, mtimes=True)


def _sha256sum_check(set_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "--strict", "-c", "../Latest.sha256"], cwd=set_path / "Latest",
                          capture_output=True, text=True)


def _latest_matches_manifest(set_path: Path, src: Path) -> None:
    """Every file of the newest snapshot is in Latest/ under its mirror name, with the source's bytes."""
    bset = BackupSet.open(set_path)
    m = bset.manifest(bset.newest_id())
    files = [e for e in m.entries if e.type == FILE]
    assert files
    for e in files:
        on_drive = b"".join(p.read_bytes() for p in bset.content_paths(e))
        assert on_drive == (src.parent / e.path).read_bytes(), e.path


@pytest.mark.slow
@pytest.mark.parametrize("fstype", FS_KINDS)
def test_backup_change_backup_restore_both(make_drive, tmp_path, fstype):
    drive = make_drive(fstype)
    src = make_tree(tmp_path / "home" / "Docs", _tree_v1())
    os.chmod(src / "日本語", 0o750)
    set_path = drive.mount_point / "Plugback" / "set"
    before = _snapshot_of(src)

    r1 = backup_path(set_path, [src], parents=True)
    assert r1.status == "ok" and r1.damaged == [] and r1.files_copied == 9

    _change(src)
    after = _snapshot_of(src)
    r2 = backup_path(set_path, [src])
    assert r2.status == "ok" and r2.damaged == []
    # Copied: report, the renamed pdf, empty, inside.txt, ñandú, same-3 (script.sh: same bytes, new mode).
    assert r2.files_copied == 6 and r2.files_scanned == 11

    assert _restore_to(set_path, r1.snapshot_id, tmp_path / "out1", fstype) == before
    assert _restore_to(set_path, r2.snapshot_id, tmp_path / "out2", fstype) == after
    assert os.stat(tmp_path / "out1" / "Docs" / "日本語").st_mode & 0o777 == 0o750
    assert not (tmp_path / "out1" / "Docs" / "empty").is_file()

    check = _sha256sum_check(set_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 11
    _latest_matches_manifest(set_path, src)

    v = verify_path(set_path, read_all=True, workers=readers(fstype))
    assert v.ok and v.snapshots == 2 and v.notices == [], v.damaged

    m2 = BackupSet.open(set_path).manifest(r2.snapshot_id).by_path()
    assert m2["Docs/link-rel"].type == LINK and m2["Docs/link-rel"].target == "script.sh"
    assert m2["Docs/becomes-dir"].type == DIR and m2["Docs/empty"].type == FILE
    assert m2["Docs/script.sh"].mode == 0o700
    latest = SetLayout(set_path).latest / "Docs"
    if fstype == "ext4":
        # A drive that can hold everything gets a Latest/ that is the source (modes: see below).
        assert read_tree(latest) == read_tree(src)
    else:
        assert not any(p.is_symlink() for p in latest.rglob("*"))

    r3 = backup_path(set_path, [src])
    assert r3.files_copied == 0 and r3.bytes_copied == 0 and r3.status == "ok"


def test_latest_follows_mode_and_mtime_only_changes(ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", {"run.sh": File(b"#!/bin/sh\n", 0o755, T0),
                                        "notes.txt": File(b"notes", 0o644, T0)})
    set_path = ext4_drive.mount_point / "set"
    backup_path(set_path, [src])
    os.chmod(src / "run.sh", 0o700)                        # mode only
    os.utime(src / "notes.txt", ns=(T0 + 10**9, T0 + 10**9))  # touch: mtime only
    r = backup_path(set_path, [src])
    m = BackupSet.open(set_path).manifest(r.snapshot_id).by_path()
    assert m["Docs/run.sh"].mode == 0o700 and m["Docs/notes.txt"].mtime_ns == T0 + 10**9
    # The browsable copy must say what the snapshot says.
    assert read_tree(SetLayout(set_path).latest / "Docs", modes=True, mtimes=True) == \
        read_tree(src, modes=True, mtimes=True)


BAD_NAMES = {
    "a:b.txt": b"colon", "what?.txt": b"question", "CON.txt": b"reserved", "aux": b"reserved bare",
    "trailing.": b"dot", "trailing ": b"space", 'q"uote<>|*.txt': b"many", "Readme.md": b"mixed case",
    "README.md": b"upper case", "Dir/a.txt": b"in Dir", "DIR/b.txt": b"in DIR", "ok.txt": b"plain",
    "a:" * 100 + ".txt": b"escaping makes this name too long unless it is shortened",
    "é" * 120 + ".txt": b"long non-ASCII name",
}


def _latest_names(set_path: Path) -> set[str]:
    latest = SetLayout(set_path).latest
    return {str(p.relative_to(latest)) for p in latest.rglob("*")}


@pytest.mark.parametrize("fstype", ["exfat", "vfat"])
def test_names_fat_cannot_hold(make_drive, tmp_path, fstype):
    drive = make_drive(fstype)
    src = make_tree(tmp_path / "Docs", BAD_NAMES)
    set_path = drive.mount_point / "set"
    r1 = backup_path(set_path, [src])
    assert r1.status == "ok" and r1.files_copied == len(BAD_NAMES)

    names = _latest_names(set_path)
    assert {"Docs/a%3Ab.txt", "Docs/what%3F.txt", "Docs/_CON.txt", "Docs/_aux", "Docs/trailing%2E",
            "Docs/trailing%20", "Docs/q%22uote%3C%3E%7C%2A.txt", "Docs/ok.txt"} <= names
    # One of each case-only pair keeps its name, the other gets "~1"; never both the same.
    assert {"Docs/README.md", "Docs/Readme~1.md"} <= names
    assert {"Docs/DIR/b.txt", "Docs/Dir~1/a.txt"} <= names

    m = BackupSet.open(set_path).manifest(r1.snapshot_id)
    real = {e.path for e in m.entries if e.type == FILE}
    assert real == {f"Docs/{n}" for n in BAD_NAMES}
    mirrors = {e.path: e.mirror for e in m.entries}
    assert all(len(part) <= 255 for e in m.entries for part in e.mirror_path.split("/"))
    assert mirrors["Docs/a:b.txt"] == "Docs/a%3Ab.txt" and mirrors["Docs/ok.txt"] is None
    assert mirrors["Docs/Dir/a.txt"] == "Docs/Dir~1/a.txt"

    restore_path(set_path, tmp_path / "out", workers=readers(fstype))
    assert read_tree(tmp_path / "out" / "Docs") == BAD_NAMES
    check = _sha256sum_check(set_path)
    assert check.returncode == 0, check.stdout + check.stderr

    # No churn: nothing changed, nothing copied, every mirror name kept.
    r2 = backup_path(set_path, [src])
    assert r2.files_copied == 0
    assert {e.path: e.mirror for e in BackupSet.open(set_path).manifest(r2.snapshot_id).entries} == mirrors
    assert _latest_names(set_path) == names

    # A newcomer that folds onto two taken names gets the next free one; the others keep theirs.
    (src / "readme.MD").write_bytes(b"third spelling")
    (src / "Readme.md").write_bytes(b"mixed case, edited")
    r3 = backup_path(set_path, [src])
    assert r3.files_copied == 2
    m3 = BackupSet.open(set_path).manifest(r3.snapshot_id).by_path()
    assert m3["Docs/Readme.md"].mirror == "Docs/Readme~1.md"
    assert m3["Docs/readme.MD"].mirror == "Docs/readme~2.MD"
    assert m3["Docs/README.md"].mirror is None
    restore_path(set_path, tmp_path / "out3", workers=readers(fstype))
    assert read_tree(tmp_path / "out3" / "Docs") == read_tree(src)
    restore_path(set_path, tmp_path / "out1", snapshot=r1.snapshot_id, workers=readers(fstype))
    assert read_tree(tmp_path / "out1" / "Docs") == BAD_NAMES
    assert verify_path(set_path, read_all=True, workers=readers(fstype)).ok


def test_split_files_on_fat32(vfat_drive, tmp_path, monkeypatch):
    # probe_volume reads core.engine.fs.FAT32_MAX when it runs, so a smaller limit flows into
    # the store's split writer; the real limit (4 GiB - 1) is too big for a test drive.
    limit = 64 * 1024
    monkeypatch.setattr(core.engine.fs, "FAT32_MAX", limit)
    src = make_tree(tmp_path / "Media", {
        "big.bin": File(_blob(3, 3 * limit + 123), 0o640, T0),
        "exact.bin": File(_blob(4, limit), 0o644, T0 + 1),       # at the limit: one ordinary file
        "twice.bin": File(_blob(5, 2 * limit), 0o644, T0 + 2),   # exactly two full parts
        "small.txt": File(b"small", 0o644, T0 + 3),
    })
    set_path = vfat_drive.mount_point / "set"
    before = read_tree(src, modes=True, mtimes=True)
    r1 = backup_path(set_path, [src])
    assert r1.status == "ok" and r1.damaged == []

    layout = SetLayout(set_path)
    m1 = BackupSet.open(set_path).manifest(r1.snapshot_id).by_path()
    assert (m1["Media/big.bin"].parts, m1["Media/twice.bin"].parts, m1["Media/exact.bin"].parts) == (4, 2, 0)
    parts = sorted(p.name for p in (layout.latest / "Media").iterdir())
    assert parts == ["big.bin.001", "big.bin.002", "big.bin.003", "big.bin.004", "exact.bin", "small.txt",
                     "twice.bin.001", "twice.bin.002"]
    sizes = [os.path.getsize(layout.latest / "Media" / f"big.bin.{i:03d}") for i in range(1, 5)]
    assert sizes == [limit, limit, limit, 123] and max(sizes) <= limit
    # The parts joined with standard tools are the file.
    joined = b"".join((layout.latest / "Media" / f"big.bin.{i:03d}").read_bytes() for i in range(1, 5))
    assert joined == (src / "big.bin").read_bytes()
    check = _sha256sum_check(set_path)
    assert check.returncode == 0, check.stdout + check.stderr

    assert backup_path(set_path, [src]).files_copied == 0        # split files are recognised as unchanged

    (src / "big.bin").write_bytes(_blob(6, limit + 1))        # still split, fewer parts
    (src / "twice.bin").write_bytes(b"now small")            # no longer split
    r3 = backup_path(set_path, [src])
    assert r3.files_copied == 2 and r3.damaged == []
    m3 = BackupSet.open(set_path).manifest(r3.snapshot_id).by_path()
    assert (m3["Media/big.bin"].parts, m3["Media/twice.bin"].parts) == (2, 0)
    assert not (layout.latest / "Media" / "big.bin.003").exists()

    restore_path(set_path, tmp_path / "old", snapshot=r1.snapshot_id, workers=1)
    assert read_tree(tmp_path / "old" / "Media", modes=True, mtimes=True) == before
    restore_path(set_path, tmp_path / "new", workers=1)
    assert read_tree(tmp_path / "new" / "Media", modes=True, mtimes=True) == read_tree(src, modes=True, mtimes=True)
    v = verify_path(set_path, read_all=True, workers=1)
    assert v.ok and v.snapshots == 3, v.damaged

    # The first big.bin now lives in objects/ as four parts; forgetting its snapshots prunes them all.
    old_parts = [layout.object_part(m1["Media/big.bin"].sha256, i) for i in range(1, 5)]
    assert all(p.exists() for p in old_parts)
    ids = BackupSet.open(set_path).snapshot_ids()
    result = forget_path(set_path, RetentionPolicy(last=1))
    assert result.forgotten == ids[:2] and result.kept == [r3.snapshot_id]
    assert not any(p.exists() for p in old_parts)
    assert os.listdir(layout.objects / m1["Media/big.bin"].sha256[:2]) == []
    restore_path(set_path, tmp_path / "after-prune", workers=1)
    assert read_tree(tmp_path / "after-prune" / "Media") == read_tree(src)
    assert verify_path(set_path, read_all=True, workers=1).ok


# --- a pulled drive ---------------------------------------------------------------------

def _big_tree(root: Path, files: int = 400) -> Path:
    spec = {f"d{i % 10}/f{i:04d}.bin": File(_blob(100 + i, 8_000 + (i * 37) % 20_000), 0o644, T0 + i)
            for i in range(files)}
    return make_tree(root, spec)


@pytest.mark.slow
@pytest.mark.parametrize("fstype", ["ext4", "exfat"])
def test_pulled_drive_during_backup(make_drive, tmp_path, fstype):
    drive = make_drive(fstype)
    src = make_tree(tmp_path / "Docs", {"a.txt": File(b"first version", 0o644, T0), "b/c.txt": b"c"})
    set_path = drive.mount_point / "set"
    r1 = backup_path(set_path, [src])
    v1 = read_tree(src, modes=True, mtimes=True)
    (src / "a.txt").write_bytes(b"second version, never committed")
    _big_tree(src / "big")
    old_mount = drive.mount_point

    pulled = threading.Event()
    copied = []

    def progress(p: Progress) -> None:
        if p.phase == "copy":
            copied.append(p.files_done)
            if p.files_done >= 40 and not pulled.is_set():
                pulled.set()
                drive.unmount(lazy=True)      # like yanking the stick: open files stay, paths vanish

    with pytest.raises(DriveGone) as info:
        backup_path(set_path, [src], progress=progress, workers=2)
    assert pulled.is_set() and max(copied) < 400
    assert "removed" in str(info.value)
    # Nothing leaked onto the root file system under the old mount point.
    assert os.listdir(old_mount) == []

    # Wait until the detached file system is released, then plug the drive in again.
    if drive.kind.fuse:
        _wait_for(lambda: not _device_open(drive.device), 30, "the FUSE daemon to let go of the drive")
    else:
        time.sleep(0.5)
    mount = drive.mount()
    set_path = mount / "set"
    assert BackupSet.open(set_path).snapshot_ids() == [r1.snapshot_id]
    v = verify_path(set_path, read_all=True)
    assert v.ok, v.damaged
    restore_path(set_path, tmp_path / "out1", snapshot=r1.snapshot_id)
    assert read_tree(tmp_path / "out1" / "Docs", modes=True, mtimes=True) == v1

    r2 = backup_path(set_path, [src])
    assert r2.status == "ok" and r2.damaged == []
    restore_path(set_path, tmp_path / "out2")
    assert read_tree(tmp_path / "out2" / "Docs", modes=True, mtimes=True) == read_tree(src, modes=True, mtimes=True)
    restore_path(set_path, tmp_path / "out1b", snapshot=r1.snapshot_id)
    assert read_tree(tmp_path / "out1b" / "Docs", modes=True, mtimes=True) == v1
    v = verify_path(set_path, read_all=True)
    assert v.ok and v.snapshots == 2 and v.notices == [], v.damaged
