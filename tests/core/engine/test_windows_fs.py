r"""Windows file-system realities (issue #16), simulated on Linux where the behaviour can be:
long paths (the \\?\ helper's table), files locked by another program, read-only files in the way.

What is only checked statically (mypy --platform win32): the helper's Windows-only call to
GetFullPathNameW (ntpath.abspath), and setting the read-only attribute again after a restore.
"""

from __future__ import annotations

import os
import stat

import pytest

from core.engine.backup import BackupStatus
from core.engine.fs import WIN_PATH_LIMIT, long_path
from core.engine.progress import FakeClock, WarningCode
from core.engine.sourceread import LOCKED_DELAYS, SOURCE_RETRIES, SOURCE_RETRY_DELAY, is_locked
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree
from tests.support.winfaults import LockedSources, locked_error, windows_readonly_semantics

LONG = "d" * 120


@pytest.mark.parametrize("path,expected", [
    ("C:\\Users\\ann\\a.txt", "C:\\Users\\ann\\a.txt"),                       # short: as it is
    (f"C:\\{LONG}\\{LONG}\\a.txt", f"\\\\?\\C:\\{LONG}\\{LONG}\\a.txt"),
    (f"C:/{LONG}/{LONG}/a.txt", f"\\\\?\\C:\\{LONG}\\{LONG}\\a.txt"),          # '/' is no separator after \\?\
    (f"C:\\x\\..\\{LONG}\\.\\{LONG}\\a.txt", f"\\\\?\\C:\\{LONG}\\{LONG}\\a.txt"),   # normalised first
    (f"\\\\server\\share\\{LONG}\\{LONG}", f"\\\\?\\UNC\\server\\share\\{LONG}\\{LONG}"),
    (f"\\\\?\\C:\\{LONG}\\{LONG}", f"\\\\?\\C:\\{LONG}\\{LONG}"),               # prefixed already
    (f"\\\\?\\UNC\\s\\x\\{LONG}\\{LONG}", f"\\\\?\\UNC\\s\\x\\{LONG}\\{LONG}"),
    ("\\\\.\\PhysicalDrive0", "\\\\.\\PhysicalDrive0"),                          # a device path
    ("E:\\", "E:\\"),
])
def test_long_path_on_windows(path, expected):
    assert long_path(path, windows=True) == expected


def test_long_path_at_the_limit():
    just_short = "C:\\" + "a" * (WIN_PATH_LIMIT - 4)
    assert len(just_short) == WIN_PATH_LIMIT - 1 and long_path(just_short, windows=True) == just_short
    assert long_path(just_short + "b", windows=True) == "\\\\?\\" + just_short + "b"


@pytest.mark.parametrize("path", ["/home/ann/" + LONG * 3, "relative/x", "C:\\" + LONG * 3])
def test_long_path_changes_nothing_elsewhere(path, tmp_path):
    assert long_path(path, windows=False) == path
    assert long_path(tmp_path / "x") == str(tmp_path / "x")   # this machine is not Windows: str only


@pytest.mark.parametrize("err,locked", [
    (locked_error("f", 32), True),      # ERROR_SHARING_VIOLATION
    (locked_error("f", 33), True),      # ERROR_LOCK_VIOLATION
    (locked_error("f", 5), False),      # access denied: not a lock
    (PermissionError(13, "denied"), False),
    (OSError(5, "I/O error"), False),
])
def test_is_locked(err, locked):
    assert is_locked(err) is locked


def test_locked_file_is_retried_then_read(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"db.pst": b"mail", "a.txt": b"a"})
    locked = LockedSources(monkeypatch, [src / "db.pst"], first=1, last=2)   # released on the third open
    clock = FakeClock()
    r = backup_path(tmp_path / "set", [src], clock=clock, workers=1)
    assert r.status is BackupStatus.OK and r.warnings == []
    assert locked.opens[str(src / "db.pst")] == 3
    assert clock.monotonic() == pytest.approx(sum(LOCKED_DELAYS[:2]))   # the backoff, on the run's clock
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


@pytest.mark.parametrize("winerror", [32, 33])
def test_file_locked_all_along_is_skipped_with_a_warning_and_the_run_goes_on(tmp_path, monkeypatch, winerror):
    src = make_tree(tmp_path / "Data", {"db.pst": b"mail", "a.txt": b"a", "sub/b.txt": b"b"})
    locked = LockedSources(monkeypatch, [src / "db.pst"], winerror=winerror)
    clock = FakeClock()
    r = backup_path(tmp_path / "set", [src], clock=clock, workers=1)
    assert r.status is BackupStatus.WARNINGS
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LOCKED, str(src / "db.pst"))]
    assert "open in another program" in r.warnings[0].message and "skipped" in r.warnings[0].message
    assert r.to_dict()["warnings"][0]["code"] == "locked"
    assert locked.opens[str(src / "db.pst")] == len(LOCKED_DELAYS) + 1
    assert clock.monotonic() == pytest.approx(sum(LOCKED_DELAYS))
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == {"a.txt": b"a", "sub/b.txt": b"b"}


