"""Issue #12's speed: a journal backup splices the lines of a parent manifest this computer wrote
(core/engine/splice.py), proven by the local record of the manifests it wrote (core/engine/trust.py).
Whatever the drive holds instead, the run takes the validating path and ends as it would without
a cache folder. (tests/core/engine/test_changes_property.py checks splicing against full scans.)"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os

import pytest

from core.engine import manifest_io, splice
from core.engine.changes import ChangeHint
from core.engine.layout import SetLayout
from core.engine.manifest import Entry, Manifest
from core.engine.progress import WarningCode
from core.engine.sums import sums_line
from core.engine.sums_base import SumsState
from core.engine.trust import KEEP, TrustRecord
from core.errors import ManifestDamaged
from tests.support.engine import backup_path, open_set
from tests.support.trees import make_tree

TREE = {f"d{i}/{name}": f"{i} {name}".encode() for i in range(4) for name in ("a.txt", "b.txt", "sub/c.txt")}
TREE.update({"é/x.txt": b"x", 'q"uote/y.txt': b"y"})


@pytest.fixture
def spliced(monkeypatch):
    """The number of parent lines the runs spliced."""
    count = [0]
    real = splice.ParentLines.splice

    def counted(self, prefix, stop):
        sp = real(self, prefix, stop)
        count[0] += sp.block.count(b"\n")
        return sp

    monkeypatch.setattr(splice.ParentLines, "splice", counted)
    return count


def _first(tmp_path, **options):
    src = make_tree(tmp_path / "Data", TREE)
    first = backup_path(tmp_path / "set", [src], workers=1, cache=tmp_path / "cache", **options)
    return src, tmp_path / "set", first.snapshot_id


def _journal_run(tmp_path, src, since, **options):
    (src / "d1" / "a.txt").write_bytes(b"a v2")
    hint = ChangeHint(since, frozenset({str(src / "d1")}))
    return backup_path(tmp_path / "set", [src], workers=1, changes=hint, **options)


def _entries(set_path, unlock=None) -> list[dict]:
    bset = open_set(set_path, unlock)
    return [e.to_dict() for e in bset.manifest(bset.newest_id()).entries]


def _expected_sums(set_path) -> bytes:
    bset = open_set(set_path)
    return b"".join(sums_line(e.sha256 or "", e.mirror_path)
                    for e in bset.manifest(bset.newest_id()).entries if e.type == "f" and not e.parts)


def _rewrite(set_path, snapshot_id, edit) -> None:
    """Rewrite a manifest on the drive, as another program could: ``edit(entries)``, a valid trailer."""
    bset = open_set(set_path)
    m = bset.manifest(snapshot_id)
    edit(m.entries)
    SetLayout(set_path).manifest(snapshot_id).write_bytes(bset.encode_manifest(m))


def test_a_journal_run_splices_a_parent_this_computer_wrote(tmp_path, spliced):
    src, set_path, first = _first(tmp_path)
    r = _journal_run(tmp_path, src, first, cache=tmp_path / "cache")
    assert r.scan == "journal" and r.files_copied == 1 and r.files_scanned == len(TREE)
    assert spliced[0] > len(TREE)   # nearly every line of the parent
    files = {e["path"]: e for e in _entries(set_path) if e["type"] == "f"}
    assert files["Data/d1/a.txt"]["size"] == len(b"a v2")
    assert (set_path / "Latest.sha256").read_bytes() == _expected_sums(set_path)
    header = open_set(set_path).header(r.snapshot_id)
    assert header.totals == {"files": len(TREE), "dirs": 1 + 4 * 2 + 2, "links": 0,
                             "bytes": sum(len(v) for v in TREE.values()) - len(b"1 a.txt") + len(b"a v2")}
    record = TrustRecord(tmp_path / "cache", open_set(set_path).set_id)
    assert record.hash_of(r.snapshot_id) and record.sums_of(r.snapshot_id)


def test_without_a_cache_folder_nothing_is_spliced_or_kept(tmp_path, spliced):
    src = make_tree(tmp_path / "Data", TREE)
    first = backup_path(tmp_path / "set", [src], workers=1)
    r = _journal_run(tmp_path, src, first.snapshot_id)
    assert r.scan == "journal" and spliced[0] == 0


def test_a_parent_rewritten_on_the_drive_is_read_the_validating_way(tmp_path, spliced):
    """Another valid manifest in the parent's place (other bytes, its own trailer): its hash is not
    the recorded one, so it is read entry by entry and nothing is spliced; the run ends as it
    would without a cache folder."""
    src, set_path, first = _first(tmp_path)

    def touch(entries):
        e = next(e for e in entries if e.path == "Data/d2/b.txt")
        e.mtime_ns += 1                 # the next run reads the file again

    _rewrite(set_path, first, touch)
    r = _journal_run(tmp_path, src, first, cache=tmp_path / "cache")
    assert spliced[0] == 0 and r.scan == "journal"
    assert (set_path / "Latest.sha256").read_bytes() == _expected_sums(set_path)
    again = _journal_run(tmp_path, src, r.snapshot_id, cache=tmp_path / "cache")   # the run's own: spliced
    assert spliced[0] > 0 and again.files_copied == 0


@pytest.mark.parametrize("edit", ["unsafe path", "truncated"])
def test_a_damaged_parent_is_reported_as_without_a_cache_folder(tmp_path, edit):
    outcomes = []
    for cache in (tmp_path / "cache", None):
        base = tmp_path / ("with" if cache else "without")
        src, set_path, first = _first(base)
        path = SetLayout(set_path).manifest(first)
        if edit == "unsafe path":
            _rewrite(set_path, first, lambda entries: setattr(entries[-1], "mirror", "../../outside"))
        else:
            path.write_bytes(path.read_bytes()[:-40])
        r = _journal_run(base, src, first, cache=cache and base / "cache")
        outcomes.append((r.scan, [w.code for w in r.warnings], r.files_copied))
    assert outcomes[0] == outcomes[1]
    assert WarningCode.SNAPSHOT_DAMAGED in outcomes[0][1]


def test_latest_sums_edited_on_the_drive_is_not_spliced(tmp_path):
    src, set_path, first = _first(tmp_path)
    sums = set_path / "Latest.sha256"
    before = sums.stat()
    sums.write_bytes(sums.read_bytes().replace(b"Data/d3/b.txt", b"Data/d3/B.txt"))   # same size
    os.utime(sums, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))   # (an edit one second later)
    _journal_run(tmp_path, src, first, cache=tmp_path / "cache")
    assert sums.read_bytes() == _expected_sums(set_path)


def test_an_encrypted_set_splices_its_plaintext(tmp_path, spliced):
    from core.agent.keys import Secret, make_unlocker
    from tests.support.engine import verify_path

    unlock = make_unlocker(Secret.passphrase("pw"))
    src, set_path, first = _first(tmp_path, passphrase="pw")
    r = _journal_run(tmp_path, src, first, cache=tmp_path / "cache", unlock=unlock)
    assert r.scan == "journal" and r.files_copied == 1 and spliced[0] > 0
    assert verify_path(set_path, unlock=unlock, read_all=True).ok
    assert all(e.get("obj") for e in _entries(set_path, unlock) if e["type"] == "f")


def test_the_record_is_local_small_and_refuses_what_it_cannot_use(tmp_path):
    set_id = "0f2c6c4e-3b8c-4a8e-9f1e-2b7a1d9c5e40"
    record = TrustRecord(tmp_path / "cache", set_id)
    ids = [f"20261126T0900{i:02d}Z-abcd" for i in range(KEEP + 3)]
    sums = SumsState(97, 1, 2, 1, [0])
    for sid in ids:
        record.record(sid, "a" * 64, sums)
    assert record.hash_of(ids[0]) is None and record.sums_of(ids[-2]) is None   # (the newest only)
    assert record.hash_of(ids[-1]) == "a" * 64 and record.sums_of(ids[-1]) == sums
    assert len(json.loads(record.path.read_text())["snapshots"]) == KEEP
    record.path.write_text("{not json")
    assert record.hash_of(ids[-1]) is None
    record.path.write_text(json.dumps({"snapshots": {ids[-1]: {"manifest": "not a hash"}, "../x": {}}}))
    assert record.hash_of(ids[-1]) is None
    assert TrustRecord(tmp_path / "cache", "../../etc").path is None   # a drive's set id names no file
    assert TrustRecord(None, set_id).hash_of(ids[-1]) is None


def test_run_end_is_the_first_line_outside_the_folder():
    for n_in in range(0, 9):
        for n_after in range(0, 4):
            lines = [b'{"path":"x/a","type":"d"}'] + [b'{"path":"x/a/%d","type":"f"}' % i for i in range(n_in)]
            lines += [b'{"path":"x/b%d","type":"f"}' % i for i in range(n_after)]
            buf = b"".join(line + b"\n" for line in lines)
            head = splice.HEAD + splice.encoded("x/a/")
            start = len(lines[0]) + 1
            want = start + sum(len(line) + 1 for line in lines[1:1 + n_in])
            if n_in:
                assert splice._run_end(buf, start, len(buf), head) == want


def test_raw_blocks_are_the_entry_lines_and_check_the_trailer():
    m = Manifest("20261126T090000Z-abcd", "2026-11-26T09:00:00+00:00", "h", "j", [{"path": "/d", "name": "d"}],
                 None, entries=[Entry("d", "d")] + [Entry(f"d/f{i}", "f", 1, 2, 0o644, "0" * 64) for i in range(500)])
    data = manifest_io.encode(m)
    text = gzip.decompress(data)
    reader = manifest_io.ManifestReader(io.BytesIO(data))
    blocks = b"".join(reader.raw_blocks())
    lines = text.split(b"\n")
    assert blocks == b"\n".join(lines[1:-2]) + b"\n"
    assert reader.digest == hashlib.sha256(b"\n".join(lines[:-2]) + b"\n").hexdigest()
    edited = gzip.compress(text.replace(b'"d/f7"', b'"d/f8"'))
    with pytest.raises(ManifestDamaged):
        b"".join(manifest_io.ManifestReader(io.BytesIO(edited)).raw_blocks())
