"""Issue #12: a backup given a change hint lists only the named folders, reuses the parent's
records elsewhere, and falls back to a full scan when the hint cannot be trusted."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from core.engine import reuse
from core.engine.changes import ChangeHint
from core.engine.manifest import decode_scan
from core.engine.progress import FakeClock, WarningCode
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree

TREE = {"top.txt": b"top", "one/a.txt": b"a v1", "one/deep/b.txt": b"b v1", "two/c.txt": b"c v1",
        "skip/s.txt": b"s"}



def _first(tmp_path, **options):
    src = make_tree(tmp_path / "Data", TREE)
    first = backup_path(tmp_path / "set", [src], workers=1, **options)
    return src, tmp_path / "set", first.snapshot_id


def _files(set_path) -> dict[str, tuple]:
    bset = open_set(set_path)
    return {e.path: (e.size, e.sha256) for e in bset.manifest(bset.newest_id()).entries if e.type == "f"}


def _header_scan(set_path):
    bset = open_set(set_path)
    return bset.header(bset.newest_id()).scan


def test_only_named_folders_are_listed_and_the_rest_is_the_parents(tmp_path, listed):
    src, set_path, first = _first(tmp_path)
    (src / "one" / "a.txt").write_bytes(b"a v2, not reported")      # the hint does not name one/
    (src / "two" / "c.txt").write_bytes(b"c v2, reported")
    (src / "two" / "new.txt").write_bytes(b"new")
    listed.clear()
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(first, frozenset({str(src / "two")})))
    assert r.scan == "journal" and r.to_dict()["scan"] == "journal"
    assert listed == [str(src / "two")]
    files = _files(set_path)
    assert files["Data/one/a.txt"][0] == len(b"a v1")        # the parent's record: not read again
    assert files["Data/two/c.txt"][0] == len(b"c v2, reported")
    assert "Data/two/new.txt" in files
    assert r.files_copied == 2 and r.files_scanned == len(files)
    assert _header_scan(set_path) == {"by": "journal", "rules": reuse.rules_key(()), "retry": []}


@pytest.mark.parametrize("why", ["other parent", "rehash", "excludes changed", "outside the sources",
                                 "relative path", "NUL in a path", "parent without scan rules", "no hint"])
def test_a_hint_that_cannot_be_trusted_means_a_full_scan(tmp_path, monkeypatch, why):
    if why == "parent without scan rules":   # a snapshot made before issue #12
        monkeypatch.setattr(reuse.Reuse, "record", lambda self, warnings: None)
    src, set_path, first = _first(tmp_path)
    monkeypatch.undo()
    (src / "one" / "a.txt").write_bytes(b"a v2, not reported")
    options = {}
    hint = ChangeHint(first, frozenset({str(src / "two")}))
    if why == "other parent":
        hint = ChangeHint("20200101T000000Z-abcd", hint.dirs)
    elif why == "rehash":
        options["rehash"] = True
    elif why == "excludes changed":
        options["excludes"] = ("*.bak",)
    elif why == "outside the sources":
        hint = ChangeHint(first, hint.dirs | {str(tmp_path / "elsewhere")})
    elif why == "relative path":
        hint = ChangeHint(first, hint.dirs | {"Data/two"})
    elif why == "NUL in a path":
        hint = ChangeHint(first, hint.dirs | {str(src / "two") + "\x00"})
    elif why == "no hint":
        hint = None
    r = backup_path(set_path, [src], workers=1, changes=hint, **options)
    assert r.scan == "full"
    assert _files(set_path)["Data/one/a.txt"][0] == len(b"a v2, not reported")
    assert _header_scan(set_path)["by"] == "full"


def test_a_new_folder_named_alone_is_found_through_its_parent(tmp_path):
    """The agent named the new folder but not the folder it appeared in: still found."""
    src, set_path, first = _first(tmp_path)
    make_tree(src / "one" / "new" / "sub", {"n.txt": b"n"})
    r = backup_path(set_path, [src], workers=1,
                    changes=ChangeHint(first, trees=frozenset({str(src / "one" / "new")})))
    assert r.scan == "journal"
    assert "Data/one/new/sub/n.txt" in _files(set_path)


def test_a_named_folder_that_is_gone_names_the_folder_above(tmp_path, listed):
    src, set_path, first = _first(tmp_path)
    shutil.rmtree(src / "one")
    (src / "one").write_bytes(b"a file now")
    listed.clear()
    hint = ChangeHint(first, frozenset({str(src / "one"), str(src / "one" / "deep")}))
    r = backup_path(set_path, [src], workers=1, changes=hint)
    assert r.scan == "journal" and listed == [str(src)]
    files = _files(set_path)
    assert files["Data/one"][0] == len(b"a file now")
    assert not any(p.startswith("Data/one/") for p in files)


def test_a_changed_subfolder_of_a_listed_folder_is_listed_too(tmp_path):
    """Only one/ is named, but one/deep's own time changed (an entry was added): it is listed."""
    src, set_path, first = _first(tmp_path)
    (src / "one" / "deep" / "unreported.txt").write_bytes(b"u")
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(first, frozenset({str(src / "one")})))
    assert r.scan == "journal"
    assert "Data/one/deep/unreported.txt" in _files(set_path)


