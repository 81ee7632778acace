"""core/platform/volume_label.py: labels and identities read from real file systems (issue #14)."""

import sys

import pytest

from core.platform.volume_label import VolumeIdentity, clean, describe, identify, size_words

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads udev/blkid (Linux)")


@linux_only
@pytest.mark.parametrize("fstype,label", [("ext4", "Holiday Pics"), ("exfat", "MY STICK")])
def test_the_file_system_label_is_read_not_the_mount_folder(make_drive, tmp_path, fstype, label):
    drive = make_drive(fstype, label=label, mount=False)
    drive.mount(at=tmp_path / "usb0")                     # the folder name is not the label
    found = identify(drive.device, str(drive.mount_point))
    assert found.label == label
    assert found.uuid and " " not in found.uuid
    # The identity is the file system's, not the mount point's: the same after a re-plug elsewhere.
    drive.unmount()
    drive.mount(at=tmp_path / "elsewhere")
    assert identify(drive.device, str(drive.mount_point)) == found


@linux_only
def test_an_unlabelled_drive_has_no_label_but_an_identity(make_drive, tmp_path):
    drive = make_drive("vfat", mount=False)                # the vfat helper makes no label
    found = identify(drive.device, str(tmp_path))
    assert found.label is None and found.uuid


@linux_only
def test_a_device_that_is_not_a_block_device_gives_nothing():
    assert identify("fusefat", "/nowhere") == VolumeIdentity()


@pytest.mark.parametrize("label,total,fs,words", [
    ("HOLIDAYS", 32_000_000_000, "exfat", "‘HOLIDAYS’"),
    (None, 32_000_000_000, "exfat", "the 32 GB exFAT drive"),
    (None, 2_000_000_000_000, "ntfs", "the 2 TB NTFS drive"),
    (None, 1_500_000_000, "unknown", "the 1.5 GB drive"),
    (None, 134_217_728, "ext4", "the 134 MB ext4 drive"),
])
def test_a_drive_is_named_by_its_label_or_its_size_and_file_system(label, total, fs, words):
    assert describe(label, total, fs) == words


def test_labels_from_a_drive_are_cleaned_for_display():
    assert clean("EVIL\x1b[31m\nNAME") == "EVIL[31mNAME"
    assert clean("   ") is None and clean(None) is None
    assert len(clean("x" * 500)) == 64
    assert size_words(999) == "999 bytes"
