"""The check a small object passes before it joins a pack (core/engine/remote/backup.py
``_check_sealed``, through ``crypto.check_whole``): a sealing or memory fault stops the run
before anything names the object, and what is checked is what a restore would accept."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.engine import crypto
from core.engine.progress import Clock
from core.engine.remote import packs
from core.engine.remote.backup import backup
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet
from core.engine.storage import LocalBackend
from core.errors import EncryptedDataDamaged, ObjectNameMismatch, PlugbackError
from tests.support.trees import make_tree, read_tree

KEYS = crypto.SetKeys.from_master(bytes(range(32)), version=2)


def _name(keys, data: bytes) -> str:
    hasher = keys.object_hasher()
    hasher.update(data)
    return hasher.hexdigest()


CONTENTS = {
    "empty": b"",
    "random (stored raw)": os.urandom(5000),
    "text (zstd)": b"the same words again and again " * 400,
    "two chunks": os.urandom(crypto.CHUNK_SIZE + 10),
}


@pytest.mark.parametrize("keys", [KEYS, crypto.SetKeys.from_master(bytes(range(32)), version=1)],
                         ids=["format 2", "format 1"])
@pytest.mark.parametrize("what", list(CONTENTS))
def test_check_whole_accepts_a_sealed_stream_and_refuses_any_flipped_byte_or_other_name(keys, what):
    data = CONTENTS[what]
    stream = crypto.seal_whole(keys, data)
    crypto.check_whole(keys, stream, _name(keys, data), name="x", max_size=len(data))
    for at in (0, crypto.HEADER_LEN - 1, crypto.HEADER_LEN, len(stream) - 1):
        bad = bytearray(stream)
        bad[at] ^= 0x01
        with pytest.raises(EncryptedDataDamaged):
            crypto.check_whole(keys, bytes(bad), _name(keys, data), name="x", max_size=len(data))
    with pytest.raises(ObjectNameMismatch):
        crypto.check_whole(keys, stream, _name(keys, data + b"!"), name="x", max_size=len(data))


def test_check_whole_refuses_a_compressed_stream_that_expands_past_its_size():
    data = CONTENTS["text (zstd)"]
    stream = crypto.seal_whole(KEYS, data)
    assert stream[9] == crypto.ZSTD
    with pytest.raises(EncryptedDataDamaged):
        crypto.check_whole(KEYS, stream, _name(KEYS, data), name="x", max_size=len(data) - 1)


@pytest.mark.parametrize("keys", [KEYS, crypto.SetKeys.from_master(bytes(range(32)), version=1)],
                         ids=["format 2", "format 1"])
@pytest.mark.parametrize("what", list(CONTENTS))
def test_coding_ahead_then_sealing_gives_seal_whole_s_very_bytes(keys, what):
    data, nonce = CONTENTS[what], bytes(range(crypto.FILE_NONCE_LEN))
    coding, payload = crypto.code_whole(data, keys.version)
    assert coding == (crypto.ZSTD if what == "text (zstd)" and keys.version >= 2 else crypto.RAW)
    assert crypto.seal_coded(keys, coding, payload, file_nonce=nonce) == crypto.seal_whole(keys, data, file_nonce=nonce)
    if keys.version < 2:
        with pytest.raises(ValueError):
            crypto.seal_coded(keys, crypto.ZSTD, payload)


def _flip_ciphertext(real):
    def seal(keys, *args, **kw):
        blob = bytearray(real(keys, *args, **kw))
        blob[-1] ^= 0x40      # the tag: the stream no longer authenticates
        return bytes(blob)
    return seal


def _other_content(real):
    def seal(keys, *args, **kw):
        changed = bytearray(args[-1])
        changed[len(changed) // 2] ^= 0x01   # the content (or its coded payload) is not what was read
        return real(keys, *args[:-1], bytes(changed), **kw)
    return seal


def _files() -> dict[str, bytes]:
    """Small files, every other one compressible (coded with zstd)."""
    return {f"f{i}.txt": (b"line %d of a small file\n" % i) * 50 if i % 2 else os.urandom(700 + i)
            for i in range(20)}


def _ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plugback-ahead"]


def _unlock_after_the_reads_ahead(enc, set_id):
    """As a long scrypt: the key comes once the read-ahead thread read (and coded) every file."""
    deadline = time.monotonic() + 60
    while _ahead_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return crypto.unlock_with_passphrase(enc, "pw")


def _open(tmp_path, mode: str) -> RemoteSet:
    if mode == "new set":
        return RemoteSet.create(LocalBackend(tmp_path / "set"), Clock().now(), "pw")
    (tmp_path / "empty").mkdir()
    backup(RemoteSet.create(LocalBackend(tmp_path / "set"), Clock().now(), "pw"), [tmp_path / "empty"])
    return RemoteSet.open_started(LocalBackend(tmp_path / "set"), _unlock_after_the_reads_ahead)


@pytest.mark.parametrize("mode", ["new set", "existing set: coded ahead"])
@pytest.mark.parametrize("fault", [_flip_ciphertext, _other_content], ids=["flipped byte", "other content"])
def test_a_sealing_fault_stops_the_run_before_anything_names_the_object(tmp_path, monkeypatch, fault, mode):
    src = make_tree(tmp_path / "src" / "Docs", _files())
    rset = _open(tmp_path, mode)
    sealers = {f: getattr(crypto, f) for f in ("seal_whole", "seal_coded")}
    for f, real in sealers.items():
        monkeypatch.setattr(crypto, f, fault(real))
    with pytest.raises(PlugbackError, match="did not decrypt back to the content read") as raised:
        backup(rset, [src])
    assert str(src) in str(raised.value)                          # it says which file
    backend = LocalBackend(tmp_path / "set")
    assert len(list(backend.list("snapshots"))) == (0 if mode == "new set" else 1)   # no new snapshot
    assert not list(backend.list(packs.INDEX_DIR))               # no index names it
    assert not list(backend.list(packs.PACKS_DIR))               # no pack holds it

    calls: list[str] = []
    for f, real in sealers.items():
        monkeypatch.setattr(crypto, f, lambda *a, f=f, real=real, **kw: calls.append(f) or real(*a, **kw))
    again = RemoteSet.open_started(backend, _unlock_after_the_reads_ahead)
    assert backup(again, [src]).files_copied == 20               # the next run completes
    assert calls == ["seal_coded"] * 20                          # every file coded ahead, then sealed
    assert not restore(again, tmp_path / "out").damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
