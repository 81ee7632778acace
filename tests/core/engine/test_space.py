"""Drive full (issue #14): the estimate, thinning the oldest snapshots, failing before writing, ENOSPC mid-run.

The drive tests use real ext4 loop images: small ones, so that "full" is real.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine.backup import BackupOptions
from core.engine.fs import translate
from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
from core.engine.retention import thin_count
from core.engine.space import MARGIN_FIXED, backup_with_room, block_size, estimate, free_space, stored_size
from core.errors import DiskFull, DriveFull, IOFailure
from tests.support.engine import backup_path, open_set, restore_path, verify_path
from tests.support.faults import FaultyFS
from tests.support.trees import make_tree, read_tree

MB = 1 << 20


# --- the decision: how many of the oldest go (pure) -------------------------------------------

@pytest.mark.parametrize("alone,unused,free,need,k", [
    ([10, 10, 10], 0, 50, 40, 0),          # fits already
    ([10, 10, 10], 0, 30, 40, 1),          # the oldest alone frees enough
    ([10, 10, 10], 0, 25, 40, 2),          # two oldest
    ([10, 10, 10], 0, 15, 40, None),       # all but the newest free 20: not enough, nothing goes
    ([10, 10, 99], 0, 15, 40, None),       # the newest's own bytes never count
    ([10, 10, 10], 5, 35, 40, 0),          # a prune of unused objects alone makes room
    ([0, 0, 10], 0, 30, 35, None),         # old snapshots that need nothing of their own free nothing
    ([0, 7, 10], 0, 30, 35, 2),
    ([], 0, 10, 20, None),                 # no snapshot at all
    ([], 12, 10, 20, 0),
    ([50], 0, 10, 20, None),               # only the newest
])
def test_thin_count_table(alone, unused, free, need, k):
    assert thin_count(alone, unused, free, need) == k


# --- the estimate --------------------------------------------------------------------------------

def test_estimate_counts_new_and_changed_content_only(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.bin": os.urandom(10_000), "b.bin": os.urandom(3000),
                                                "sub/c.txt": b"c", "empty/": None})
    set_path = tmp_path / "set"
    block = block_size(tmp_path)
    backup_path(set_path, [src], verify=False)
    bset = open_set(set_path)
    assert estimate(bset, [src]).content == 0                      # nothing changed: nothing to copy
    (src / "b.bin").write_bytes(os.urandom(5000))                    # changed
    (src / "new.bin").write_bytes(os.urandom(block * 3 + 1))         # new
    (src / "a.bin").unlink()                                          # removed: a rename, free
    need = estimate(bset, [src])
    assert need.files == 2
    assert need.content == stored_size(5000, False, block) + block * 4
    assert MARGIN_FIXED < need.margin < MARGIN_FIXED + 10_000
    assert need.total == need.content + need.margin
    assert estimate(bset, [src], excludes=["*.bin"]).content == 0   # the job's excludes count


def test_estimate_of_a_first_backup_and_of_an_encrypted_set(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.bin": os.urandom(2 * MB), "b.txt": b"b"})
    block = block_size(tmp_path)
    plain = BackupSet.create(tmp_path / "plain", FakeClock().now())
    enc = BackupSet.create(tmp_path / "enc", FakeClock().now(), passphrase="pw")
    assert estimate(plain, [src]).content == 2 * MB + block
    # Encrypted content carries a header and a tag per chunk: a 2 MiB file takes more than 2 MiB.
    assert estimate(enc, [src]).content == stored_size(2 * MB, True, block) + stored_size(1, True, block)
    assert stored_size(2 * MB, True, block) > 2 * MB


class _FailsFourthCopy(FaultyFS):
    """The fourth file created (a copy's in ``tmp/``) fails with EIO."""

    def __init__(self):
        super().__init__()
        self.creates = 0

    def create(self, path) -> int:
        self.creates += 1
        if self.creates == 4:
            raise translate(OSError(errno.EIO, "injected create"), path, self.root)
        return super().create(path)


def test_estimate_reuses_what_an_interrupted_run_placed(tmp_path):
    """An interrupted run's checkpointed copies cost nothing again (the journal lets the run resume)."""
    src = make_tree(tmp_path / "src" / "Data", {f"f{i}.bin": os.urandom(20_000) for i in range(6)})
    set_path = tmp_path / "set"
    backup_path(set_path, [make_tree(tmp_path / "first" / "Data", {"x": b"x"})], verify=False)
    clock = FakeClock()
    # Each copy advances the clock past the checkpoint interval, so every placed file is checkpointed
    # (in the checkpoints' thread, or by the failed run's last checkpoint); the fourth file's copy
    # fails with EIO (the run stops with its journal kept). (A write operation counted across the
    # pass and the checkpoints' thread does not land at one place from run to run.)
    from core.engine.backup import CHECKPOINT_SECONDS

    def progress(p):
        if p.phase == "copy":
            clock.advance(CHECKPOINT_SECONDS)

    fs = _FailsFourthCopy()
    with pytest.raises(IOFailure):
        backup_path(set_path, [src], fs=fs, clock=clock, progress=progress, workers=1, verify=False)
    bset = open_set(set_path)
    assert (set_path / "journal.json").exists()
    need = estimate(bset, [src])
    assert need.files == 3             # the three placed and checkpointed are not counted


# --- real drives -----------------------------------------------------------------------------------

def _fill(folder, name, size):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(os.urandom(size))


def test_a_run_that_cannot_fit_fails_before_writing(make_drive, tmp_path):
    """The issue's case: a new 30 MB drive, a 58 MB folder. Numbers, nothing written, no 'intact'."""
    drive = make_drive("ext4", size_mb=30)
    src = tmp_path / "src" / "Big"
    for i in range(4):
        _fill(src, f"part{i}.bin", 14_500_000)
    set_path = drive.mount_point / "set"
    bset = BackupSet.create(set_path, FakeClock().now())
    before = free_space(set_path)
    with pytest.raises(DriveFull) as info:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    message = info.value.message
    assert info.value.code == "drive_full"
    assert "needs about 59" in message and f"has {before / 1e6:.1f} MB free" in message, message
    assert "intact" not in message and "no complete backup" in message
    assert "plugback" not in message.lower()           # no command line for a window user
    assert bset.snapshot_ids() == []
    assert not any((set_path / "Latest").iterdir())
    assert free_space(set_path) == before               # nothing written


def test_a_small_drive_filled_over_several_runs(make_drive, tmp_path):
    """Each run succeeds; the oldest snapshots go, never the newest; every kept one restores."""
    drive = make_drive("ext4", size_mb=40)
    set_path = drive.mount_point / "set"
    src = tmp_path / "src" / "Data"
    _fill(src, "keep.txt", 1000)
    removed_all: list[str] = []
    for run in range(6):
        _fill(src, "big.bin", 9 * MB)          # a new version every run: 9 MB more in objects/
        if not BackupSet.exists(set_path):
            backup_path(set_path, [src], verify=False)   # creates the set
            continue
        bset = open_set(set_path)
        ids_before = bset.snapshot_ids()
        result, report = backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
        assert result.status.value == "ok"
        removed_all += report.removed
        assert report.removed == ids_before[:len(report.removed)]      # the oldest, in order
        assert ids_before[-1] not in report.removed                    # never the newest
        out = tmp_path / f"out{run}"
        restore_path(set_path, out)
        assert read_tree(out / "Data") == read_tree(src)
    assert len(removed_all) >= 2                 # 40 MB cannot hold six 9 MB versions
    bset = open_set(set_path)
    assert 2 <= len(bset.snapshot_ids()) <= 4
    assert verify_path(set_path, read_all=True).ok
    assert free_space(set_path) > 0


def test_cannot_fit_even_after_thinning_removes_nothing(make_drive, tmp_path):
    drive = make_drive("ext4", size_mb=40)
    set_path = drive.mount_point / "set"
    src = tmp_path / "src" / "Data"
    _fill(src, "a.bin", 8 * MB)
    backup_path(set_path, [src], verify=False)
    _fill(src, "a.bin", 8 * MB)
    backup_path(set_path, [src], verify=False)
    _fill(src, "huge.bin", 40 * MB)
    bset = open_set(set_path)
    ids = bset.snapshot_ids()
    with pytest.raises(DriveFull) as info:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    message = info.value.message
    assert "even after removing old backups" in message and "is intact" in message, message
    assert bset.snapshot_ids() == ids            # nothing removed for nothing
    assert info.value.details["free_after"] > info.value.details["free"]


def test_enospc_mid_run_makes_room_and_goes_again(make_drive, tmp_path):
    """The sources grew past what the last snapshot suggested: ENOSPC mid-run; the oldest snapshot
    goes and the run finishes, reusing what was copied."""
    drive = make_drive("ext4", size_mb=64)
    set_path = drive.mount_point / "set"
    src = tmp_path / "src" / "Data"
    _fill(src, "old.bin", 22 * MB)
    first = backup_path(set_path, [src], verify=False).snapshot_id
    (src / "old.bin").unlink()
    _fill(src, "small.bin", 100_000)
    backup_path(set_path, [src], verify=False)      # old.bin now lives in objects/, for `first` only
    for i in range(4):
        _fill(src, f"new{i}.bin", 9 * MB)          # 36 MB: the drive has ~34 MB free
    bset = open_set(set_path)
    result, report = backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    assert report.retried and report.removed == [first]
    assert result.status.value == "ok"
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)


