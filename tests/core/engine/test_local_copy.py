"""Issue #12 at 1,000,000 files: a journal backup reads its parent from the local copy of the manifest
this computer committed (core/engine/local_copy.py), copies its whole pieces as they are
(core/engine/pieces.py), and patches ``Latest.sha256`` in place (core/engine/sums_base.py).
Whatever differs from the record (the local copy, the drive's manifest, ``Latest.sha256``), the
run takes the slower path and ends with what a full scan gives."""

from __future__ import annotations

import gzip
import io
import os
import random
from unittest import mock

import pytest

from core.engine import local_copy, pieces, splice, sums, sums_base
from core.engine.changes import ChangeHint
from core.engine.layout import SetLayout
from core.engine.manifest_io import ManifestWriter
from core.engine.pieces import Piece, unpack
from core.engine.sums_base import LineIndex, OldLines, SumsState
from core.engine.trust import TrustRecord
from core.errors import PlugbackError
from tests.core.engine.test_splice import _entries, _expected_sums
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree

TREE = {f"d{i}/{name}": f"{i} {name}".encode() for i in range(6) for name in ("a.txt", "b.txt", "sub/c.txt")}
TREE.update({"é/x.txt": b"x", 'q"uote/y.txt': b"y", "back\\slash/z.txt": b"z"})


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Pieces of a few lines and line starts every 3 lines: the paths cross their boundaries."""
    monkeypatch.setattr(pieces, "PIECE_TEXT", 400)
    monkeypatch.setattr(sums_base, "STRIDE", 3)


@pytest.fixture
def seen(monkeypatch):
    """What the runs did: parents read from the drive, pieces copied whole, Latest.sha256 patched."""
    out = {"drive": 0, "copied": 0, "patched": 0, "rewritten": 0, "never unpacked": 0}

    def count(owner, name, key):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            out[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    count(splice.ParentCopy, "read", "drive")
    count(pieces.PieceSpool, "add_piece", "copied")
    count(sums, "patches", "patched")
    count(sums, "rewritten", "rewritten")
    real_ahead = local_copy.LocalParent.ahead

    def ahead(self, prefix, stop):
        taken = real_ahead(self, prefix, stop)
        out["never unpacked"] += len(taken)
        return taken

    monkeypatch.setattr(local_copy.LocalParent, "ahead", ahead)
    return out


def _setup(tmp_path):
    src = make_tree(tmp_path / "Data", TREE)
    first = backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache")
    # A second run: the first one's record came from a full scan, this one's from a journal run.
    second = _run(tmp_path, src, first.snapshot_id, "d0", "a.txt", b"a v2")
    return src, tmp_path / "set", second.snapshot_id


def _run(tmp_path, src, since, folder, name, data: bytes | None, **options):
    path = src / folder / name
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)
    hint = ChangeHint(since, frozenset({str(src / folder)}))
    return backup_path(tmp_path / "set", [src], workers=1, changes=hint, cache=tmp_path / "cache", **options)


def _full_scan_equal(tmp_path, src, set_path) -> None:
    """The journal run's snapshot is what a full scan gives, and Latest.sha256 is right."""
    journal = _entries(set_path)
    assert (set_path / "Latest.sha256").read_bytes() == _expected_sums(set_path)
    check = backup_path(tmp_path / "check", [src], workers=1)
    assert [{k: v for k, v in e.items() if k != "mirror"} for e in journal] == \
        [{k: v for k, v in e.items() if k != "mirror"} for e in _entries(tmp_path / "check")]
    assert check.files_scanned == len([e for e in journal if e["type"] == "f"])