def test_a_folder_replaced_under_a_listed_folder_is_scanned_whole(tmp_path):
    src, set_path, first = _first(tmp_path)
    st = os.stat(src / "one" / "deep" / "b.txt")
    shutil.rmtree(src / "one")
    make_tree(src / "one", {"a.txt": b"a v1", "deep/b.txt": b"b v2"})   # same sizes, other content
    os.utime(src / "one" / "deep" / "b.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(first, frozenset({str(src)})))
    assert r.scan == "journal"
    assert _files(set_path)["Data/one/deep/b.txt"] == _files_of_full_scan(tmp_path, src)["Data/one/deep/b.txt"]


def _files_of_full_scan(tmp_path, src):
    backup_path(tmp_path / "full", [src], workers=1)
    return _files(tmp_path / "full")


def test_the_source_folder_itself_in_dirs_updates_its_own_record(tmp_path, listed):
    src, set_path, first = _first(tmp_path)
    os.chmod(src, 0o700)
    listed.clear()
    backup_path(set_path, [src], workers=1, changes=ChangeHint(first, frozenset({str(src)})))
    bset = open_set(set_path)
    root = bset.manifest(bset.newest_id()).by_path()["Data"]
    assert root.mode == 0o700 and listed == [str(src)]


def test_hint_paths_below_excluded_folders_are_dropped(tmp_path, listed):
    src, set_path, first = _first(tmp_path, excludes=("skip/",))
    (src / "skip" / "more.txt").write_bytes(b"m")
    listed.clear()
    r = backup_path(set_path, [src], workers=1, excludes=("skip/",),
                    changes=ChangeHint(first, frozenset({str(src / "skip")})))
    assert r.scan == "journal" and listed == []
    assert not any(p.startswith("Data/skip") for p in _files(set_path))


@pytest.fixture
def unreadable_once(monkeypatch):
    """Reading ``path`` fails (EACCES) in the next run only."""
    from core.engine import store

    def arm(path):
        real = store.read_source

        def read_source(p, *args, **kwargs):
            if p == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", p)
            return real(p, *args, **kwargs)

        monkeypatch.setattr(store, "read_source", read_source)
    return arm


def test_what_a_run_could_not_read_is_read_again_by_the_next_journal_scan(tmp_path, unreadable_once,
                                                                          monkeypatch):
    src, set_path, first = _first(tmp_path)
    (src / "two" / "locked.txt").write_bytes(b"locked for now")
    unreadable_once(src / "two" / "locked.txt")
    r = backup_path(set_path, [src], workers=1, clock=FakeClock(),
                    changes=ChangeHint(first, frozenset({str(src / "two")})))
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.UNREADABLE, str(src / "two" / "locked.txt"))]
    assert _header_scan(set_path)["retry"] == [str(src / "two" / "locked.txt")]
    assert "Data/two/locked.txt" not in _files(set_path)
    monkeypatch.undo()
    # Nothing changed since, so the hint is empty: the run reads two/ again on the snapshot's word.
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(r.snapshot_id))
    assert r.scan == "journal" and r.warnings == []
    assert "Data/two/locked.txt" in _files(set_path)
    assert _header_scan(set_path)["retry"] == []


def test_too_much_to_retry_means_the_next_run_scans_everything(tmp_path, unreadable_once, monkeypatch):
    src, set_path, first = _first(tmp_path)
    monkeypatch.setattr(reuse, "MAX_RETRY", 0)
    (src / "two" / "locked.txt").write_bytes(b"locked for now")
    unreadable_once(src / "two" / "locked.txt")
    r = backup_path(set_path, [src], workers=1, clock=FakeClock(),
                    changes=ChangeHint(first, frozenset({str(src / "two")})))
    assert _header_scan(set_path) == {"by": "journal", "rules": None, "retry": []}
    monkeypatch.undo()
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(r.snapshot_id))
    assert r.scan == "full" and "Data/two/locked.txt" in _files(set_path)


@pytest.mark.parametrize("value", [None, "full", [], {"by": "partial"}, {"by": "full", "rules": "xyz"},
                                   {"by": "full", "retry": "a"}, {"by": "full", "retry": [1]},
                                   {"by": "full", "retry": ["a\x00b"]}, {"by": "full", "retry": ["p"] * 1001}])
