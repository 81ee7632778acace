"""core/agent/drives.py and the drive commands on real loop-mounted file systems."""

import json
import os
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from core.agent import drives
from core.agent.config import Paths
from core.agent.config_file import read_config
from core.agent.drives import (
    Timed,
    enroll,
    find_drive,
    is_network_fs,
    list_volumes,
    local_partitions,
    mount_points,
    read_drive_file,
    system_volume_reason,
    write_drive_file,
)
from core.engine.layout import DRIVE_FORMAT, drive_file
from core.errors import NotEnrollable, VolumesNotListed
from tests.support.cli import run_cli
from tests.support.waiting import wait_for
from tests.support.watcher import HangingListing


def test_drive_file_round_trip(tmp_path):
    info = write_drive_file(tmp_path, "Blue")
    data = json.loads(drive_file(tmp_path).read_text())
    assert data["format"] == DRIVE_FORMAT and data["version"] == 1 and data["label"] == "Blue"
    assert read_drive_file(tmp_path) == info and len(info.drive_id) == 36
    assert write_drive_file(tmp_path, "Blue").drive_id != info.drive_id   # fresh id each time


@pytest.mark.parametrize("content", ["{broken", '{"format": "other", "drive_id": "x"}', "[]"])
def test_unreadable_drive_file_is_not_a_drive(tmp_path, content):
    drive_file(tmp_path).parent.mkdir()
    drive_file(tmp_path).write_text(content)
    assert read_drive_file(tmp_path) is None


@pytest.mark.parametrize("mount", ["/", "/boot", "/usr"])
def test_system_mounts_are_refused(mount):
    reason = system_volume_reason(Path(mount))
    assert reason and "operating system" in reason


def test_home_volume_is_refused():
    assert "home folder" in system_volume_reason(Path.home()) or "operating system" in system_volume_reason(Path.home())


def test_enroll_refuses_a_plain_folder(tmp_path):
    with pytest.raises(NotEnrollable, match="not the mount point"):
        enroll(tmp_path)
    with pytest.raises(NotEnrollable, match="no such folder"):
        enroll(tmp_path / "missing")


@pytest.mark.parametrize("fstype,psutil_type", [("ext4", "ext4"), ("exfat", "fuseblk"), ("vfat", "fuse.fusefat")])
def test_listed_enrolled_and_found_after_remount(make_drive, fstype, psutil_type):
    drive = make_drive(fstype, label="BLUE")
    mount = str(drive.mount_point)
    vol = next(v for v in list_volumes() if v.mount == mount)
    assert vol.fstype == psutil_type and vol.drive_id is None and vol.removable
    assert vol.total > 0 or fstype == "vfat"   # fusefat reports no sizes
    info, created = enroll(drive.mount_point, "Blue")
    assert created and read_drive_file(drive.mount_point).drive_id == info.drive_id
    again, created = enroll(drive.mount_point, "Other")
    assert not created and again.drive_id == info.drive_id      # re-enrolling keeps the id
    vol = next(v for v in list_volumes({info.drive_id}) if v.mount == mount)
    assert vol.enrolled and vol.label == "Blue"
    drive.unmount()
    assert mount not in mount_points() and find_drive(info.drive_id) is None
    new_mount = drive.mount()
    assert str(new_mount) != mount
    assert find_drive(info.drive_id) == new_mount


def test_cli_drive_init_list_forget(ext4_drive):
    mount = str(ext4_drive.mount_point)
    r = run_cli("drive", "init", mount, "--label", "Blue")
    assert r.returncode == 0, r.stderr
    assert "is now a Plugback drive" in r.stdout
    cfg = read_config(Paths.default().config_file)
    drive_id = cfg.drives[0]["drive_id"]
    assert cfg.drives == [{"drive_id": drive_id, "label": "Blue"}]
    assert read_drive_file(ext4_drive.mount_point).drive_id == drive_id

    r = run_cli("drives", "--json")
    vol = next(v for v in json.loads(r.stdout) if v["mount"] == mount)
    assert vol["enrolled"] and vol["drive_id"] == drive_id and vol["fstype"] == "ext4"
    assert "enrolled" in run_cli("drives").stdout

    src = Path(os.environ["PLUGBACK_HOME"]).parent / "src"
    src.mkdir()
    assert run_cli("job", "add", "Docs", "--source", src, "--drive", "blue").returncode == 0
    r = run_cli("drive", "forget", "Blue")
    assert r.returncode == 2 and "Docs" in r.stderr      # a job still uses it
    assert run_cli("job", "remove", "Docs").returncode == 0
    r = run_cli("drive", "forget", drive_id)
    assert r.returncode == 0, r.stderr
    assert read_config(Paths.default().config_file).drives == []
    assert drive_file(ext4_drive.mount_point).exists()   # the drive keeps its identity and backups


def test_cli_refuses_system_volume():
    r = run_cli("drive", "init", "/")
    assert r.returncode == 2 and "operating system" in r.stderr
    assert not Path("/Plugback").exists()


# -- listing never stalls, never touches network mounts (issue #16) ---------------------------

Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize("fstype, network", [
    ("nfs", True), ("nfs4", True), ("cifs", True), ("smbfs", True), ("smb3", True), ("fuse.sshfs", True),
    ("sshfs", True), ("afpfs", True), ("webdav", True), ("davfs", True), ("fuse.davfs2", True), ("9p", True),
    ("fuse.rclone", True), ("fuse.gvfsd-fuse", True), ("ceph", True), ("NFS", True),
    ("ext4", False), ("fuseblk", False), ("fuse.fusefat", False), ("exfat", False), ("apfs", False),
    ("NTFS", False), ("vfat", False), ("", False),
])
def test_network_file_systems(fstype, network):
    assert is_network_fs(fstype) is network


def test_network_mounts_are_dropped_before_anything_touches_them(monkeypatch, tmp_path):
    if sys.platform == "win32":
        pytest.skip("Windows lists drive letters (test_drive_events)")
    listed = [Part("/dev/sdb1", "/media/ann/Blue", "ext4", "rw"),
              Part("nas:/export", "/mnt/nas", "nfs4", "rw,hard"),
              Part("//nas/share", "/mnt/share", "cifs", "rw"),
              Part("ann@host:", "/home/ann/remote", "fuse.sshfs", "rw")]
    monkeypatch.setattr(drives.psutil, "disk_partitions", lambda all=False: listed)   # noqa: A006
    assert [p.mountpoint for p in local_partitions()] == ["/media/ann/Blue"]
    touched = []
    monkeypatch.setattr(drives.shutil, "disk_usage", lambda path: touched.append(path) or Usage(1, 0, 1))
    monkeypatch.setattr(drives, "read_drive_file", lambda path: touched.append(str(path)))
    drives.list_volumes()
    assert set(touched) == {"/media/ann/Blue"}


def test_timed_listing_gives_up_and_never_piles_up_threads():
    listing = HangingListing(hang_on=(1,))
    timed = Timed(listing, timeout=0.2)
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(VolumesNotListed, match="did not come within 0.2 s"):
            timed()
    assert time.monotonic() - started < 1.5
    assert listing.calls == 1 and timed.hung           # the hung call is waited on again, not repeated
    listing.release.set()
    wait_for(lambda: not timed.hung, 5, "the hung call to end")
    assert timed() == frozenset() and listing.calls == 2
