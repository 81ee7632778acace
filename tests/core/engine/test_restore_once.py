"""A restore reads its manifest from the drive once (issue #11): checked to its trailer before anything
is written, its chosen entries kept in a local spool; destinations are strings built on the root, and
a folder this restore made is not searched for files in the way."""

from __future__ import annotations

import gzip
import os

import pytest

from core.engine import restore as restore_mod
from core.engine.manifest import FILE, Entry
from core.engine.repo import BackupSet
from core.engine.restore import OnConflict
from core.engine.restore_spool import BATCH, EntrySpool
from core.errors import ManifestDamaged, UnsafePath
from tests.support.engine import backed_up_tree, restore_path
from tests.support.trees import make_tree, read_tree

TREE = {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 100, "sub/deeper/c.txt": b"charlie", "other/d.txt": b"delta"}


@pytest.fixture
def backed_up(tmp_path):
    return backed_up_tree(tmp_path, TREE)


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_the_spool_gives_back_every_field_in_order_across_its_blocks():
    entries = [Entry(f"Docs/f{i}", FILE, size=i, mtime_ns=10 + i, mode=0o600, sha256="ab" * 32, target=None,
                     ino=i + 1, ctime_ns=20 + i, mirror=f"Docs/m{i}", parts=i % 3, obj="cd" * 32, attrs=2,
                     stored=i * 2) for i in range(2 * BATCH + 3)]
    with EntrySpool() as spool:
        for e in entries:
            spool.add(e)
        assert list(spool) == entries   # Entry equality compares every field: none is dropped


def test_the_manifest_is_read_from_the_drive_once(backed_up, tmp_path, monkeypatch):
    _, set_path = backed_up
    opened = []
    real = BackupSet.open_manifest

    def counting(self, snapshot_id, **kw):
        opened.append(snapshot_id)
        return real(self, snapshot_id, **kw)

    monkeypatch.setattr(BackupSet, "open_manifest", counting)
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and len(opened) == 1
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(backed_up[0])
    opened.clear()
    result = restore_path(set_path, tmp_path / "part", paths=["Docs/sub"])
    assert result.files_restored == 2 and len(opened) == 1
    assert _files(tmp_path / "part") == [os.path.join("Docs", "sub", "b.txt"),
                                         os.path.join("Docs", "sub", "deeper", "c.txt")]


def test_a_manifest_damaged_at_its_end_restores_nothing(backed_up, tmp_path):
    """The trailer is the last line: a restore that wrote while reading would have written every file."""
    _, set_path = backed_up
    (manifest,) = (set_path / "snapshots").glob("*.json.gz")
    lines = gzip.decompress(manifest.read_bytes()).splitlines(keepends=True)
    damaged = lines[-1].replace(b'"entries":', b'"entries":1')   # a count the entries do not give
    assert b'"trailer"' in damaged and damaged != lines[-1]
    manifest.write_bytes(gzip.compress(b"".join(lines[:-1]) + damaged))
    with pytest.raises(ManifestDamaged):
        restore_path(set_path, tmp_path / "out")
    assert _files(tmp_path / "out") == []


def test_restoring_again_finds_what_is_there_in_folders_it_did_not_make(backed_up, tmp_path):
    _, set_path = backed_up
    out = tmp_path / "out"
    make_tree(out / "Docs", {"sub/b.txt": b"mine"})   # the user's file, in a folder this restore does not make
    first = restore_path(set_path, out)
    assert first.files_restored == len(TREE) - 1 and first.skipped == 1
    assert (out / "Docs" / "sub" / "b.txt").read_bytes() == b"mine"
    again = restore_path(set_path, out, on_conflict=OnConflict.KEEP_BOTH)
    assert again.kept_both == len(TREE) and again.files_restored == len(TREE)
    assert (out / "Docs" / "sub" / "deeper" / "c (restored).txt").read_bytes() == b"charlie"


@pytest.mark.parametrize("path", ["", "/a", "a/", "a//b", ".", "..", "./a", "a/.", "a/./b", "a/../b", "a/..",
                                  "../a", "a\x00b"])
def test_unsafe_manifest_paths_are_refused(path):
    with pytest.raises(UnsafePath):
        restore_mod.check_safe(path)


@pytest.mark.parametrize("path", ["a", "a/b", "a/...", "a/.b", "..a/b", "a/b..", "a/b c/.d."])
def test_plain_manifest_paths_pass(path):
    restore_mod.check_safe(path)