def test_a_bad_scan_field_is_ignored_not_damage(value):
    assert decode_scan(value) is None


def test_a_good_scan_field_reads_back():
    key = reuse.rules_key(("*.tmp",))
    assert decode_scan({"by": "journal", "rules": key, "retry": ["/x"], "later": 1}) == \
        {"by": "journal", "rules": key, "retry": ["/x"]}
    assert reuse.rules_key(("*.tmp",)) != reuse.rules_key(())


def test_reused_records_point_at_the_files_on_disk(tmp_path):
    """With nothing named, every pair is the parent's record, and its place on disk is right."""
    from core.engine.scan import Excluder, plan_sources

    src, set_path, first = _first(tmp_path)
    bset = open_set(set_path)
    entries = bset.manifest(first).entries
    pairs = list(reuse._JournalScan(reuse.Plan(set(), set()), Excluder(()), [], entries).run(plan_sources([src])))
    assert [(se.path, se.size, se.mtime_ns, se.ino) for se, _ in pairs] == \
        [(e.path, e.size, e.mtime_ns, e.ino) for e in entries]
    assert all(old is not None and se.path == old.path for se, old in pairs)
    assert [se.abspath for se, _ in pairs] == [str(src)] + [str(src / e.path.split("/", 1)[1]) for e in entries[1:]]


def test_journal_scan_in_an_encrypted_set(tmp_path):
    from core.agent.keys import Secret, make_unlocker
    from tests.support.engine import restore_path
    from tests.support.trees import read_tree

    src = make_tree(tmp_path / "Data", TREE)
    unlock = make_unlocker(Secret.passphrase("pw"))
    first = backup_path(tmp_path / "set", [src], workers=1, passphrase="pw")
    (src / "two" / "c.txt").write_bytes(b"c v2")
    r = backup_path(tmp_path / "set", [src], workers=1, unlock=unlock,
                    changes=ChangeHint(first.snapshot_id, frozenset({str(src / "two")})))
    assert r.scan == "journal" and r.files_copied == 1 and r.damaged == []
    restore_path(tmp_path / "set", tmp_path / "out", unlock=unlock)
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)


def test_hint_paths_inside_the_set_are_dropped(tmp_path, listed):
    """A set inside its source: the agent sees the backup's own writes; they name nothing."""
    src = make_tree(tmp_path / "Data", TREE)
    set_path = src / "backups" / "set"
    first = backup_path(set_path, [src], workers=1, parents=True)
    (src / "one" / "a.txt").write_bytes(b"a v2")
    listed.clear()
    hint = ChangeHint(first.snapshot_id, frozenset({str(src / "one"), str(set_path / "snapshots"),
                                                    str(set_path / "Latest" / "Data")}))
    r = backup_path(set_path, [src], workers=1, changes=hint)
    assert r.scan == "journal"
    assert [p for p in listed if not p.startswith(str(set_path))] == [str(src / "one")]   # (the run's own)
    files = _files(set_path)
    assert files["Data/one/a.txt"][0] == len(b"a v2")
    assert not any(p.startswith("Data/backups/set") for p in files)


def test_a_damaged_parent_means_a_full_scan(tmp_path):
    """The hint is against the newest snapshot, whose manifest turns out cut short (its trailer
    is checked in the first read): the run copies everything again, as without a hint."""
    import gzip

    from core.engine.layout import SetLayout

    src, set_path, first = _first(tmp_path)
    m = SetLayout(set_path).manifest(first)
    lines = gzip.decompress(m.read_bytes()).split(b"\n")
    m.write_bytes(gzip.compress(b"\n".join(lines[:3] + lines[-2:])))   # entries cut, trailer kept
    r = backup_path(set_path, [src], workers=1, changes=ChangeHint(first, frozenset({str(src / "two")})))
    assert r.scan == "full"
    assert WarningCode.SNAPSHOT_DAMAGED in [w.code for w in r.warnings]
    assert set(_files(set_path)) == {"Data/top.txt", "Data/one/a.txt", "Data/one/deep/b.txt", "Data/two/c.txt",
                                     "Data/skip/s.txt"}


def test_long_windows_paths_map_to_the_set(tmp_path):
    r"""Warnings name long paths as the scan read them (``\\?\`` on Windows): still in the source."""
    from core.engine.scan import Source

    src = Source(str(tmp_path / "Data"), "Data")
    assert reuse._set_path("\\\\?\\" + str(tmp_path / "Data" / "two"), src) == "Data/two"
    assert reuse._set_path(str(tmp_path / "Data"), src) == "Data"
    assert reuse._set_path(str(tmp_path / "Database"), src) is None
