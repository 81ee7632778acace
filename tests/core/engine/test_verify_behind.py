"""``verify --read-all`` with the ``Latest/`` readers: the manifest work runs beside them in a thread of
lower CPU priority (core/engine/verify_latest.py, ``behind``), and everything it raises or reports
reaches the caller as before; the caller's own priority is left alone."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from core.engine import verify, verify_latest
from core.engine.progress import CancelToken
from core.errors import Cancelled, DamagedSet
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value: Linux only")


def _nice() -> int:
    if sys.platform == "win32":
        return 0
    return os.getpriority(os.PRIO_PROCESS, 0)   # (Linux: the calling thread's)


@pytest.fixture
def plain(tmp_path):
    """A plain set with two snapshots (one file changed: an object), read by the workers (POOL_FROM 0)."""
    src = make_tree(tmp_path / "src" / "Data", {f"d{i}/f{j}.txt": f"{i} {j} ".encode() * 9 for i in range(3)
                                                for j in range(4)} | {"top.txt": b"v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"v2")
    backup_path(set_path, [src])
    return set_path


@linux
def test_the_manifests_are_read_at_a_lower_priority_beside_the_readers(plain, monkeypatch):
    """Fails on the old code: there the manifests were read in the calling thread, at its priority."""
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    seen = []
    real = verify._read_manifests

    def spy(*args, **kwargs):
        seen.append((threading.current_thread() is threading.main_thread(), _nice()))
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "_read_manifests", spy)
    before = _nice()
    result = verify_path(plain, read_all=True)
    assert result.ok and result.contents == 14, result.damaged
    assert seen == [(False, min(19, before + verify_latest.NICER))]
    assert _nice() == before   # the caller's thread keeps its priority


def test_without_the_readers_the_manifests_are_read_in_the_calling_thread(plain, monkeypatch):
    monkeypatch.setattr(verify_latest, "POOL_FROM", 10 ** 9)
    seen = []
    real = verify._read_manifests

    def spy(*args, **kwargs):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "_read_manifests", spy)
    assert verify_path(plain, read_all=True).ok
    assert seen == [True]


def test_a_damaged_manifest_is_named_as_before(plain, monkeypatch):
    """The older snapshot's manifest damaged: the report read behind the readers names it."""
    monkeypatch.setattr(verify_latest, "POOL_FROM", 0)
    oldest = sorted((plain / "snapshots").glob("*.json.gz"))[0]
    data = bytearray(oldest.read_bytes())
    data[len(data) // 2] ^= 0x40
    oldest.write_bytes(bytes(data))
    result = verify_path(plain, read_all=True)
    assert [what for what, _ in result.damaged] == [f"snapshots/{oldest.name.removesuffix('.json.gz')}"]


def test_what_the_work_raises_or_returns_reaches_the_caller():
    assert verify_latest.behind(lambda token: 42, CancelToken()) == 42

    def damaged(token):
        raise DamagedSet(what="x")

    with pytest.raises(DamagedSet):
        verify_latest.behind(damaged, CancelToken())


def test_the_callers_cancel_reaches_the_work():
    outer = CancelToken()
    started, checked = threading.Event(), []

    def work(token):
        started.set()
        while True:
            try:
                token.check()
            except Cancelled:
                checked.append(token.cancelled)
                raise
            threading.Event().wait(0.01)

    threading.Timer(0.05, outer.cancel).start()
    with pytest.raises(Cancelled):
        verify_latest.behind(work, outer)
    assert started.is_set() and checked == [True]
