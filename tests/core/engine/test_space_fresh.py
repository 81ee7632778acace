"""A first backup's room check without counting every file (issue #11): when the drive has room
for twice all that the sources' volumes hold; the full count otherwise. Real loop drives."""

from __future__ import annotations

import os
import subprocess

from core.engine.backup import BackupOptions
from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
from core.engine.space import _source_volumes, backup_with_room, free_space
from core.errors import DriveFull
from tests.support.trees import make_tree, read_tree

MB = 1 << 20


def _small_source(make_drive, files: int = 20):
    drive = make_drive("ext4", size_mb=16)
    src = drive.mount_point / "Docs"
    make_tree(src, {f"sub{i % 3}/f{i}.txt": os.urandom(3000) for i in range(files)})
    return src


def test_a_first_backup_on_a_roomy_drive_does_not_count_the_sources(make_drive, tmp_path):
    src = _small_source(make_drive)
    set_path = tmp_path / "set"               # on the test machine's own volume: far more than 2 x 16 MB free
    bset = BackupSet.create(set_path, FakeClock().now())
    result, report = backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    assert result.status.value == "ok" and result.files_copied == 20
    assert report.need is None and report.removed == []          # no estimate was made
    assert read_tree(set_path / "Latest" / "Docs") == read_tree(src)


def test_a_first_backup_on_a_drive_short_of_twice_the_volume_counts(make_drive, tmp_path):
    """The sources' volume (the machine's) is far bigger than the small drive: the files are counted,
    and they fit."""
    src = tmp_path / "src" / "Docs"
    make_tree(src, {f"f{i}.txt": os.urandom(2000) for i in range(10)})
    drive = make_drive("ext4", size_mb=30)
    bset = BackupSet.create(drive.mount_point / "set", FakeClock().now())
    result, report = backup_with_room(bset, [src], BackupOptions(clock=FakeClock()))
    assert result.status.value == "ok"
    assert report.need is not None and report.need.files == 10


def test_a_first_backup_that_cannot_fit_still_fails_before_writing(make_drive, tmp_path):
    src = tmp_path / "src" / "Big"
    make_tree(src, {f"part{i}.bin": os.urandom(6 * MB) for i in range(4)})
    drive = make_drive("ext4", size_mb=16)
    set_path = drive.mount_point / "set"
    bset = BackupSet.create(set_path, FakeClock().now())
    before = free_space(set_path)
    try:
        backup_with_room(bset, [src], BackupOptions(clock=FakeClock()), thin=False)
    except DriveFull as err:
        assert err.details["needed"] > 24 * MB
    else:
        raise AssertionError("a 24 MB folder fitted on a 16 MB drive")
    assert free_space(set_path) == before and bset.snapshot_ids() == []


def test_a_volume_mounted_inside_a_source_counts_too(make_drive, tmp_path):
    src = _small_source(make_drive, files=2)
    inner = make_drive("ext4", size_mb=64)
    (src / "inner").mkdir()
    subprocess.run(["mount", "--bind", str(inner.mount_point), str(src / "inner")], check=True)
    try:
        volumes = _source_volumes([str(src)])
        sizes = sorted(v.f_blocks * v.f_frsize for v in volumes)
        assert len(volumes) == 2
        assert sizes == sorted(os.statvfs(p).f_blocks * os.statvfs(p).f_frsize for p in (src, inner.mount_point))
    finally:
        subprocess.run(["umount", str(src / "inner")], check=True)
    assert len(_source_volumes([str(src)])) == 1
