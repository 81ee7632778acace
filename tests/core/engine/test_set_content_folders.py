"""Content read by its path (``BackupSet.read_content``: encrypted sets' restores, verify --read-all's
objects, older versions) never through a folder of the set swapped for a symlink
(``safeio.CheckedFolders``): the same bytes outside the set, reached through a link in place of
``objects/xx``, are reported damaged, not restored or called verified."""

from __future__ import annotations

import os
import shutil

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import repo, safeio
from core.errors import DriveFileDamaged
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree

TREE = {"a/one.txt": b"one", "a/two.txt": b"two" * 100, "b/three.txt": b"three" * 50}


def _link_out(set_path, tmp_path) -> list[str]:
    """Every object folder moved outside the set and a symlink put in its place; their names."""
    objects = set_path / "objects"
    moved = []
    for folder in sorted(p for p in objects.iterdir() if p.is_dir() and any(p.iterdir())):
        outside = tmp_path / "outside" / folder.name
        shutil.copytree(folder, outside)
        shutil.rmtree(folder)
        os.symlink(outside, folder)
        moved.append(folder.name)
    assert moved
    return moved


def test_an_encrypted_sets_restore_and_verify_never_read_through_a_symlinked_object_folder(tmp_path):
    src = make_tree(tmp_path / "Docs", TREE)
    backup_path(tmp_path / "set", [src], passphrase="pw")
    unlock = make_unlocker(Secret.passphrase("pw"))
    _link_out(tmp_path / "set", tmp_path)
    result = restore_path(tmp_path / "set", tmp_path / "out", unlock=unlock)
    damaged = dict(result.damaged)
    assert sorted(damaged) == sorted(f"Docs/{rel}" for rel in TREE)   # (before: restored through the links)
    assert all("symbolic link" in why for why in damaged.values())
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
    checked = verify_path(tmp_path / "set", unlock=unlock, read_all=True)
    assert not checked.ok and any("symbolic link" in why for _, why in checked.damaged)


def test_a_plain_sets_older_versions_are_not_verified_through_a_symlinked_object_folder(tmp_path):
    src = make_tree(tmp_path / "Docs", TREE)
    backup_path(tmp_path / "set", [src])
    for rel in TREE:
        (src / rel).write_bytes(b"changed " + (src / rel).read_bytes())
    backup_path(tmp_path / "set", [src])   # (the first versions now live in objects/)
    assert verify_path(tmp_path / "set", read_all=True).ok
    _link_out(tmp_path / "set", tmp_path)
    checked = verify_path(tmp_path / "set", read_all=True)
    assert not checked.ok and any("symbolic link" in why for _, why in checked.damaged)


def test_checked_folders_refuse_a_link_a_path_outside_and_a_file_on_the_way(tmp_path):
    root = make_tree(tmp_path / "set", {"objects/ab/x": b"x", "objects/cd": b"a file"})
    make_tree(tmp_path / "elsewhere", {"x": b"x"})
    os.symlink(tmp_path / "elsewhere", root / "objects" / "ef")
    folders = safeio.CheckedFolders(root)
    os.close(folders.open(root / "objects" / "ab" / "x"))
    with pytest.raises(DriveFileDamaged, match="symbolic link"):
        folders.open(root / "objects" / "ef" / "x")
    with pytest.raises(DriveFileDamaged, match="not inside the set"):
        folders.open(tmp_path / "elsewhere" / "x")
    with pytest.raises(DriveFileDamaged, match="leaves the set"):
        folders.open(f"{root}/objects/../../elsewhere/x")
    with pytest.raises(FileNotFoundError):
        folders.open(root / "objects" / "cd" / "x")


def test_an_encrypted_sets_big_object_is_opened_once(tmp_path, monkeypatch):
    big = os.urandom(repo.SMALL_OBJECT + (1 << 20))   # read as a stream, not whole
    src = make_tree(tmp_path / "Docs", {"big.bin": big, "small.txt": b"small"})
    backup_path(tmp_path / "set", [src], passphrase="pw")
    opened: list[str] = []
    real = safeio.CheckedFolders.open
    monkeypatch.setattr(safeio.CheckedFolders, "open", lambda self, p: (opened.append(str(p)), real(self, p))[1])
    restore_path(tmp_path / "set", tmp_path / "out", unlock=make_unlocker(Secret.passphrase("pw")))
    assert (tmp_path / "out" / "Docs" / "big.bin").read_bytes() == big
    objects = [p for p in opened if f"{os.sep}objects{os.sep}" in p]
    assert len(objects) == 2 and len(set(objects)) == 2   # (before: the big one opened twice)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd (Linux)")
def test_a_split_objects_missing_part_leaves_no_part_open(tmp_path):
    make_tree(tmp_path / "set", {"objects/ab/x.001": b"first part"})
    folders = safeio.CheckedFolders(tmp_path / "set")
    before = sorted(os.listdir("/proc/self/fd"))
    parts = [tmp_path / "set" / "objects" / "ab" / "x.001", tmp_path / "set" / "objects" / "ab" / "x.002"]
    with pytest.raises(FileNotFoundError) as failed:
        repo._ConcatReader(parts, True, folders.open)
    assert sorted(os.listdir("/proc/self/fd")) == before, "the first part's file is still open"
    assert failed.value is not None   # (the traceback, alive here, holds the half-built reader)