def test_locked_changed_file_keeps_its_previous_version(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"db.pst": b"mail v1", "a.txt": b"a"})
    backup_path(tmp_path / "set", [src])
    (src / "db.pst").write_bytes(b"mail v2, longer")
    LockedSources(monkeypatch, [src / "db.pst"])
    r = backup_path(tmp_path / "set", [src], clock=FakeClock(), workers=1)
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LOCKED, str(src / "db.pst"))]
    assert "keeps its previous version" in r.warnings[0].message
    restore_path(tmp_path / "set", tmp_path / "out", snapshot=r.snapshot_id)
    assert read_tree(tmp_path / "out" / "Data") == {"db.pst": b"mail v1", "a.txt": b"a"}
    monkeypatch.undo()   # unlocked: the next run copies the new version (the entry was not "unchanged")
    again = backup_path(tmp_path / "set", [src])
    assert again.status is BackupStatus.OK and again.files_copied == 1


def test_other_read_errors_keep_the_shorter_retry(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"x.bin": b"x"})
    from core.engine import store

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", path)   # no winerror: not a lock

    monkeypatch.setattr(store, "read_source", denied)
    clock = FakeClock()
    r = backup_path(tmp_path / "set", [src], clock=clock, workers=1)
    assert [w.code for w in r.warnings] == [WarningCode.UNREADABLE]
    assert clock.monotonic() == pytest.approx((SOURCE_RETRIES - 1) * SOURCE_RETRY_DELAY)


def test_restore_over_read_only_files(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"a.txt": b"backed up", "ro.txt": b"read-only in the snapshot"})
    os.chmod(src / "ro.txt", 0o444)
    backup_path(tmp_path / "set", [src])
    out = tmp_path / "out"
    make_tree(out / "Data", {"a.txt": b"mine, read-only", "ro.txt": b"mine too"})
    os.chmod(out / "Data" / "a.txt", 0o444)
    os.chmod(out / "Data" / "ro.txt", 0o444)
    with windows_readonly_semantics(monkeypatch) as refused:
        r = restore_path(tmp_path / "set", out, on_conflict="overwrite")
    assert r.overwritten == 2 and not r.damaged
    assert sorted(refused) == sorted(str(out / "Data" / n) for n in ("a.txt", "ro.txt"))   # really in the way
    assert read_tree(out / "Data") == read_tree(src)
    assert stat.S_IMODE(os.stat(out / "Data" / "ro.txt").st_mode) == 0o444   # the recorded mode again
    assert os.stat(out / "Data" / "a.txt").st_mode & stat.S_IWUSR


def test_restore_keeps_a_read_only_file_when_the_replace_fails_anyway(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "Data", {"a.txt": b"backed up"})
    backup_path(tmp_path / "set", [src])
    out = make_tree(tmp_path / "out" / "Data", {"a.txt": b"mine"})
    os.chmod(out / "a.txt", 0o444)
    real = os.replace

    def always_denied(a, b, **k):
        if str(b).endswith("a.txt"):
            raise PermissionError(13, "Access is denied", str(b))
        return real(a, b, **k)

    monkeypatch.setattr(os, "replace", always_denied)
    with pytest.raises(Exception, match="Access is denied"):
        restore_path(tmp_path / "set", tmp_path / "out", on_conflict="overwrite")
    monkeypatch.undo()
    assert (out / "a.txt").read_bytes() == b"mine" and stat.S_IMODE(os.stat(out / "a.txt").st_mode) == 0o444


def test_backup_replaces_and_removes_read_only_copies_in_latest(tmp_path, monkeypatch):
    """A read-only source gives a read-only copy in Latest/; when content that is already an object
    comes back, the copy is deleted, which Windows refuses until it is writable."""
    src = make_tree(tmp_path / "Data", {"ro.txt": b"A"})
    os.chmod(src / "ro.txt", 0o444)
    set_path = tmp_path / "set"
    versions = [b"A", b"B", b"A", b"B"]
    with windows_readonly_semantics(monkeypatch) as refused:
        for i, content in enumerate(versions):
            os.chmod(src / "ro.txt", 0o644)
            (src / "ro.txt").write_bytes(content)
            os.chmod(src / "ro.txt", 0o444)
            os.utime(src / "ro.txt", ns=(10**18 + i, 10**18 + i))
            r = backup_path(set_path, [src])
            assert r.status is BackupStatus.OK and r.files_copied == 1
    assert refused, "no read-only copy was ever in the way: the test proves nothing"
    assert (set_path / "Latest" / "Data" / "ro.txt").read_bytes() == b"B"
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == {"ro.txt": b"B"}


