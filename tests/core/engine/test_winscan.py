"""A folder on the way to a source file swapped for a junction or symlink is never followed on
Windows either (core/engine/winscan.py; issue #11).

The Windows branch runs here through the fake of kernel32 and msvcrt backed by real files
(tests/support/winopen_fake.py): a real symlinked folder on the way is followed by a plain
``CreateFileW``, as Windows follows a junction there, and the listing and file-ID calls report the
files as Windows would. The old code listed a folder by its path (``os.scandir``, following a
folder swapped since its parent's listing) and recorded no file identity on Windows, so no reader
checked that it read the scanned file: the secret's bytes reached the set.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys

import pytest

from core.engine import scan, winopen, winscan
from core.engine.progress import WarningCode
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree
from tests.support.winopen_fake import FakeKernel, coarse_times, windows_branch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake's handles are Linux descriptors")
SECRET = b"root:$6$secret-hash-of-32-bytes\n"
OLD, NEW = b"old notes, thirty-two bytes long", b"new notes, thirty-two bytes long"
JUNCTION = winopen.IO_REPARSE_TAG_MOUNT_POINT


class Swap:
    """``src/Data/d/<depth>notes.txt`` and ``outside/<depth>notes.txt`` (the secret, of the same size);
    ``now()`` moves ``d`` away and puts a link to ``outside`` (a junction, to the fake) in its place."""

    def __init__(self, tmp_path, depth: str = ""):
        self.src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"a", f"d/{depth}notes.txt": OLD, "z.txt": b"z"})
        self.folder = self.src / "d"
        self.victim = self.folder / depth / "notes.txt"
        self.outside = make_tree(tmp_path / "outside", {f"{depth}notes.txt": SECRET})
        self.set = tmp_path / "set"
        self.done = False
        coarse_times(tmp_path)

    def now(self) -> None:
        if not self.done:
            self.done = True
            os.rename(self.folder, self.folder.with_name("d.moved"))
            os.symlink(self.outside, self.folder)

    def kernel(self, when: str) -> FakeKernel:
        """A fake whose ``CreateFileW`` of ``when`` (below ``src/Data``) swaps the folder first."""
        def before_open(path, flags):
            if path == str(self.src / when):
                self.now()

        return FakeKernel(tags={str(self.folder): JUNCTION}, before_open=before_open)

    def when_recorded(self, monkeypatch, rel: str) -> None:
        """Swap the folder once the scan has recorded ``rel`` (from its parent's listing)."""
        real = scan.entry_for

        def recording(top, at, *args, **kwargs):
            se = real(top, at, *args, **kwargs)
            if at == rel:
                self.now()
            return se

        monkeypatch.setattr(scan, "entry_for", recording)

    def change(self) -> None:
        """The notes changed (same size), their time set to the secret's: the next run reads them."""
        self.victim.write_bytes(NEW)
        st = os.stat(self.outside / self.victim.relative_to(self.folder))
        os.utime(self.victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    def holds_secret(self) -> bool:
        return any(SECRET in p.read_bytes() for p in self.set.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("depth", ["", "e/"])
def test_a_file_read_through_a_folder_swapped_after_the_scan_is_not_stored(tmp_path, monkeypatch, depth):
    """The scan recorded the notes' file ID; their folder (or one above) swapped for a junction before
    the read: the file read is another one (its fstat), so nothing of it is stored."""
    s = Swap(tmp_path, depth)
    windows_branch(monkeypatch, FakeKernel())
    assert backup_path(s.set, [s.src]).status == "ok"
    s.change()
    windows_branch(monkeypatch, s.kernel(str(s.victim.relative_to(s.src))))
    r = backup_path(s.set, [s.src])
    assert s.done and not s.holds_secret(), "the file was read through the junction"
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.KEPT_PREVIOUS, str(s.victim))]
    assert "is not the file that was scanned" in r.warnings[0].message
    restore_path(s.set, tmp_path / "out")
    assert (tmp_path / "out" / "Data" / "d" / depth / "notes.txt").read_bytes() == OLD
    monkeypatch.undo()
    assert verify_path(s.set, read_all=True).ok


@pytest.mark.parametrize("when", ["d", "d/e"])
def test_a_folder_swapped_during_the_scan_is_not_listed_through_the_link(tmp_path, monkeypatch, when):
    """``d`` swapped for a junction between its parent's listing and its own (``d``: the junction is
    opened itself, not the folder listed; ``d/e``: ``e`` reached through it, another folder). The old
    code listed the junction's target and read the secret from there."""
    s = Swap(tmp_path, "e/")
    windows_branch(monkeypatch, FakeKernel(tags={str(s.folder): JUNCTION}))
    s.when_recorded(monkeypatch, when)
    r = backup_path(s.set, [s.src])
    assert s.done and not s.holds_secret(), "the folder was listed through the junction"
    assert [(w.code, w.path, w.message) for w in r.warnings] == [
        (WarningCode.UNREADABLE, str(s.src / when), scan.REPLACED_FOLDER)]
    restore_path(s.set, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"a", when + "/": None, "z.txt": b"z"}   # (left empty)


def test_a_junction_present_at_the_scan_is_still_entered(tmp_path, monkeypatch):
    """os.scandir entered a junction (a junction lstat()s as a folder): its files are backed up as
    before, each checked against the file ID its listing gave."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"a"})
    make_tree(tmp_path / "music", {"song.mp3": b"la la"})
    (src / "Music").symlink_to(tmp_path / "music")
    coarse_times(tmp_path)
    k = FakeKernel(tags={str(src / "Music"): JUNCTION})
    windows_branch(monkeypatch, k)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and r.warnings == []
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"a", "Music/song.mp3": b"la la"}
    assert k.handles == {}


def test_a_file_system_without_file_ids_is_listed_as_before(tmp_path, monkeypatch):
    """FAT and exFAT list no file IDs (and have no links): the entries carry none, nothing is checked."""
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "d/b.txt": b"b"})
    coarse_times(tmp_path)
    found = winscan.listing(str(src), top=True, api=FakeKernel(no_ids=True))
    assert [(name, st.st_ino, st.st_dev) for name, st in found] == [("a.txt", 0, 0), ("d", 0, 0)]
    windows_branch(monkeypatch, FakeKernel(no_ids=True))
    assert backup_path(tmp_path / "set", [src]).status == "ok"
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "src") == {"a.txt": b"a", "d/b.txt": b"b"}


def test_a_listing_whose_ids_are_not_fstats_records_none(tmp_path, monkeypatch):
    """A file system (a network server) whose listing numbers files otherwise than a handle's query:
    the source's first entry, asked both ways, disagrees, so nothing below it gets an identity; else
    every file would be called replaced and none stored."""
    src = make_tree(tmp_path / "src", {"a.txt": b"a", "d/b.txt": b"b"})
    coarse_times(tmp_path)
    k = FakeKernel(listed_ids=1000)
    assert [(name, st.st_ino) for name, st in winscan.listing(str(src), top=True, api=k)] == [("a.txt", 0), ("d", 0)]
    assert k.handles == {}
    windows_branch(monkeypatch, k)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and r.warnings == []
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "src") == {"a.txt": b"a", "d/b.txt": b"b"}


@pytest.mark.parametrize("id_128", [False, True])
def test_each_entry_gets_the_identity_its_readers_fstat_gives(tmp_path, monkeypatch, id_128):
    """Python 3.12+ (FileIdInfo's 128-bit ID) and earlier (the 64-bit file index) alike; more entries
    than one call's buffer holds; "." and ".." left out; the handle closed."""
    monkeypatch.setattr(winscan, "ID_128", id_128)
    monkeypatch.setattr(winscan, "BUFFER", 1024)
    names = [f"file-{i:03}-{'x' * (i % 40)}.txt" for i in range(60)]
    src = make_tree(tmp_path / "src", {name: b"%d" % i for i, name in enumerate(names)})
    k = FakeKernel()
    found = winscan.listing(str(src), top=True, api=k)
    assert [name for name, _ in found] == sorted(names)
    for name, st in found:
        fd = os.open(src / name, os.O_RDONLY)
        try:
            real = os.fstat(fd)
        finally:
            os.close(fd)
        assert (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns // 100) == \
            (real.st_ino, real.st_dev, real.st_size, real.st_mtime_ns // 100)
    assert k.handles == {} and len(k.opens) == 1


def test_a_folder_is_listed_only_when_it_is_the_one_recorded(tmp_path):
    src = make_tree(tmp_path / "src", {"d/b.txt": b"b"})
    st = os.lstat(src / "d")
    k = FakeKernel()
    assert [name for name, _ in winscan.listing(str(src / "d"), expect=(st.st_dev, st.st_ino), api=k)] == ["b.txt"]
    assert winscan.listing(str(src / "d"), expect=(st.st_dev, st.st_ino + 1), api=k) is None
    assert winscan.listing(str(src / "d"), expect=(st.st_dev + 1, st.st_ino), api=k) is None
    assert k.handles == {}


def test_the_stat_results_are_os_scandirs_on_windows():
    """CPython's attributes_to_mode: folders 0o555/0o777 with S_IFDIR, files 0o444/0o666, S_IFLNK only
    for the symlink tag (a junction is a folder with its reparse tag); FILETIMEs to nanoseconds."""
    t = winscan.EPOCH_AS_FILETIME + 17_000_000_123   # 1,700.0000123 s after 1970
    cases = [(0x20, 0, stat.S_IFREG | 0o666), (0x21, 0, stat.S_IFREG | 0o444), (0x10, 0, stat.S_IFDIR | 0o777),
             (0x11, 0, stat.S_IFDIR | 0o555), (0x410, JUNCTION, stat.S_IFDIR | 0o777),
             (0x410, winopen.IO_REPARSE_TAG_SYMLINK, stat.S_IFLNK | 0o777),
             (0x420, winopen.IO_REPARSE_TAG_CLOUD, stat.S_IFREG | 0o666)]
    for attrs, tag, mode in cases:
        st = winscan.lstat_of(attrs, tag, 5, t, t, t, 7, 9)
        assert (st.st_mode, st.st_mtime_ns, st.st_ino, st.st_dev) == (mode, 1_700_000_012_300, 7, 9), (attrs, tag)


def test_a_journal_scan_never_reaches_a_named_folder_through_a_swapped_folder(tmp_path, monkeypatch):
    """A journal scan looks up the folders its hint names (``d/e`` here) below folders it reuses
    unlisted (``d``, not named, is not looked at): the old lookup (``os.lstat`` by path) went through
    ``d`` swapped for a junction, and the target's ``e`` was listed and its secret stored. Now each
    folder on the way is listed and checked, and none may be a junction: ``d/e`` is not reached (a
    warning; the next journal scan tries again)."""
    from core.engine.changes import ChangeHint

    s = Swap(tmp_path, "e/")
    windows_branch(monkeypatch, FakeKernel(tags={str(s.folder): JUNCTION}))
    first = backup_path(s.set, [s.src], workers=1)
    s.change()
    s.now()
    r = backup_path(s.set, [s.src], workers=1, changes=ChangeHint(first.snapshot_id, frozenset({str(s.folder / "e")})))
    assert r.scan == "journal"
    assert not s.holds_secret(), "the named folder was reached through the junction"
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.UNREADABLE, str(s.folder / "e"))]


def test_a_named_folder_is_found_as_the_scan_finds_it(tmp_path):
    src = make_tree(tmp_path / "src", {"d/e/notes.txt": b"n"})
    k = FakeKernel()
    st = winscan.stat_beneath(str(src), "d/e", api=k)
    real = os.lstat(src / "d" / "e")
    assert stat.S_ISDIR(st.st_mode) and (st.st_ino, st.st_dev) == (real.st_ino, real.st_dev)
    with pytest.raises(FileNotFoundError):
        winscan.stat_beneath(str(src), "d/gone", api=k)
    (src / "j").symlink_to(src / "d")   # a junction on the way: not followed
    with pytest.raises(OSError) as refused:
        winscan.stat_beneath(str(src), "j/e", api=FakeKernel(tags={str(src / "j"): JUNCTION}))
    assert refused.value.errno == errno.ELOOP
    assert k.handles == {}


def _windows_checker(monkeypatch, latest, k: FakeKernel):
    """verify's reader (readpool.Checker) on its Windows branch: no openat, no O_NOFOLLOW."""
    from core.engine import readpool

    monkeypatch.setattr(readpool, "BY_FD", False)
    monkeypatch.setattr(readpool, "_OPEN_FILE", os.O_RDONLY | os.O_NONBLOCK)   # (as on Windows)
    monkeypatch.setattr(readpool, "_open_path", lambda path, at=None: winopen.open_no_follow(path, k, at), raising=False)
    monkeypatch.setattr(readpool, "_REAL_PLACE", lambda folder: winopen.folder_final_path(folder, k), raising=False)
    checker = readpool.Checker(str(latest))
    checker.group = None   # (Windows has no io_uring: one file at a time)
    return checker


def test_verify_on_windows_reads_no_file_through_a_link_in_latest(tmp_path, monkeypatch):
    """The drive is untrusted: a folder of ``Latest/`` that is a link (or junction), or a file swapped
    for one between its lstat and its open, was read through by the old Windows branch (os.open by
    path), and verify called a copy good that was another file on this computer."""
    import hashlib

    latest = make_tree(tmp_path / "Latest", {"d/notes.txt": SECRET, "e/notes.txt": SECRET})
    make_tree(tmp_path / "outside", {"notes.txt": SECRET})
    sha = hashlib.sha256(SECRET).hexdigest()
    os.rename(latest / "d", tmp_path / "d.moved")
    (latest / "d").symlink_to(tmp_path / "outside")

    def swap(path, flags):
        if path == str(latest / "e" / "notes.txt") and not os.path.islink(path):
            os.unlink(path)
            os.symlink(tmp_path / "outside" / "notes.txt", path)

    k = FakeKernel(tags={str(latest / "d"): JUNCTION}, before_open=swap)
    checker = _windows_checker(monkeypatch, latest, k)
    try:
        problems = checker.check([("d/notes.txt", 0, len(SECRET), sha), ("e/notes.txt", 0, len(SECRET), sha)])
    finally:
        checker.close()
    assert [(i, "symbolic link" in why) for i, why in problems] == [(0, True), (1, True)], problems
    assert k.handles == {}


def test_an_id_the_class_cannot_give_is_not_recorded():
    """FILE_INVALID_FILE_ID (all ones: ReFS's 64-bit ID where the file's needs 128 bits) means "none"."""
    raw = "x".encode("utf-16-le")
    head = struct.pack("<II6qII", 0, 0, *[winscan.EPOCH_AS_FILETIME] * 4, 1, 0, 0x20, len(raw))
    out: list = []
    winscan._parse(memoryview(bytearray(head + struct.pack("<IB27xq", 0, 0, -1) + raw)), winscan.BOTH, 7, out)
    assert [(name, st.st_ino, st.st_dev, st.st_size) for name, st in out] == [("x", 0, 0, 1)]


def test_verify_on_windows_refuses_a_folder_swapped_for_a_junction_after_its_check(tmp_path, monkeypatch):
    """A folder of ``Latest/`` checked when entered, then swapped for a junction before its files are
    opened: the old Windows branch opened the file through it (a copy "verified" that was another
    file on this computer); the handle's final path now shows where the open went."""
    import hashlib

    latest = make_tree(tmp_path / "Latest", {"d/notes.txt": SECRET, "d/more.txt": SECRET})
    make_tree(tmp_path / "outside", {"notes.txt": SECRET, "more.txt": SECRET})
    sha = hashlib.sha256(SECRET).hexdigest()

    def swap(path, flags):
        if path == str(latest / "d" / "more.txt") and not os.path.islink(latest / "d"):
            os.rename(latest / "d", tmp_path / "d.moved")
            (latest / "d").symlink_to(tmp_path / "outside")

    k = FakeKernel(before_open=swap)
    checker = _windows_checker(monkeypatch, latest, k)
    try:
        problems = checker.check([("d/notes.txt", 0, len(SECRET), sha), ("d/more.txt", 0, len(SECRET), sha)])
    finally:
        checker.close()
    assert [(i, "symbolic link" in why) for i, why in problems] == [(1, True)], problems
    assert k.handles == {}
