"""A restore into a folder that is not there yet (core/engine/restore.py, ``_work_roots``): the folder is
made under a temporary name, its files are written at their own names (no temporary name and rename
each), and it gets its own name once every file in it is whole and checked; a crash before then
leaves nothing under the folder's name (issue #11; docs/architecture.md, "Restore: no rename per
file in a new folder")."""

from __future__ import annotations

import os
import sys

import pytest

from core.engine import restore as restore_mod
from core.engine import restore_file
from core.engine.manifest import FILE, Entry
from core.engine.restore import OnConflict, RestoreOutcome
from core.errors import UsageError
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a new root is made under a temporary name on POSIX")

TREE = {f"d{i % 3}/{i:03d}.txt": f"file {i} ".encode() * (i % 9 + 1) for i in range(60)}
TREE.update({"top.txt": b"at the top", "big.bin": b"B" * (3 << 20)})


@pytest.fixture
def backed_up(tmp_path):
    src = make_tree(tmp_path / "Docs", TREE)
    os.utime(src, ns=(1_400_000_000_000_000_000,) * 2)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job="Docs")
    return src, set_path


def _all_names(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_new_root_is_written_without_a_rename_per_file(backed_up, tmp_path, monkeypatch):
    src, set_path = backed_up
    renames: list[tuple[str, str]] = []
    real = os.rename
    monkeypatch.setattr(restore_mod.os, "rename", lambda a, b: (renames.append((a, b)), real(a, b))[1])
    replaced: list[str] = []
    monkeypatch.setattr(restore_file.winattrs, "replace_over", lambda a, b, *w: replaced.append(b))
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and not result.damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert replaced == []   # no file went through a temporary name
    assert [os.path.basename(b) for _, b in renames] == ["Docs"]   # one rename: the folder's
    assert os.path.basename(renames[0][0]).startswith(".plugback-restore-")
    assert _all_names(tmp_path / "out") == ["Docs"] + [f"Docs/{n}" for n in _all_names(src)]
    assert os.stat(tmp_path / "out" / "Docs").st_mtime_ns == 1_400_000_000_000_000_000   # its time kept


def test_an_existing_root_still_gets_each_file_through_a_temporary_name(backed_up, tmp_path, monkeypatch):
    src, set_path = backed_up
    make_tree(tmp_path / "out" / "Docs", {"top.txt": b"mine"})
    replaced: list[str] = []
    real = restore_file.winattrs.replace_over
    monkeypatch.setattr(restore_file.winattrs, "replace_over", lambda a, b, *w: (replaced.append(b), real(a, b))[1])
    result = restore_path(set_path, tmp_path / "out", on_conflict=OnConflict.OVERWRITE)
    assert result.files_restored == len(TREE) and result.overwritten == 1
    assert len(replaced) == len(TREE)
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def _fail_at(monkeypatch, nth: int, fail) -> list[str]:
    """The ``nth`` file's checked write does ``fail(fd)`` instead (it raises); the paths written, in order."""
    real, calls = restore_file._write_checked, []

    def writing(bset, e, paths, fd, opened):
        calls.append(e.path)
        if len(calls) == nth:
            fail(fd)
        return real(bset, e, paths, fd, opened)

    monkeypatch.setattr(restore_file, "_write_checked", writing)
    return calls


def test_an_interrupted_restore_leaves_nothing_under_the_new_root_s_name(backed_up, tmp_path, monkeypatch):
    """The process stops (an interruption: as a crash would) while a file is half written: no name
    below out/ but the temporary folder's, and what is in there is whole (the half-written file is gone)."""
    _, set_path = backed_up
    def half_then_interrupted(fd):
        os.write(fd, b"half of it")
        os.close(fd)
        raise KeyboardInterrupt

    calls = _fail_at(monkeypatch, 40, half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        restore_path(set_path, tmp_path / "out")
    (work,) = os.listdir(tmp_path / "out")
    assert work.startswith(".plugback-restore-") and work.endswith(".part")
    written = {str(p.relative_to(tmp_path / "out" / work)): p.read_bytes()
               for p in (tmp_path / "out" / work).rglob("*") if p.is_file()}
    assert 0 < len(written) < len(TREE)
    assert calls[39].removeprefix("Docs/") not in written
    assert all(data == TREE[rel] for rel, data in written.items())
    # a second restore writes the whole folder (nothing there to skip)
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and result.skipped == 0
    assert read_tree(tmp_path / "out" / "Docs") == TREE


def test_a_failed_restore_still_names_what_it_wrote(backed_up, tmp_path, monkeypatch):
    """An error (here the disk full on one file) ends the restore as before: the files written are
    there under their names, whole; the failed one is not."""
    _, set_path = backed_up
    def full(fd):
        os.write(fd, b"part")
        raise OSError(28, "No space left on device")

    calls = _fail_at(monkeypatch, 30, full)
    with pytest.raises(UsageError, match="No space left"):
        restore_path(set_path, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["Docs"]
    named = {str(p.relative_to(tmp_path / "out" / "Docs")): p.read_bytes()
             for p in (tmp_path / "out" / "Docs").rglob("*") if p.is_file()}
    assert calls[29].removeprefix("Docs/") not in named
    assert named and all(data == TREE[rel] for rel, data in named.items())


def test_a_root_that_appears_meanwhile_is_never_replaced(backed_up, tmp_path):
    _, set_path = backed_up
    out = tmp_path / "out"

    def someone_makes_it(p):
        if not (out / "Docs").exists():
            make_tree(out / "Docs", {"theirs.txt": b"theirs"})

    with pytest.raises(UsageError, match="appeared while it was being restored") as err:
        restore_path(set_path, out, progress=someone_makes_it)
    assert read_tree(out / "Docs") == {"theirs.txt": b"theirs"}
    work = [n for n in os.listdir(out) if n != "Docs"]
    assert len(work) == 1 and work[0] in str(err.value)
    assert read_tree(out / work[0]) == TREE


def test_a_direct_write_never_removes_a_file_it_did_not_make(tmp_path):
    """At its own name a file is created only if none is there (O_EXCL): one found there (two names
    that are one on this file system) stays as it was."""
    src = make_tree(tmp_path / "src", {"a.txt": b"backed up"})
    dest = make_tree(tmp_path / "out", {"a.txt": b"mine"}) / "a.txt"
    e = Entry(path="x/a.txt", type=FILE, size=9, mtime_ns=0, mode=0o644,
              sha256="ce13f2a2a8b8ad8bb40a3a9d2e3d2b2f0ad4d2b1e0f7e0d1b6a0f2c4f0e9a5b1")
    with pytest.raises(UsageError, match="Cannot write"):
        restore_file.write_file(open_set_stub(), e, (str(dest), RestoreOutcome.RESTORED), [str(src / "a.txt")],
                                direct=True)
    assert dest.read_bytes() == b"mine"


def open_set_stub():
    """write_file reads plain content files itself (``read_content`` of the set): a plain set's."""
    class Stub:
        @staticmethod
        def read_content(e, paths):
            with open(paths[0], "rb") as f:
                yield f.read()
    return Stub()


def test_one_writer_a_core_beside_the_restoring_thread_for_a_new_root():
    from core.engine import restore_ahead

    assert restore_ahead.writers(direct=False, cores=2) == restore_ahead.WRITERS == 2   # renamed into place
    assert [restore_ahead.writers(direct=True, cores=n) for n in (1, 2, 3, 16)] == [1, 1, 2, 2]


def test_a_failed_file_that_cannot_be_removed_keeps_the_folder_s_temporary_name(backed_up, tmp_path, monkeypatch):
    """A file written at its own name fails its check and cannot be removed: the restore stops and
    the root is never given its name (a damaged file would stand there as restored)."""
    src, set_path = backed_up
    (set_path / "Latest" / "Docs" / "d1" / "001.txt").write_bytes(b"not what was backed up")
    real = os.unlink

    def refuse(path, *a, **k):
        if str(path).endswith("001.txt"):
            raise PermissionError(13, "Permission denied")
        return real(path, *a, **k)

    monkeypatch.setattr(restore_file.os, "unlink", refuse)
    with pytest.raises(restore_file.Unfinished, match="unfinished"):
        restore_path(set_path, tmp_path / "out")
    (work,) = os.listdir(tmp_path / "out")
    assert work.startswith(".plugback-restore-")