def test_enospc_without_thinning_says_truly_what_is_intact(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.bin": os.urandom(50_000)})
    set_path = tmp_path / "set"
    BackupSet.create(set_path, FakeClock().now())
    bset = BackupSet.open(set_path, None, FaultyFS(fail_at=3, error=errno.ENOSPC))
    with pytest.raises(DiskFull) as info:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()), thin=False)
    assert "no complete backup" in info.value.message and "intact" not in info.value.message
    backup_path(set_path, [src], verify=False)
    bset = BackupSet.open(set_path, None, FaultyFS(fail_at=3, error=errno.ENOSPC))
    (src / "a.bin").write_bytes(os.urandom(60_000))
    with pytest.raises(DiskFull) as info:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()), thin=False)
    assert "The last complete backup is intact" in info.value.message
    assert not any((set_path / "tmp").iterdir())          # no pieces left in tmp/


def test_free_space_unknown_is_not_zero(tmp_path):
    """A volume that says its size reports its free bytes (others write to the same disk meanwhile:
    the answer lies between two readings taken around it, give or take what they write)."""
    before = shutil.disk_usage(tmp_path).free
    got = free_space(tmp_path)
    after = shutil.disk_usage(tmp_path).free
    assert got is not None and got > 0
    assert min(before, after) - (64 << 20) <= got <= max(before, after) + (64 << 20)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_enospc_that_no_thinning_can_cure_takes_the_copies_back(make_drive, tmp_path, encrypted):
    """The sources grew past the drive mid-run and there is nothing old to remove: the run ends with a
    true message and its copies are removed again, so the next job on the drive still has room."""
    drive = make_drive("ext4", size_mb=40)
    set_path = drive.mount_point / "set"
    src = tmp_path / "src" / "Data"
    _fill(src, "small.bin", 200_000)
    unlock = make_unlocker(Secret.passphrase("pw")) if encrypted else None
    first = backup_path(set_path, [src], verify=False, passphrase="pw" if encrypted else None).snapshot_id
    free_before = free_space(set_path)
    for i in range(5):
        _fill(src, f"new{i}.bin", 10 * MB)        # 50 MB on a drive with ~34 MB free
    bset = open_set(set_path, unlock)
    with pytest.raises(DriveFull) as info:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    message = info.value.message
    assert "removed again, so the drive is not left full" in message and "is intact" in message, message
    assert "Nothing was written" not in message
    assert re.search(r"needs about 5\d\.\d MB, but the drive has (\d+\.\d) MB free", message), message
    assert f"has {free_space(set_path) / 1e6:.1f} MB free" in message      # the numbers as they are now
    assert free_space(set_path) >= free_before - 1 * MB          # the copies were taken back
    assert not any((set_path / "tmp").iterdir())
    assert (set_path / "journal.json").exists()                     # Latest/ is between snapshots: said so
    assert estimate(bset, [src]).files == 5                          # its records count no more
    assert bset.snapshot_ids() == [first]
    out = tmp_path / "out"
    restore_path(set_path, out, unlock=unlock)
    assert read_tree(out / "Data") == {"small.bin": (src / "small.bin").read_bytes()}
    assert verify_path(set_path, read_all=True, unlock=unlock).ok
    for i in range(5):
        (src / f"new{i}.bin").unlink()
    _fill(src, "later.bin", 5 * MB)                             # a run that fits goes through
    result, report = backup_with_room(open_set(set_path, unlock), [src], BackupOptions(clock=FakeClock()))
    assert result.status.value == "ok" and report.removed == []


