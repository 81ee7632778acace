"""Damage on the drive is found, named, and never restored silently; hostile manifests are refused."""

from __future__ import annotations

import gzip
import json

import pytest

from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.layout import SetLayout
from core.engine.repo import BackupSet
from core.errors import UnsafePath
from tests.support.cli import run_cli
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree


@pytest.fixture
def two_snapshots(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"alpha v1", "b.txt": b"bravo", "c/d.txt": b"delta"})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src]).snapshot_id
    (src / "a.txt").write_bytes(b"alpha v2")   # v1 moves to objects/
    second = backup_path(set_path, [src]).snapshot_id
    return src, set_path, first, second


def _flip(path, offset=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_latest(two_snapshots, tmp_path):
    src, set_path, first, second = two_snapshots
    _flip(set_path / "Latest" / "Data" / "b.txt")
    quick = run_cli("verify", set_path)
    assert quick.returncode == 0        # sizes still match: only reading finds a flipped bit
    proc = run_cli("verify", set_path, "--read-all")
    assert proc.returncode == 4
    assert "Data/b.txt" in proc.stdout and "does not match" in proc.stdout
    out = tmp_path / "out"
    proc = run_cli("restore", set_path, out)
    assert proc.returncode == 4 and "Data/b.txt" in proc.stderr
    assert not (out / "Data" / "b.txt").exists(), "a damaged file must never be restored"
    assert (out / "Data" / "a.txt").read_bytes() == b"alpha v2"   # the rest is restored
    assert not list(out.rglob("*.part"))


def test_flipped_byte_in_objects(two_snapshots, tmp_path):
    src, set_path, first, second = two_snapshots
    objects = [p for p in (set_path / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 1
    _flip(objects[0], 3)
    proc = run_cli("verify", set_path, "--read-all", "--json")
    assert proc.returncode == 4
    damaged = json.loads(proc.stdout)["damaged"]
    assert len(damaged) == 1 and damaged[0]["path"].startswith("Data/a.txt") and first in damaged[0]["path"]
    proc = run_cli("restore", set_path, tmp_path / "out", "--snapshot", first)
    assert proc.returncode == 4
    assert not (tmp_path / "out" / "Data" / "a.txt").exists()


def test_missing_object_found_by_quick_verify(two_snapshots):
    src, set_path, first, second = two_snapshots
    for p in (set_path / "objects").rglob("*"):
        if p.is_file():
            p.unlink()
    proc = run_cli("verify", set_path)
    assert proc.returncode == 4 and "missing" in proc.stdout


def test_truncated_manifest(two_snapshots, tmp_path):
    src, set_path, first, second = two_snapshots
    m = SetLayout(set_path).manifest(first)
    m.write_bytes(m.read_bytes()[:-20])
    proc = run_cli("verify", set_path, "--read-all")
    assert proc.returncode == 4 and first in proc.stdout
    # A manifest with its last entry lines cut (but valid gzip) is caught by the trailer.
    raw = gzip.decompress(SetLayout(set_path).manifest(second).read_bytes()).split(b"\n")
    cut = b"\n".join(raw[:2] + raw[-2:])
    SetLayout(set_path).manifest(second).write_bytes(gzip.compress(cut))
    proc = run_cli("verify", set_path)
    assert proc.returncode == 4 and second in proc.stdout and "checksum" in proc.stdout
    proc = run_cli("restore", set_path, tmp_path / "o", "--snapshot", second)
    assert proc.returncode == 4 and "damaged" in proc.stderr
    assert not (tmp_path / "o").exists() or read_tree(tmp_path / "o") == {}


def _forge(set_path, entries):
    """Write a well-formed manifest (valid trailer) with hostile entries as a new snapshot."""
    bset = BackupSet.open(set_path)
    sid = "20990101T000000Z-beef"
    base = bset.manifest(bset.newest_id())
    forged = mf.Manifest(sid, "2099-01-01T00:00:00+00:00", "h", "j", base.sources, None, entries)
    SetLayout(set_path).manifest(sid).write_bytes(mio.encode(forged))
    return sid, base


@pytest.mark.parametrize("bad", ["../escape.txt", "Data/../../escape.txt", "/etc/evil", "Data//x", "Data/./x"])
def test_restore_refuses_paths_that_escape(two_snapshots, tmp_path, bad):
    src, set_path, first, second = two_snapshots
    real = BackupSet.open(set_path).manifest(second).entries
    good = next(e for e in real if e.path == "Data/b.txt")
    evil = mf.Entry(bad, "f", good.size, good.mtime_ns, 0o644, good.sha256)
    sid, _ = _forge(set_path, real + [evil])
    target = tmp_path / "target"
    with pytest.raises(UnsafePath):
        restore_path(set_path, target, snapshot=sid)
    assert not target.exists() or read_tree(target) == {}
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    proc = run_cli("restore", set_path, target, "--snapshot", sid)
    assert proc.returncode == 4 and "outside the restore folder" in proc.stderr


@pytest.mark.parametrize("bad", ["C:/evil.txt", "Data/..\\..\\evil"])
def test_restore_refuses_drive_letters_and_backslashes_on_windows(two_snapshots, tmp_path, bad, monkeypatch):
    """Where '\\' separates folders and 'C:' names a drive (elsewhere they are name characters:
    test_hostile_reads.py), both the decoder and restore's own check refuse them."""
    from core.engine import restore as restore_mod
    src, set_path, first, second = two_snapshots
    real = BackupSet.open(set_path).manifest(second).entries
    good = next(e for e in real if e.path == "Data/b.txt")
    sid, _ = _forge(set_path, real + [mf.Entry(bad, "f", good.size, good.mtime_ns, 0o644, good.sha256)])
    monkeypatch.setattr(mf, "WINDOWS_PATHS", True)
    with pytest.raises(UnsafePath):
        restore_path(set_path, tmp_path / "target", snapshot=sid)
    monkeypatch.setattr(mf, "WINDOWS_PATHS", False)   # restore's own check, past the decoder
    monkeypatch.setattr(restore_mod, "WINDOWS_PATHS", True)
    with pytest.raises(UnsafePath):
        restore_mod.check_safe(bad)


def test_restore_never_writes_through_a_symlink(two_snapshots, tmp_path):
    """A manifest with a symlink 'Data/x' -> outside and a file 'Data/x/f' is refused."""
    src, set_path, first, second = two_snapshots
    outside = tmp_path / "outside"
    outside.mkdir()
    real = BackupSet.open(set_path).manifest(second).entries
    good = next(e for e in real if e.path == "Data/b.txt")
    link = mf.Entry("Data/x", "l", 0, 0, 0o777, target=str(outside))
    through = mf.Entry("Data/x/f.txt", "f", good.size, good.mtime_ns, 0o644, good.sha256)
    sid, _ = _forge(set_path, real + [link, through])
    with pytest.raises(UnsafePath):
        restore_path(set_path, tmp_path / "t", snapshot=sid)
    assert list(outside.iterdir()) == []


def test_restore_into_existing_symlinked_folder_is_refused(two_snapshots, tmp_path):
    src, set_path, first, second = two_snapshots
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    (target / "Data").mkdir(parents=True)
    (target / "Data" / "c").symlink_to(outside)
    proc = run_cli("restore", set_path, target)
    assert proc.returncode == 2 and "in the way" in proc.stderr
    assert list(outside.iterdir()) == []


def test_folder_deleted_from_latest_by_hand(two_snapshots, tmp_path):
    """Someone deletes a folder in Latest/: the next backup of a change inside it still works,
    and verify names what went missing until then."""
    import shutil

    src, set_path, first, second = two_snapshots
    shutil.rmtree(set_path / "Latest" / "Data" / "c")
    assert run_cli("verify", set_path).returncode == 4
    (src / "c" / "d.txt").write_bytes(b"delta v2")
    result = backup_path(set_path, [src])
    assert result.status == "ok"
    assert (set_path / "Latest" / "Data" / "c" / "d.txt").read_bytes() == b"delta v2"
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out / "Data") == read_tree(src)


def test_restore_to_original_place_refuses_a_folder_with_no_recorded_source(two_snapshots, tmp_path):
    """A forged entry outside every recorded source has no original place: refused, not a crash."""
    src, set_path, first, second = two_snapshots
    real = BackupSet.open(set_path).manifest(second).entries
    good = next(e for e in real if e.path == "Data/b.txt")
    stray = mf.Entry("Elsewhere/x.txt", "f", good.size, good.mtime_ns, 0o644, good.sha256)
    sid, _ = _forge(set_path, real + [stray])
    with pytest.raises(UnsafePath):
        restore_path(set_path, None, snapshot=sid, paths=["Elsewhere"])
    assert read_tree(src) == {"a.txt": b"alpha v2", "b.txt": b"bravo", "c/d.txt": b"delta"}
