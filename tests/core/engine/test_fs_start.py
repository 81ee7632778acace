"""What a backup's start costs in core/engine/fs.py (issue #11): the volume's type read from
``/proc/self/mounts`` on Linux (no psutil import), ``syncfs`` found without ``ldconfig``, and both still
right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.engine import fs

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc and syncfs")


def test_mount_points_are_unescaped():
    text = (b"/dev/sda1 / ext4 rw,relatime 0 0\n"
            b"/dev/sdb1 /media/me/My\\040Drive vfat rw 0 0\n"
            b"/dev/sdc1 /mnt/tab\\011and\\134slash exfat rw 0 0\n"
            b"/dev/sdd1 /mnt/caf\xc3\xa9 ntfs3 rw 0 0\n"
            b"\n")
    assert fs.parse_mounts(text) == [("/", "ext4"), ("/media/me/My Drive", "vfat"),
                                     ("/mnt/tab\tand\\slash", "exfat"), ("/mnt/caf\u00e9", "ntfs3")]


@linux
def test_the_volume_type_is_psutils_answer(tmp_path):
    import psutil

    def by_psutil(path) -> str:
        best, best_len = "", -1
        real = os.path.realpath(path)
        for part in psutil.disk_partitions(all=True):
            mp = part.mountpoint
            if (real == mp or real.startswith(mp.rstrip(os.sep) + os.sep)) and len(mp) > best_len:
                best, best_len = part.fstype.lower(), len(mp)
        return best

    for path in (tmp_path, Path("/"), Path("/proc/self"), Path("/dev"), Path(__file__)):
        assert fs.fstype_of(path) == by_psutil(path), path


@linux
def test_a_backups_start_imports_no_psutil_and_runs_no_ldconfig(tmp_path):
    """In a process of its own: the volume probed and flushed, then what was loaded and started."""
    code = f"""
import subprocess, sys
from pathlib import Path
def refuse(*args, **kwargs):
    raise AssertionError("a process was started: " + repr(args[:1]))
subprocess.Popen = refuse
from core.engine import fs
info = fs.probe_volume(Path({str(tmp_path)!r}))
fs.FileSystem(Path({str(tmp_path)!r})).flush_volume(Path({str(tmp_path)!r}))
assert fs._syncfs() is not None
print(info.fstype, "psutil" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [fs.fstype_of(tmp_path), "False"]
