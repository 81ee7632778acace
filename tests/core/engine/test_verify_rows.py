"""``verify`` gives the newest snapshot's files that ``objects/`` does not hold no row in its
scratch table (``verify._Contents.add_manifest``, ``latest``): they are checked in ``Latest/``.

The report must be the one of before, when every file had its row: each case damages a real
set whose snapshots differ (so older manifests share contents with the newest, and are
decoded after or before it), then verifies it twice, as verify does and with every row added;
the two reports must be equal.
"""

from __future__ import annotations

import pytest

from core.engine import verify, verify_latest
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree

FILES = {f"d{d}/n{i}.txt": f"file {d} {i} ".encode() * (i + 1) for d in range(3) for i in range(4)}


@pytest.fixture(params=["changes only", "then no change"])
def changed(request, tmp_path):
    """Snapshots: every file; top.txt changed and gone.txt deleted (both kept as objects); d0/n0
    changed and new.txt added; with "then no change", a no-change backup (a group of two)."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1", "gone.txt": b"gone"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"top v2")
    (src / "gone.txt").unlink()
    backup_path(set_path, [src])
    (src / "d0" / "n0.txt").write_bytes(b"n0 v2")
    (src / "new.txt").write_bytes(b"new")
    backup_path(set_path, [src])
    if request.param == "then no change":
        backup_path(set_path, [src])
    return set_path


def _flip(p):
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))


def _manifests(set_path):
    return sorted((set_path / "snapshots").glob("*.json.gz"))


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 9])


DAMAGE = {
    "none": lambda s: None,
    "every object flipped": lambda s: [_flip(p) for p in (s / "objects").rglob("*") if p.is_file()],
    "a Latest/ file flipped": lambda s: _flip(s / "Latest" / "Data" / "d1" / "n2.txt"),
    "a Latest/ file shared with every snapshot removed": lambda s: (s / "Latest" / "Data" / "d2" / "n1.txt").unlink(),
    "the newest manifest truncated": lambda s: _truncate(_manifests(s)[-1]),
    "the first manifest truncated": lambda s: _truncate(_manifests(s)[0]),
}


def _report(set_path, **options):
    r = verify_path(set_path, **options)
    return r.damaged, r.contents, r.bytes_read, r.snapshots, r.notices


@pytest.mark.parametrize("read_all", [False, True])   # (--read-all: Latest/ read by the worker processes)
@pytest.mark.parametrize("case", DAMAGE)
def test_the_report_is_the_one_of_a_row_per_file(changed, monkeypatch, case, read_all):
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    DAMAGE[case](changed)
    used = []
    add = verify._Contents.add_manifest

    def spy(self, bset, sid, index, entries, cancel=None, latest=None):
        used.append(latest)
        return add(self, bset, sid, index, entries, cancel, latest)

    monkeypatch.setattr(verify._Contents, "add_manifest", spy)
    fewer = _report(changed, read_all=read_all)
    if case == "none":   # the newest (or its group's first) without rows, its keys kept for the others
        assert [latest.keys for latest in used if latest is not None] == [True]
    monkeypatch.setattr(verify._Contents, "add_manifest",
                        lambda self, bset, sid, index, entries, cancel=None, latest=None:
                        add(self, bset, sid, index, entries, cancel))
    every = _report(changed, read_all=read_all)
    assert fewer == every
    if case != "none" and (read_all or "flipped" not in case):   # (a quick verify checks sizes)
        assert fewer[0]


def test_a_set_of_one_snapshot_keeps_no_keys(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src" / "Data", FILES)
    backup_path(tmp_path / "set", [src])
    backup_path(tmp_path / "set", [src])   # (a group: both hold the same lines)
    used = []
    add = verify._Contents.add_manifest

    def spy(self, *args):
        used.append(args[-1])
        return add(self, *args)

    monkeypatch.setattr(verify._Contents, "add_manifest", spy)
    r = verify_path(tmp_path / "set", read_all=True)
    assert r.ok and r.contents == len(FILES) and r.snapshots == 2
    assert len(used) == 1 and used[0] is not None and not used[0].keys
