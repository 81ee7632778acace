"""The check a small object passes before it joins a pack (core/engine/remote/backup.py
``_check_sealed``, through ``crypto.check_whole``): a sealing or memory fault stops the run
before anything names the object, and what is checked is what a restore would accept."""

from __future__ import annotations

import os

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


def _flip_ciphertext(real):
    def seal(keys, data, **kw):
        blob = bytearray(real(keys, data, **kw))
        blob[-1] ^= 0x40      # the tag: the stream no longer authenticates
        return bytes(blob)
    return seal


def _other_content(real):
    def seal(keys, data, **kw):
        changed = bytearray(data)
        changed[len(changed) // 2] ^= 0x01   # authentic, but not the content that names it
        return real(keys, bytes(changed), **kw)
    return seal


@pytest.mark.parametrize("fault", [_flip_ciphertext, _other_content], ids=["flipped byte", "other content"])
def test_a_sealing_fault_stops_the_run_before_anything_names_the_object(tmp_path, monkeypatch, fault):
    files = {f"f{i}.txt": (b"line %d of a small file\n" % i) * 50 for i in range(20)}
    src = make_tree(tmp_path / "src" / "Docs", files)
    rset = RemoteSet.create(LocalBackend(tmp_path / "set"), Clock().now(), "pw")
    real = crypto.seal_whole
    monkeypatch.setattr(crypto, "seal_whole", fault(real))
    with pytest.raises(PlugbackError, match="did not decrypt back to the content read") as raised:
        backup(rset, [src])
    assert str(src) in str(raised.value)                          # it says which file
    backend = LocalBackend(tmp_path / "set")
    assert not list(backend.list("snapshots"))                   # no snapshot names it
    assert not list(backend.list(packs.INDEX_DIR))               # no index names it
    assert not list(backend.list(packs.PACKS_DIR))               # no pack holds it

    monkeypatch.setattr(crypto, "seal_whole", real)
    again = RemoteSet.open(backend, lambda enc, sid: crypto.unlock_with_passphrase(enc, "pw"))
    assert backup(again, [src]).files_copied == 20               # the next run completes
    assert not restore(again, tmp_path / "out").damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