def test_a_journal_run_reads_the_local_copy_copies_pieces_and_patches_latest_sums(tmp_path, seen):
    src, set_path, parent = _setup(tmp_path)
    before = dict(seen)
    r = _run(tmp_path, src, parent, "d3", "b.txt", b"b v2")
    assert r.scan == "journal" and r.files_copied == 1
    assert seen["drive"] == before["drive"]          # the parent came from the local copy
    assert seen["copied"] > before["copied"]         # whole pieces, as they were
    assert seen["never unpacked"] > before["never unpacked"]   # some not even unpacked
    assert seen["patched"] > before["patched"] and seen["rewritten"] == before["rewritten"]
    _full_scan_equal(tmp_path, src, set_path)
    record = TrustRecord(tmp_path / "cache", open_set(set_path).set_id)
    local = record.local_of(r.snapshot_id)
    assert local is not None and record.local_path.read_bytes() == SetLayout(set_path).manifest(r.snapshot_id).read_bytes()
    assert oct(record.local_path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("change", ["added", "removed", "renamed"])
def test_a_file_added_removed_or_renamed_rewrites_latest_sums_from_its_kept_runs(tmp_path, seen, change):
    src, set_path, parent = _setup(tmp_path)
    before = dict(seen)
    if change == "renamed":   # as many lines there as before, another name: no patch
        (src / "d4" / "b.txt").rename(src / "d4" / "bb.txt")
        _run(tmp_path, src, parent, "d4", "a.txt", b"a v3")
        assert seen["patched"] == before["patched"] + 1
    else:
        _run(tmp_path, src, parent, "d4", "new.txt" if change == "added" else "b.txt",
             b"new" if change == "added" else None)
    assert seen["rewritten"] == before["rewritten"] + 1
    _full_scan_equal(tmp_path, src, set_path)


@pytest.mark.parametrize("damage", ["local copy edited", "local copy gone", "drive manifest rewritten",
                                    "record of pieces wrong"])
def test_a_local_copy_that_does_not_match_takes_the_drive_path(tmp_path, seen, damage):
    src, set_path, parent = _setup(tmp_path)
    record = TrustRecord(tmp_path / "cache", open_set(set_path).set_id)
    local, drive = record.local_path, SetLayout(set_path).manifest(parent)
    if damage == "local copy edited":
        data = bytearray(local.read_bytes())
        data[len(data) // 2] ^= 1
        local.write_bytes(bytes(data))
    elif damage == "local copy gone":
        local.unlink()
    elif damage == "drive manifest rewritten":   # the same bytes, written again: another file now
        data = drive.read_bytes()
        drive.unlink()
        drive.write_bytes(data)
        os.utime(drive, ns=(0, 10**18))
    else:
        rec = record.local_of(parent)
        assert rec is not None and len(rec.pieces) > 2
        rec.pieces[1].text += 1
        record.record(parent, record.hash_of(parent), record.sums_of(parent), rec)
    before = dict(seen)
    r = _run(tmp_path, src, parent, "d3", "b.txt", b"b v3")
    assert r.scan == "journal" and r.status.value == "ok"
    assert seen["drive"] == before["drive"] + 1
    _full_scan_equal(tmp_path, src, set_path)


def test_latest_sums_changed_behind_our_back_is_rewritten_whole(tmp_path, seen):
    src, set_path, parent = _setup(tmp_path)
    sums_file = set_path / "Latest.sha256"
    data = sums_file.read_bytes()
    sums_file.write_bytes(data.replace(b"Data/d5/b.txt", b"Data/d5/B.txt"))
    st = sums_file.stat()
    os.utime(sums_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    before = dict(seen)
    _run(tmp_path, src, parent, "d3", "b.txt", b"b v4")
    assert seen["patched"] == before["patched"]   # not the file this computer left: not patched
    _full_scan_equal(tmp_path, src, set_path)


def test_a_crash_while_patching_latest_sums_is_finished_by_the_next_run(tmp_path):
    src, set_path, parent = _setup(tmp_path)
    real = sums_base.patches

    def crash(f, state, ops, new):
        todo = real(f, state, ops, new)
        if todo:   # half of the lines written, then the power goes
            f.seek(todo[0][0])
            f.write(todo[0][1])
        raise OSError(5, "the drive went away")

    with mock.patch.object(sums, "patches", crash), pytest.raises((OSError, PlugbackError)):
        _run(tmp_path, src, parent, "d3", "b.txt", b"b v5")
    assert SetLayout(set_path).journal.exists()   # committed; its last steps are left to the next run
    r = backup_path(set_path, [src], workers=1, cache=tmp_path / "cache")
    assert r.files_copied == 0
    _full_scan_equal(tmp_path, src, set_path)


def test_pieces_unpack_alone_and_the_manifest_is_plain_gzip(tmp_path):
    _, set_path, parent = _setup(tmp_path)
    record = TrustRecord(tmp_path / "cache", open_set(set_path).set_id)
    rec = record.local_of(parent)
    data = SetLayout(set_path).manifest(parent).read_bytes()
    assert rec is not None and len(rec.pieces) > 3
    at, texts = rec.head, []
    for p in rec.pieces:
        text = unpack(data[at:at + p.comp])
        assert len(text) == p.text and text.startswith(b'{"path":"' + p.first.encode()[:3])
        assert p.sums == sum(1 for line in text.splitlines() if b'"type":"f"' in line)
        texts.append(text)
        at += p.comp
    whole = gzip.decompress(data)
    assert b"".join(texts) == whole[whole.index(b"\n") + 1:whole.rindex(b"\n", 0, len(whole) - 1) + 1]


def test_the_writer_takes_a_whole_piece_as_text_when_little_text_waits_before_it():
    with ManifestWriter() as w:
        spool = w._spool
        spool.add(b'{"path":"a","type":"d"}')
        text = b'{"path":"b","type":"d"}\n'
        spool.add_piece(pieces.pack(text), text, Piece.of(pieces.pack(text), text))
        assert len(spool.pieces) == 0   # (one piece once flushed: both lines as text)
        assert [t for _, t in spool.deflated()] == [b'{"path":"a","type":"d"}\n' + text]


def test_line_index_and_old_lines_find_every_line():
    rng = random.Random(7)
    lines = [b"%064x  %s\n" % (i, b"n" * rng.randrange(1, 30)) for i in range(50)]
    index = LineIndex()
    index.text(b"".join(lines[:7]))
    for line in lines[7:20]:
        index.line(len(line))
    index.text(b"".join(lines[20:]))
    text = b"".join(lines)
    starts = [sum(len(x) for x in lines[:k]) for k in range(len(lines))]
    assert index.lines == 50 and index.size == len(text) and index.index == starts[::sums_base.STRIDE]
    state = SumsState(len(text), 0, 0, 50, index.index)
    assert SumsState.parse(state.to_json()) == state
    for first in range(50):
        count = min(4, 50 - first)
        assert OldLines(io.BytesIO(text), state).take(first, count) == (starts[first], lines[first:first + count])
    with pytest.raises(sums_base.Short):
        OldLines(io.BytesIO(text[:-5]), state).take(48, 2)


@pytest.mark.parametrize("bad", [{"size": -1}, {"lines": 7}, {"index": [1, 5, 9]}, {"index": "x"}, {"ino": 1.5}])
def test_a_sums_record_this_version_did_not_write_is_refused(bad):
    good = {"size": 1000, "mtime_ns": 1, "ino": 2, "lines": 6, "index": [0, 300]}
    assert SumsState.parse(good) is not None
    assert SumsState.parse({**good, **bad}) is None


def test_on_a_volume_where_names_collide_the_local_copy_reserves_every_name(tmp_path, seen, monkeypatch):
    """exFAT-like rules (case-insensitive, Windows names): the new file "A.txt" beside "a.txt" must
    get another name in Latest/, which it can only if every parent name was reserved."""
    from core.engine import backup as backup_mod
    from core.engine.fs import VolumeInfo

    exfat = VolumeInfo("exfat", case_insensitive=True, windows_names=True, symlinks=True, max_file_size=None)
    monkeypatch.setattr(backup_mod, "probe_volume", lambda path: exfat)
    src, set_path, parent = _setup(tmp_path)
    before = dict(seen)
    r = _run(tmp_path, src, parent, "d2", "A.txt", b"capital")
    assert seen["drive"] == before["drive"] and r.files_copied == 1
    mirrors = {e["path"]: e.get("mirror") for e in _entries(set_path)}
    assert mirrors["Data/d2/A.txt"] == "Data/d2/A~1.txt" and mirrors["Data/d2/a.txt"] is None
    assert mirrors['Data/q"uote/y.txt'] == "Data/q%22uote/y.txt"
    _full_scan_equal(tmp_path, src, set_path)


def test_skipping_old_lines_keeps_memory_small(monkeypatch):
    import io

    monkeypatch.setattr(sums, "READ_BLOCK", 100)
    lines = [b"%064x  f%d\n" % (i, i) for i in range(5000)]
    old = sums.OldSums(io.BytesIO(b"".join(lines)))
    assert old.take(4000, 2) == lines[4000] + lines[4001]
    assert len(old._buf) <= 16 * 100 + 200   # (not the 4,000 lines skipped)
    assert old.take(0, 3) == b"".join(lines[4002:4005]) and old.take(995, 1) is None


def test_a_full_scan_after_a_journal_run_keeps_unchanged_lines_and_patches_latest_sums(tmp_path, seen):
    """A full scan against a proven parent keeps its unchanged lines as they are
    (core/engine/fullsplice.py): Latest.sha256 is patched in place, as after a journal run."""
    src, set_path, parent = _setup(tmp_path)
    (src / "d1" / "b.txt").write_bytes(b"b v9")
    before = dict(seen)
    r = backup_path(set_path, [src], workers=1, cache=tmp_path / "cache")
    assert r.scan == "full" and r.files_copied == 1
    assert seen["drive"] == before["drive"] and seen["copied"] > before["copied"]
    assert seen["rewritten"] == before["rewritten"] and seen["patched"] == before["patched"] + 1
    _full_scan_equal(tmp_path, src, set_path)


def test_a_sums_record_that_disagrees_with_its_file_rebuilds_latest_sums_from_the_manifest(tmp_path, monkeypatch):
    """The record says the file has more lines than it has (never written so, but a record is only
    local data): the rewrite finds the file short and makes it from the committed manifest."""
    src, set_path, parent = _setup(tmp_path)
    record = TrustRecord(tmp_path / "cache", open_set(set_path).set_id)
    state = record.sums_of(parent)
    assert state is not None and state.index[-1] < state.size - 1
    state.lines += sums_base.STRIDE
    state.index.append(state.size - 1)
    record.record(parent, record.hash_of(parent), state, record.local_of(parent))
    rebuilt = []
    real = sums.LatestSums._rebuild
    monkeypatch.setattr(sums.LatestSums, "_rebuild", lambda self, bset: rebuilt.append(1) or real(self, bset))
    _run(tmp_path, src, parent, "d3", "b.txt", b"b v6")
    assert rebuilt
    _full_scan_equal(tmp_path, src, set_path)


class _Counted(io.BytesIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, n=-1):
        data = super().read(n)
        self.read_bytes += len(data)
        return data


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_old_lines_take_runs_in_order_reading_each_stretch_once(monkeypatch, chunk):
    monkeypatch.setattr(sums_base, "STRIDE", 16)
    monkeypatch.setattr(sums_base, "_READ", chunk)
    rng = random.Random(11)
    lines = [b"%064x  %s\n" % (i, b"n" * rng.randrange(1, 40)) for i in range(500)]
    index = LineIndex()
    for line in lines:
        index.line(len(line))
    text = b"".join(lines)
    starts = [sum(len(x) for x in lines[:k]) for k in range(len(lines))]
    state = SumsState(len(text), 0, 0, len(lines), index.index)
    f = _Counted(text)
    cursor = OldLines(f, state)
    first = 0
    while first < len(lines):   # runs in line order, some in one stride, some strides apart
        count = min(rng.randrange(1, 4), len(lines) - first)
        assert cursor.take(first, count) == (starts[first], lines[first:first + count])
        first += count + rng.choice([0, 1, 5, 40])
    assert f.read_bytes <= len(text)   # each byte read once at most: not a stride per run
    with pytest.raises(sums_base.Short):
        OldLines(_Counted(text[:-5]), state).take(498, 2)