def test_making_room_keeps_what_an_interrupted_run_placed(tmp_path):
    """An encrypted run's objects are unreferenced until it commits: making room for that same run
    must neither count them as freeable nor prune them (else the resume would copy them again)."""
    from core.engine.backup import CHECKPOINT_SECONDS
    from core.engine.retention import in_flight, plan_room, prune_objects

    set_path = tmp_path / "set"
    src = make_tree(tmp_path / "src" / "Data", {f"f{i}.bin": os.urandom(50_000) for i in range(6)})
    unlock = make_unlocker(Secret.passphrase("pw"))
    backup_path(set_path, [make_tree(tmp_path / "one" / "Data", {"x": b"x"})], passphrase="pw", verify=False)
    clock = FakeClock()

    def progress(p):
        if p.phase == "copy":
            clock.advance(CHECKPOINT_SECONDS)   # every placed file checkpointed

    with pytest.raises(IOFailure):
        backup_path(set_path, [src], unlock=unlock, fs=FaultyFS(fail_at=40, error=errno.EIO), clock=clock,
                    progress=progress, workers=1, verify=False)
    bset = open_set(set_path, unlock)
    flying = in_flight(bset)
    assert flying and all((set_path / "objects" / n[:2] / n).exists() for n in flying)
    assert plan_room(bset, 0, 1 << 40).most < 50_000 * len(flying)   # not counted as freeable
    prune_objects(bset, keep=flying)
    assert all((set_path / "objects" / n[:2] / n).exists() for n in flying)
    prune_objects(bset)                                                # a plain prune would delete them
    assert not any((set_path / "objects" / n[:2] / n).exists() for n in flying)
