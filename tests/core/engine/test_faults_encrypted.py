"""The source-read faults of tests/core/engine/test_windows_fs.py on both of the backup's reads
(issue #11): an encrypted set reads a file under ``store.WHOLE_BYTES`` with ``store.read_whole``
(sealed in one call), any other file with ``store.read_source``; tests/support/winfaults.py wraps
both, and each test checks which one its fault met, so a fault that missed its path fails it."""

from __future__ import annotations

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import store
from core.engine.backup import BackupStatus
from core.engine.progress import FakeClock, WarningCode
from core.engine.sourceread import LOCKED_DELAYS, SOURCE_RETRIES, SOURCE_RETRY_DELAY
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree
from tests.support.winfaults import LockedSources, failing_reads

UNLOCK = make_unlocker(Secret.passphrase("pw"))
BIG = b"m" * store.WHOLE_BYTES   # read by read_source in an encrypted set too (streamed)

# (set kind, the locked file's content, the read it takes)
CASES = [
    pytest.param("plain", b"mail", "read_source", id="plain"),
    pytest.param("encrypted", b"mail", "read_whole", id="encrypted-small"),
    pytest.param("encrypted", BIG, "read_source", id="encrypted-big"),
]


def _backup(kind: str, set_path, src, **options):
    first = not set_path.exists()
    secret = {"passphrase": "pw"} if first else {"unlock": UNLOCK}
    return backup_path(set_path, [src], **(secret if kind == "encrypted" else {}), **options)


def _restored(kind: str, set_path, out, **options) -> dict:
    restore_path(set_path, out, **({"unlock": UNLOCK} if kind == "encrypted" else {}), **options)
    return read_tree(out / "Data")


@pytest.mark.parametrize("kind,content,read", CASES)
def test_locked_file_is_retried_then_read(tmp_path, monkeypatch, kind, content, read):
    src = make_tree(tmp_path / "Data", {"db.pst": content, "a.txt": b"a"})
    locked = LockedSources(monkeypatch, [src / "db.pst"], first=1, last=2)   # released on the third open
    clock = FakeClock()
    r = _backup(kind, tmp_path / "set", src, clock=clock, workers=1)
    assert r.status is BackupStatus.OK and r.warnings == []
    assert locked.reads == {read: 3}   # the fault met the read this file takes, each time
    assert clock.monotonic() == pytest.approx(sum(LOCKED_DELAYS[:2]))
    assert _restored(kind, tmp_path / "set", tmp_path / "out") == read_tree(src)


@pytest.mark.parametrize("kind,content,read", CASES)
def test_file_locked_all_along_is_skipped_with_a_warning(tmp_path, monkeypatch, kind, content, read):
    src = make_tree(tmp_path / "Data", {"db.pst": content, "a.txt": b"a", "sub/b.txt": b"b"})
    locked = LockedSources(monkeypatch, [src / "db.pst"])
    clock = FakeClock()
    r = _backup(kind, tmp_path / "set", src, clock=clock, workers=1)
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LOCKED, str(src / "db.pst"))]
    assert locked.reads == {read: len(LOCKED_DELAYS) + 1}
    assert clock.monotonic() == pytest.approx(sum(LOCKED_DELAYS))
    assert _restored(kind, tmp_path / "set", tmp_path / "out") == {"a.txt": b"a", "sub/b.txt": b"b"}


@pytest.mark.parametrize("kind,content,read", CASES)
def test_locked_changed_file_keeps_its_previous_version(tmp_path, monkeypatch, kind, content, read):
    src = make_tree(tmp_path / "Data", {"db.pst": content, "a.txt": b"a"})
    set_path = tmp_path / "set"
    _backup(kind, set_path, src)
    (src / "db.pst").write_bytes(content + b" v2")
    locked = LockedSources(monkeypatch, [src / "db.pst"])
    r = _backup(kind, set_path, src, clock=FakeClock(), workers=1)
    assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.LOCKED, str(src / "db.pst"))]
    assert set(locked.reads) == {read}
    assert _restored(kind, set_path, tmp_path / "out", snapshot=r.snapshot_id) == {"db.pst": content, "a.txt": b"a"}


@pytest.mark.parametrize("kind", ["plain", "encrypted"])
def test_unreadable_small_file_is_retried_and_skipped_in_both_modes(tmp_path, monkeypatch, kind):
    src = make_tree(tmp_path / "Data", {"x.bin": b"x"})
    failing_reads(monkeypatch, PermissionError(13, "Permission denied", str(src / "x.bin")))
    clock = FakeClock()
    r = _backup(kind, tmp_path / "set", src, clock=clock, workers=1)
    assert [w.code for w in r.warnings] == [WarningCode.UNREADABLE]
    assert clock.monotonic() == pytest.approx((SOURCE_RETRIES - 1) * SOURCE_RETRY_DELAY)
