"""The real-drive fixtures give writable, mounted file systems of the right type."""

import os

import psutil
import pytest

from tests.support import make_tree, read_tree

pytestmark = pytest.mark.realdrive

EXPECTED_FSTYPE = {"ext4": "ext4", "exfat": "fuseblk", "vfat": "fuse.fusefat"}


@pytest.fixture(params=["ext4", "exfat", "vfat"])
def drive(request):
    return request.getfixturevalue(f"{request.param}_drive")


def _partition(mount_point, all=True):  # noqa: A002 - psutil.disk_partitions' name
    return next((p for p in psutil.disk_partitions(all=all) if p.mountpoint == str(mount_point)), None)


def test_drive_is_mounted_writable_with_the_right_type(drive):
    part = _partition(drive.mount_point)
    assert part is not None, f"{drive.mount_point} not in psutil.disk_partitions(all=True)"
    assert part.fstype == EXPECTED_FSTYPE[drive.fstype]
    assert os.path.ismount(drive.mount_point)
    make_tree(drive.mount_point / "Plugback", {"drive.json": b'{"format": "plugback-drive"}', "sub/x.bin": b"\0" * 5000})
    assert read_tree(drive.mount_point / "Plugback") == {
        "drive.json": b'{"format": "plugback-drive"}', "sub/x.bin": b"\0" * 5000}
    usage = psutil.disk_usage(str(drive.mount_point))
    if drive.fstype == "vfat":
        # fusefat implements no statfs: free space reads 0 (documented in tests/support/drives.py).
        assert usage.total == 0
    else:
        assert usage.total > 50 * 1024 * 1024


def test_only_fat_is_hidden_from_the_default_partition_list(drive):
    listed = _partition(drive.mount_point, all=False) is not None
    assert listed == (drive.fstype != "vfat")


def test_remount_at_another_path_keeps_the_data(drive, tmp_path):
    first = drive.mount_point
    make_tree(first, {"Plugback/drive.json": b"{}", "notes.txt": b"written before unplug"})
    drive.unmount()
    assert drive.mount_point is None
    assert not os.path.ismount(first)
    assert _partition(first) is None

    second = drive.mount(at=tmp_path / "elsewhere" / "STICK")
    assert second != first and os.path.ismount(second)
    assert _partition(second).fstype == EXPECTED_FSTYPE[drive.fstype]
    assert (second / "notes.txt").read_bytes() == b"written before unplug"
    assert (second / "Plugback" / "drive.json").read_bytes() == b"{}"

    drive.unmount()
    third = drive.mount()  # no `at`: a fresh mount point, like a new /media/<user>/<label>
    assert third not in (first, second)
    assert (third / "notes.txt").exists()


def test_lazy_unmount_detaches_while_a_file_is_open(ext4_drive):
    handle = open(ext4_drive.mount_point / "open.txt", "w")
    mount_point = ext4_drive.mount_point
    try:
        ext4_drive.unmount(lazy=True)
        assert not os.path.ismount(mount_point)
        assert _partition(mount_point) is None
    finally:
        handle.close()


def test_unmount_waits_out_a_brief_look_but_names_a_file_left_open(ext4_drive):
    import threading

    from tests.support.drives import BUSY_GRACE

    handle = open(ext4_drive.mount_point / "glance.txt", "w")
    threading.Timer(0.3, handle.close).start()          # the agent's glance at a new volume
    ext4_drive.unmount()
    assert not ext4_drive.mounted and handle.closed
    ext4_drive.mount()
    with open(ext4_drive.mount_point / "left-open.txt", "w"):   # a bug: a file never closed
        with pytest.raises(RuntimeError, match=r"busy.*open: pid \d+ .*left-open\.txt"):
            ext4_drive.unmount()
        assert ext4_drive.mounted and BUSY_GRACE < 5


def test_several_drives_at_once_and_cleanup_detaches_them(make_drive):
    drives = [make_drive("ext4", size_mb=64, label=f"D{i}") for i in range(2)]
    assert len({d.device for d in drives}) == 2
    assert len({d.mount_point for d in drives}) == 2
    drives[0].close()
    assert not os.path.ismount(drives[0].mount_point or "/nonexistent")
    assert drives[0].device is None


# Why a machine cannot make drives must be said plainly (a fake only for the missing capability).

def test_unavailable_reason_names_root_when_not_root(monkeypatch):
    from tests.support.drives import DriveUnavailable, check_available

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DriveUnavailable, match="need root"):
        check_available("ext4")


def test_unavailable_reason_names_the_missing_tool_and_package(monkeypatch, tmp_path):
    from tests.support.drives import DriveUnavailable, check_available

    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or not os.path.exists("/dev/fuse"):
        pytest.skip("checks the tool message, which comes after the root / device checks")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(DriveUnavailable, match=r"'losetup' is not installed.*exfatprogs exfat-fuse"):
        check_available("exfat")