@pytest.mark.parametrize("codes,text", [
    (["locked"], "1 file open in another program (not backed up now)"),
    (["locked"] * 2, "2 files open in other programs (not backed up now)"),
    (["renamed"], "1 name this computer cannot hold was restored under another"),
    (["renamed"] * 3, "3 names this computer cannot hold were restored under others"),
])
def test_new_warning_codes_in_words(codes, text):
    """The notification and history summary of the two Windows warnings (not "1 warning (locked)")."""
    from core.agent.jobs import warning_summary
    from core.engine.progress import RunWarning

    assert warning_summary([RunWarning(WarningCode(c), f"/p/{i}", "why") for i, c in enumerate(codes)]) == text


def test_backup_restore_verify_with_paths_past_max_path(tmp_path):
    r"""Paths of 260+ characters, refused unless they take the \\?\ form (Windows without long-path
    support, simulated): a backup, a change, a second backup, verify and restore all work."""
    from core.engine.backup import BackupStatus
    from tests.support.engine import verify_path
    from tests.support.winfaults import MAX_PATH, windows_path_limit

    deep = "/".join(["f" * 60] * 4)
    tree = {f"{deep}/report.txt": b"deep", f"{deep}/sub/notes.txt": b"deeper", "top.txt": b"short"}
    src = make_tree(tmp_path / "Docs", tree)
    assert len(str(src / deep / "sub" / "notes.txt")) >= MAX_PATH
    set_path, out = tmp_path / "set", tmp_path / "out"
    with windows_path_limit() as seen:
        with pytest.raises(FileNotFoundError):
            os.stat(src / deep / "report.txt")   # the simulation bites
        seen.refused.clear()
        r = backup_path(set_path, [src])
        assert r.status is BackupStatus.OK, (r.damaged, r.warnings, seen.refused)
        (src / deep / "report.txt").write_bytes(b"deep, changed")   # (the user edits it)
        second = backup_path(set_path, [src])
        assert second.status is BackupStatus.OK and second.files_copied == 1
        assert verify_path(set_path, read_all=True).ok
        restore_path(set_path, out)
        first = restore_path(set_path, tmp_path / "old", snapshot=backup_ids(set_path)[0])
        # Restoring over them: a long path that looked missing would be overwritten, not skipped.
        again = restore_path(set_path, tmp_path / "old")
        assert again.skipped == 3 and again.files_restored == 0
    assert seen.refused == [] and seen.prefixed > 0
    assert first.files_restored == 3 and not first.damaged
    assert read_tree(out / "Docs") == {**tree, f"{deep}/report.txt": b"deep, changed"}
    assert read_tree(tmp_path / "old" / "Docs") == tree


def backup_ids(set_path):
    from tests.support.engine import open_set

    return open_set(set_path).snapshot_ids()


@pytest.fixture
def locked_targets(monkeypatch):
    """``lock(path, times)``: ``os.replace`` onto ``path`` fails as Windows does while another program
    holds it open (winerror 32), ``times`` times (None: always); waits shortened."""
    from core.engine import winattrs

    monkeypatch.setattr(winattrs, "LOCKED_WAITS", (0.001,) * 5)
    real = os.replace
    refusals: dict[str, int] = {}

    def lock(path, times=None):
        refusals[str(path)] = 10**9 if times is None else times

    def replace(src, dst, **kw):
        if refusals.get(str(dst), 0) > 0:
            refusals[str(dst)] -= 1
            raise locked_error(dst)
        return real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    lock.refusals = refusals
    return lock


def test_restore_waits_for_a_briefly_locked_file(tmp_path, locked_targets):
    """A virus scanner holds the file just written for a moment: the rename is tried again."""
    src = make_tree(tmp_path / "Data", {"a.txt": b"backed up"})
    backup_path(tmp_path / "set", [src])
    out = make_tree(tmp_path / "out" / "Data", {"a.txt": b"mine"})
    locked_targets(out / "a.txt", times=3)
    r = restore_path(tmp_path / "set", tmp_path / "out", on_conflict="overwrite")
    assert r.overwritten == 1 and r.warnings == [] and (out / "a.txt").read_bytes() == b"backed up"
    assert locked_targets.refusals[str(out / "a.txt")] == 0


def test_restore_skips_a_file_open_in_another_program_and_goes_on(tmp_path, locked_targets):
    src = make_tree(tmp_path / "Data", {"open.docx": b"backed up", "b.txt": b"b", "c.txt": b"c"})
    backup_path(tmp_path / "set", [src])
    out = make_tree(tmp_path / "out" / "Data", {"open.docx": b"being edited"})
    locked_targets(out / "open.docx")
    r = restore_path(tmp_path / "set", tmp_path / "out", on_conflict="overwrite")
    assert (r.files_restored, r.skipped, r.damaged) == (2, 1, [])
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LOCKED, "Data/open.docx")]
    assert "open in another program" in r.warnings[0].message
    assert read_tree(out) == {"open.docx": b"being edited", "b.txt": b"b", "c.txt": b"c"}   # no .part left
