"""A first backup builds ``Latest/`` whole in ``tmp/Latest.part`` and names it at the commit
(core/engine/fresh_latest.py): no rename per file, nothing half-written ever under a ``Latest/``
name, an interrupted first backup resumed from what its journal checkpointed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from core import errors
from core.engine import fresh_latest
from core.engine.progress import CancelToken, FakeClock
from core.engine.repo import BackupSet
from core.engine.scan import ScanEntry
from core.engine.store import PlainStore
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.faults import Crash, FaultyFS
from tests.support.trees import Symlink, make_tree, read_tree

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="Windows builds Latest/ file by file")

TREE = {
    "a.txt": b"alpha",
    "empty.txt": b"",
    "d/b.txt": b"bravo" * 100,
    "d/e/c.bin": bytes(range(256)) * 40,
    "d/e/link": Symlink("../b.txt"),
    "big.bin": os.urandom(3 << 20),   # (a pool thread's copy, bigger than INLINE_BYTES)
    "hollow/": None,
}


def _new_set(path: Path) -> None:
    BackupSet.create(path, FakeClock().now(), job="Docs")


def _files_below(folder: Path) -> dict[str, bytes]:
    """Every regular file below ``folder`` (no symlink followed), by its '/' path."""
    found = {}
    for here, _, names in os.walk(folder):
        for name in names:
            p = Path(here) / name
            if not p.is_symlink():
                found[p.relative_to(folder).as_posix()] = p.read_bytes()
    return found


@posix_only
def test_a_first_backup_writes_in_place_and_names_latest_at_the_commit(tmp_path):
    """Latest/ stays empty during the pass (the copies are below tmp/Latest.part), small copies
    are not renamed one by one, and after the commit Latest/ holds the whole tree, verified."""
    src = make_tree(tmp_path / "src" / "Data", TREE)
    set_path = tmp_path / "set"
    _new_set(set_path)
    seen = []

    def progress(p):
        if p.phase == "copy":
            seen.append((_files_below(set_path / "Latest"), (set_path / "tmp" / fresh_latest.STAGE).is_dir()))

    fs = FaultyFS(set_path)
    r = backup_path(set_path, [src], fs=fs, progress=progress)
    assert r.status == "ok" and r.files_copied == 5
    assert seen and all(files == {} and staged for files, staged in seen)
    # renames: the big file's (through tmp/), the folder's, the manifest's, Latest.sha256's; not one per file
    assert fs.log.count("replace") <= 4, fs.log.count("replace")
    assert os.listdir(set_path / "tmp") == []
    assert read_tree(set_path / "Latest" / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True).ok
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


@posix_only
@pytest.mark.slow
def test_a_crash_at_every_write_step_of_a_first_backup_shows_no_half_file_and_resumes(tmp_path):
    """A crash at each write step of a first backup: no snapshot, every file under a Latest/ name
    whole (the source's bytes), and the next run backs everything up and verifies."""
    src = make_tree(tmp_path / "src" / "Data", TREE)
    expected = read_tree(src)
    sources = {k: v for k, v in _files_below(src).items()}
    set_path, pristine = tmp_path / "set", tmp_path / "pristine"
    _new_set(pristine)
    shutil.copytree(pristine, set_path, symlinks=True)
    probe = FaultyFS(set_path)
    backup_path(set_path, [src], fs=probe)
    steps = probe.calls
    assert "rmdir" in probe.log or "remove_dir" in probe.log
    for n in range(1, steps + 1):
        shutil.rmtree(set_path)
        shutil.copytree(pristine, set_path, symlinks=True)
        fs = FaultyFS(set_path, fail_at=n)
        with pytest.raises(Crash):
            backup_path(set_path, [src], fs=fs)
        label = f"crash at step {n} ({fs.log[-1]})"
        (set_path / "lock").unlink(missing_ok=True)
        committed = os.listdir(set_path / "snapshots")
        for rel, data in _files_below(set_path / "Latest").items():
            assert rel.startswith("Data/") and data == sources[rel[5:]], label
        result = backup_path(set_path, [src])
        assert result.status == "ok", label
        assert committed or result.files_copied <= 5, label
        assert read_tree(set_path / "Latest" / "Data") == expected, label
        assert os.listdir(set_path / "tmp") == [], label
        assert verify_path(set_path, read_all=True).ok, label


@posix_only
def test_an_interrupted_first_backup_resumes_in_place_and_drops_what_was_not_checkpointed(tmp_path):
    """A cancelled first backup leaves tmp/Latest.part; the next run reuses its checkpointed copies,
    and a file there that its journal does not name (half-written, or its source gone) never
    reaches Latest/."""
    spec = {f"f{i:03}.bin": bytes([i]) * 20000 for i in range(60)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    set_path = tmp_path / "set"
    token = CancelToken()

    def stop_halfway(p):
        if p.phase == "copy" and p.files_done >= 30:
            token.cancel()

    with pytest.raises(errors.Cancelled):
        backup_path(set_path, [src], cancel=token, progress=stop_halfway, workers=1)
    stage = set_path / "tmp" / fresh_latest.STAGE
    assert (stage / "Data" / "f000.bin").read_bytes() == spec["f000.bin"]
    (stage / "Data" / "stray.bin").write_bytes(b"half")       # no source, no journal record
    (stage / "Data" / "f059.bin").write_bytes(b"half")        # not copied yet: no journal record
    result = backup_path(set_path, [src])
    assert 0 < result.files_copied <= 30, result.files_copied
    assert not (set_path / "Latest" / "Data" / "stray.bin").exists()
    assert read_tree(set_path / "Latest" / "Data") == read_tree(src)
    assert not stage.exists()
    assert verify_path(set_path, read_all=True).ok


@posix_only
def test_a_link_planted_as_the_folder_being_built_is_not_followed(tmp_path):
    """tmp/Latest.part made a symlink to a folder elsewhere: removed, never written through."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"alpha"})
    outside = make_tree(tmp_path / "outside", {"keep.txt": b"mine"})
    set_path = tmp_path / "set"
    _new_set(set_path)
    os.symlink(outside, set_path / "tmp" / fresh_latest.STAGE)
    assert backup_path(set_path, [src]).status == "ok"
    assert read_tree(outside) == {"keep.txt": b"mine"}
    assert read_tree(set_path / "Latest" / "Data") == read_tree(src)


@posix_only
def test_a_later_backup_builds_nothing_in_tmp_and_removes_what_a_first_one_left(tmp_path):
    """With a snapshot (Latest/ has files) a run copies as before, file by file through tmp/, and a
    tmp/Latest.part left there is removed."""
    src = make_tree(tmp_path / "src" / "Data", TREE)
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    make_tree(set_path / "tmp" / fresh_latest.STAGE, {"Data/old.txt": b"left"})
    (src / "new.txt").write_bytes(b"new")
    fs = FaultyFS(set_path)
    assert backup_path(set_path, [src], fs=fs).files_copied == 1
    assert not (set_path / "tmp" / fresh_latest.STAGE).exists()
    assert (set_path / "Latest" / "Data" / "new.txt").read_bytes() == b"new"
    assert verify_path(set_path, read_all=True).ok


def test_a_copy_in_place_never_writes_over_a_file_there(tmp_path):
    """``copy_in(dest=)`` creates its file exclusively: a file already at ``dest`` is left as it is,
    and the copy goes through tmp/ (placed by a rename, as before)."""
    src = tmp_path / "src.txt"
    src.write_bytes(b"new bytes")
    set_path = tmp_path / "set"
    _new_set(set_path)
    bset = BackupSet.open(set_path)
    from core.engine.fs import probe_volume

    store = PlainStore(bset, probe_volume(bset.layout.tmp), [])
    st = os.lstat(src)
    se = ScanEntry("src.txt", str(src), "f", st.st_size, st.st_mtime_ns, st.st_mode, st.st_ino, st.st_ctime_ns,
                   dev=st.st_dev)
    there = set_path / "there.txt"
    there.write_bytes(b"someone else's")
    copied = store.copy_in(se, dest=str(there))
    assert not copied.in_place and there.read_bytes() == b"someone else's"
    assert copied.tmp_paths[0].startswith(str(set_path / "tmp"))
    fresh = set_path / "fresh.txt"
    copied = store.copy_in(se, dest=str(fresh))
    assert copied.in_place and fresh.read_bytes() == b"new bytes" and copied.tmp_paths == [str(fresh)]
