"""A first backup's ``Latest/`` built whole in ``tmp/`` and named at the commit (issue #11).

**Why.** A plain backup writes each copy in ``tmp/`` and renames it into ``Latest/``, so that no
name in ``Latest/`` ever holds a half-written file. On a first backup of many small files that
rename was the pass's dearest system call after the create (it locks and changes two folders):
~20 µs a file of the pass's one core, ~0.6 s of the standard set's 27,000 files.

**What.** When a plain set (POSIX) has no snapshot and its ``Latest/`` is empty or missing, the
run builds ``Latest/`` as ``tmp/Latest.part/``: the layout's ``Latest/`` paths lead there during
the pass (``Layout.build_latest_in``), and every copy that is never split is written at its own
name there (created exclusively: never over a file, never through a symlink), with no name in
``tmp/`` and no rename. Everything else is as before (folders, links, split files and the big
copies made ahead go in through their ``tmp/`` names). At the commit, after the volume's flush
made every copy durable and the read-back beside the pass read back all of them (it reads below
this folder: it never meets a folder that moved), ``tmp/Latest.part`` is renamed onto ``Latest/``
(an empty folder is replaced at once), the volume is flushed again, and only then is the
manifest written.

**Crash proof.** (1) Before that rename no name in ``Latest/`` holds anything of the run:
``Latest/`` is empty or missing, and readers ignore ``tmp/``. (2) The rename runs only on the
success path, after the pass ended: every copy was closed whole (a failed copy removes the file
it created), and what an earlier, interrupted run left there was sorted at this run's start (3).
So ``Latest/`` appears with whole files only, and the manifest that names them comes after the
flush that made the new name durable: a committed snapshot never lacks its ``Latest/``. (3) A
run that finds ``tmp/Latest.part`` (its own crash, a pulled drive, a full disk) keeps it when it
builds ``Latest/`` again: ``clear_tmp`` spares it at a backup's start, and :func:`start` removes
from it every file that is not one the interrupted run's journal checkpointed (a checkpoint
names only copies a flush made durable, whole), so the resumed run reuses those and copies the
rest again, as a resumed run does in ``Latest/``. Where it does not build (a snapshot exists,
``Latest/`` has files, an encrypted set) the folder is removed; ``clear_tmp`` outside a backup
(``space.release`` after a full disk) removes it too, and the next run copies its files again.
"""

from __future__ import annotations

import os
import stat
import sys

from core.engine.atomic import remove_tree
from core.engine.fs import VolumeInfo

STAGE = "Latest.part"   # in tmp/: a first backup's Latest/ being built (docs/format.md)


class _Into:
    """``store`` for ``sourceread.read_with_retries``: its copy is written at ``dest``."""

    def __init__(self, store, dest: str):
        self._store, self._dest = store, dest

    def copy_in(self, se, *, fd: int = -1):
        return self._store.copy_in(se, fd=fd, dest=self._dest)

    def displace(self, old) -> None:   # (a first backup has no previous version: never called)
        self._store.displace(old)


class FreshLatest:
    """The run's ``Latest/`` being built in ``tmp/Latest.part`` (see the module docstring)."""

    def __init__(self, bset, stage: str):
        self.bset, self.layout, self.fs = bset, bset.layout, bset.fs
        self.stage = stage

    def into(self, store, e):
        """The store that copies the source of entry ``e`` at its place here (never split: a volume
        that limits a file's size builds no Latest/ here)."""
        return _Into(store, self.layout.latest_name(e.mirror_path, writing=True))

    def name(self, reading) -> None:
        """At the commit, after the volume's flush: ``reading`` (the read-back beside the pass, or
        None) reads back everything first, then the folder becomes ``Latest/`` and that is made
        durable. The manifest comes after this."""
        if reading is not None:
            reading.committed()   # (every copy is durable: the commit's flush)
            reading.wait()
        self.layout.build_latest_in(None)
        # (FAT refuses a folder renamed over an empty one: the empty Latest/ goes first. A crash
        # between the two leaves no Latest/, and the next run builds it here again.)
        self.fs.remove_dir(self.layout.latest)
        self.fs.replace(self.stage, self.layout.latest)
        self.fs.flush_volume(self.layout.root)

    def close(self) -> None:
        """The layout's ``Latest/`` paths lead to ``Latest/`` again (after a failure too)."""
        self.layout.build_latest_in(None)


def start(bset, parent_id: str | None, trusted: dict, volume: VolumeInfo) -> FreshLatest | None:
    """Build this run's ``Latest/`` in ``tmp/`` when it is a plain set's first backup (no snapshot,
    ``Latest/`` empty or missing); else None, and a ``tmp/Latest.part`` left is removed. Not on
    Windows, where an indexer or a virus scanner holding a new folder open can make its rename
    fail, nor on FAT32 (``volume`` limits a file's size: split copies; and the FUSE FAT the tests
    mount refused writes below a folder moved to another parent). ``trusted``: the interrupted
    run's checkpointed copies (``journal.resume``)."""
    layout, fs = bset.layout, bset.fs
    stage = os.path.join(str(layout.tmp), STAGE)
    wanted = (not bset.encrypted and sys.platform != "win32" and volume.max_file_size is None
              and parent_id is None and _empty(str(layout.latest)))
    st = _lstat(stage)
    if st is not None and (not wanted or not stat.S_ISDIR(st.st_mode)):
        remove_tree(fs, stage)   # (a symlink there is removed, never followed)
        st = None
    if not wanted:
        return None
    if st is None:
        fs.mkdir(stage)
    else:
        _keep_checkpointed(fs, stage, trusted)
    layout.build_latest_in(stage)
    return FreshLatest(bset, stage)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _empty(latest: str) -> bool:
    """``Latest/`` is missing, or a real folder with nothing in it."""
    st = _lstat(latest)
    if st is None:
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False   # (a link there: check_contained refused it before)
    with os.scandir(latest) as it:
        return next(it, None) is None


def _keep_checkpointed(fs, stage: str, trusted: dict) -> None:
    """Remove from ``stage`` every file, link or other non-folder that is not a copy the interrupted
    run's journal checkpointed (``trusted``: Placed records; their copies are whole and durable). A
    copy made after the last checkpoint may be half-written: it goes, and is copied again."""
    keep = set()
    for t in trusted.values():
        keep.update([f"{t.mirror}.{i:03d}" for i in range(1, t.parts + 1)] if t.parts else [t.mirror])
    top = len(stage) + 1
    for folder, dirs, files in os.walk(stage):   # (never into a symlink: followlinks is False)
        for name in list(dirs):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                fs.unlink(path)
                dirs.remove(name)
        for name in files:
            path = os.path.join(folder, name)
            rel = path[top:] if os.sep == "/" else path[top:].replace(os.sep, "/")
            st = _lstat(path)
            if rel not in keep or st is None or not stat.S_ISREG(st.st_mode):
                fs.unlink(path)
