"""The encrypted read-back's check of one small object (core/engine/objcheck.py ``check_object``,
run by the read-back's thread and by the seal workers): the object is read to its ``fstat`` size and
no further (no read at its end, as the plain read-back since ``small6``); one of the wrong size is
still told, one too big without a read, one cut after its ``fstat`` by its authentication."""

from __future__ import annotations

import hashlib
import os

import pytest

from core.engine import objcheck, sealpool
from tests.support.engine import sealed_object

CONTENT = {"text": b"some words zstd shrinks\n" * 400, "random": os.urandom(3000), "empty": b""}


@pytest.fixture
def worker(tmp_path):
    return sealpool.Worker(os.urandom(32), 2, str(tmp_path / "w-"))


def _stored(worker, tmp_path, data: bytes) -> tuple[str, str, str, int]:
    return sealed_object(worker, tmp_path, "source", data)


@pytest.fixture
def reads(monkeypatch):
    """Every read check_object makes: (descriptor, bytes asked for, bytes read)."""
    seen: list[tuple[int, int, int]] = []
    real = objcheck.read_into

    def counted(fd, buf):
        n = real(fd, buf)
        seen.append((fd, len(buf), n))
        return n

    monkeypatch.setattr(objcheck, "read_into", counted)
    return seen


def _check(worker, stored, buf) -> str | None:
    path, obj, sha, size = stored
    opened = objcheck.open_copy([path])
    assert not isinstance(opened, str), opened
    return objcheck.check_object(worker.keys, opened, buf, obj, sha, size, named=True)


@pytest.mark.parametrize("kind", sorted(CONTENT))
def test_a_sound_object_is_read_in_one_read_to_its_size(worker, tmp_path, reads, kind):
    """The old code read until a read came back empty: two reads for every object."""
    stored = _stored(worker, tmp_path, CONTENT[kind])
    buf = memoryview(bytearray(objcheck.SMALL_OBJECT + 1))
    assert _check(worker, stored, buf) is None
    assert [(asked, got) for _, asked, got in reads] == [(os.path.getsize(stored[0]),) * 2]
    assert hashlib.sha256(CONTENT[kind]).hexdigest() == stored[2]


def test_an_object_too_big_for_a_small_file_is_damage_without_a_read(worker, tmp_path, reads):
    stored = _stored(worker, tmp_path, CONTENT["text"])
    with open(stored[0], "ab") as f:
        f.write(bytes(objcheck.SMALL_OBJECT))
    buf = memoryview(bytearray(objcheck.SMALL_OBJECT + 1))
    assert "stored copy is bigger than" in _check(worker, stored, buf)
    assert reads == []   # (the old code read SMALL_OBJECT + 1 bytes of it first)


@pytest.mark.parametrize("change", ["grown", "cut", "cut after its fstat"])
def test_an_object_of_another_size_is_still_damage(worker, tmp_path, reads, change):
    """Grown (its first bytes the right ones: the copy placed, then more written to it) or cut,
    before the read-back opened it or between its ``fstat`` and its read (a short read)."""
    path, obj, sha, size = stored = _stored(worker, tmp_path, CONTENT["random"])
    good = open(path, "rb").read()
    buf = memoryview(bytearray(objcheck.SMALL_OBJECT + 1))
    if change == "cut after its fstat":
        opened = objcheck.open_copy([path])
        os.truncate(path, len(good) - 7)
        problem = objcheck.check_object(worker.keys, opened, buf, obj, sha, size, named=True)
        assert reads[-1][1:] == (7, 0)   # asked for the 7 bytes left, got the end of the file
    else:
        with open(path, "wb") as f:
            f.write(good + b"more" if change == "grown" else good[:-1])
        problem = _check(worker, stored, buf)
    assert problem is not None and "damaged" in problem, problem


def test_a_descriptor_list_without_a_size_is_read_to_its_end(worker, tmp_path, reads):
    """(A caller that opened the object itself: read until a read comes back empty, as before.)"""
    path, obj, sha, size = _stored(worker, tmp_path, CONTENT["text"])
    buf = memoryview(bytearray(objcheck.SMALL_OBJECT + 1))
    fd = os.open(path, os.O_RDONLY)
    assert objcheck.check_object(worker.keys, [fd], buf, obj, sha, size, named=True) is None
    assert [got for _, _, got in reads] == [os.path.getsize(path), 0]
