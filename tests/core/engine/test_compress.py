"""zstd in the encrypted stream of format-2 sets (core/engine/compress.py, crypto_stream.py).

The stream alone: what is compressed and what not, round trips, the vectors of
docs/encryption.md, and hostile streams (bomb, bad or cut frame, flags where they do
not belong). Whole sets on disk: backup, restore, verify (with and without --read-all,
which stays exact through the manifest's ``stored``), damage, and format-1 sets.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from core.agent.keys import Secret, make_unlocker
from core.engine import compress, crypto, crypto_stream
from core.engine.backup import BackupOptions
from core.engine.crypto import DecryptingReader, SetKeys, decrypt_bytes, encrypt_bytes, encrypted_size
from core.engine.manifest import parse_entry
from core.engine.repo import BackupSet
from core.engine.retention import RetentionPolicy
from core.errors import EncryptedDataDamaged, ManifestDamaged, ObjectNameMismatch
from tests.support.engine import backup_path, forget_path, open_set, restore_path, verify_path
from tests.support.faults import Crash, FaultyFS
from tests.support.trees import make_tree, read_tree

VECTORS = json.loads((Path(__file__).parent / "vectors" / "stream-v2.json").read_text())
TEXT = b"".join(b"line %d of a log that compresses well\n" % i for i in range(60000))   # ~2.3 MB
NOISE = os.urandom(700_000)
UNLOCK = make_unlocker(Secret.passphrase("pw"))


@pytest.fixture
def keys():
    return SetKeys.from_master(os.urandom(32), version=2)


def _coding(blob: bytes) -> tuple[int, int]:
    return blob[8], blob[9]   # stream version, coding


def _stream(keys, payload: bytes, coding: int, chunk_size: int = 64) -> bytes:
    """A version-2 stream sealing ``payload`` as is: for streams the writer never makes."""
    out: list[bytes] = []
    seal = crypto_stream._Sealer(out.append, keys, chunk_size, os.urandom(24), 2, coding)
    seal.write(payload)
    seal.close()
    return b"".join(out)


# --- the stream -----------------------------------------------------------------------------

@pytest.mark.parametrize("data, coding", [
    (b"", crypto.RAW), (b"x", crypto.RAW), (b"ab" * 40, crypto.ZSTD), (NOISE, crypto.RAW),
    (TEXT[:compress.SAMPLE], crypto.ZSTD), (TEXT[:compress.SAMPLE - 1], crypto.ZSTD), (TEXT, crypto.ZSTD),
    (NOISE[:compress.SAMPLE] + TEXT, crypto.RAW),   # decided on the first block, like borg's auto
    (TEXT[:compress.SAMPLE] + NOISE, crypto.ZSTD),
])
@pytest.mark.parametrize("piece", [1000, 1 << 20])
def test_the_first_block_decides_and_everything_round_trips(keys, data, coding, piece):
    out = io.BytesIO()
    writer = crypto.EncryptingWriter(out, keys)
    for i in range(0, len(data), piece):
        writer.write(data[i:i + piece])
    writer.close()
    blob = out.getvalue()
    assert _coding(blob) == (2, coding)
    assert len(blob) == writer.ciphertext_bytes
    if coding == crypto.RAW:
        assert len(blob) == encrypted_size(len(data))
    elif len(data) > 1000:
        assert len(blob) < encrypted_size(len(data)) * 0.9
    name = keys.object_name(hashlib.sha256(data).hexdigest())
    reader = DecryptingReader(io.BytesIO(blob), keys, expected_name=name, max_size=len(data))
    assert b"".join(reader) == data
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
    reader = DecryptingReader(io.BytesIO(blob), keys)
    got = b"".join(iter(lambda: reader.read(777), b""))
    assert got == data


def test_format_1_keys_never_compress_and_forced_modes(keys):
    v1 = SetKeys.from_master(keys.master)
    assert _coding(encrypt_bytes(v1, TEXT)) == (1, 0)
    assert len(encrypt_bytes(v1, TEXT)) == encrypted_size(len(TEXT))
    with pytest.raises(ValueError):
        crypto.EncryptingWriter(io.BytesIO(), v1, compress=True)
    assert _coding(encrypt_bytes(keys, NOISE[:1000], compress=True)) == (2, crypto.ZSTD)
    assert _coding(encrypt_bytes(keys, TEXT, compress=False)) == (2, crypto.RAW)
    for forced in (True, False):
        assert decrypt_bytes(keys, encrypt_bytes(keys, TEXT, compress=forced)) == TEXT
    # A format-2 set reads the format-1 streams it was never given (same keys): harmless, authenticated.
    assert decrypt_bytes(keys, encrypt_bytes(v1, TEXT)) == TEXT


def test_wrong_object_name_is_caught_after_decompression(keys):
    blob = encrypt_bytes(keys, TEXT)
    with pytest.raises(ObjectNameMismatch):
        decrypt_bytes(keys, blob, expected_name=keys.object_name(hashlib.sha256(b"other").hexdigest()))


# --- hostile streams ------------------------------------------------------------------------

def test_decompression_bomb_stops_at_the_recorded_size_with_flat_memory(keys):
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))   # 256 MiB of zeros
    blob = _stream(keys, bomb, crypto.ZSTD, chunk_size=1 << 20)
    assert len(blob) < 40_000
    with pytest.raises(EncryptedDataDamaged, match="expands to more than the 1000 bytes"):
        b"".join(DecryptingReader(io.BytesIO(blob), keys, name="objects/ab", max_size=1000))
    # Without a limit it streams: no block is ever larger than OUT_BLOCK.
    reader = DecryptingReader(io.BytesIO(blob), keys)
    blocks = [len(b) for _, b in zip(range(20), reader, strict=False)]
    assert max(blocks) <= compress.OUT_BLOCK and sum(blocks) == 20 * compress.OUT_BLOCK
    with pytest.raises(EncryptedDataDamaged, match="expands"):
        decrypt_bytes(keys, blob, max_size=5 << 20)   # small metadata (by default MAX_SMALL)


@pytest.mark.parametrize("payload, words", [
    (b"\x00" * 100, "compressed data is damaged"),
    (compress.pack(TEXT)[:-7], "cut short"),
    (compress.pack(TEXT) + b"\x01" * 300, "after the end of its compressed frame"),
    # (Bytes after the frame inside the frame's last chunk are authenticated and never handed out,
    # but not looked at: these start a chunk of their own.)
    (compress.pack(TEXT) + bytes(64) + compress.pack(b"two frames " * 100), "after the end of its compressed frame"),
    (zstandard.ZstdCompressor(level=3, compression_params=zstandard.ZstdCompressionParameters(
        window_log=27)).compress(os.urandom(1 << 20) * 20), "compressed data is damaged"),   # window > 8 MiB
])
def test_bad_frames_are_damage(keys, payload, words):
    blob = _stream(keys, payload, crypto.ZSTD, chunk_size=64 if len(payload) < 1 << 20 else 1 << 20)
    with pytest.raises(EncryptedDataDamaged, match=words) as info:
        b"".join(DecryptingReader(io.BytesIO(blob), keys, name="objects/cd"))
    assert "objects/cd" in str(info.value)


def test_a_flipped_bit_in_a_compressed_stream_is_caught_by_its_chunk(keys):
    blob = bytearray(encrypt_bytes(keys, TEXT, chunk_size=4096))
    blob[len(blob) // 2] ^= 1
    with pytest.raises(EncryptedDataDamaged, match="does not authenticate"):
        decrypt_bytes(keys, bytes(blob))


def test_flags_where_they_do_not_belong(keys):
    v1 = SetKeys.from_master(keys.master)
    v1_blob = bytearray(encrypt_bytes(v1, b"hello"))
    v1_blob[9] = 1   # a compression flag in a version-1 header
    with pytest.raises(EncryptedDataDamaged, match="compression flag in a format-1 stream"):
        decrypt_bytes(v1, bytes(v1_blob))
    with pytest.raises(EncryptedDataDamaged, match="version-2 stream in a format-1 set"):
        decrypt_bytes(v1, encrypt_bytes(keys, TEXT))
    for where, value in ((9, 2), (10, 1), (11, 1)):   # an unknown coding, the reserved bytes
        blob = bytearray(encrypt_bytes(keys, TEXT))
        blob[where] = value
        with pytest.raises(EncryptedDataDamaged, match="header is damaged"):
            decrypt_bytes(keys, bytes(blob))
    # The coding byte is in every chunk's AAD: switching it is caught even where the header parses.
    blob = bytearray(encrypt_bytes(keys, TEXT))
    blob[9] = crypto.RAW
    with pytest.raises(EncryptedDataDamaged, match="does not authenticate"):
        decrypt_bytes(keys, bytes(blob))


# --- known-answer vectors (docs/encryption.md, "Format 2") ---------------------------------------

def independent_decrypt_v2(master: bytes, blob: bytes) -> bytes:
    """A format-2 decryptor from docs/encryption.md alone (no core.engine code): version-1
    chunks over the payload, then zstd when byte 9 says so."""
    content_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"plugback v1 content key").derive(master)
    magic, version, coding, reserved, chunk_size, file_nonce = struct.unpack(">8sBB2sI24s", blob[:40])
    assert (magic, version, reserved) == (b"PLUGBACK", 2, b"\0\0") and coding in (0, 1)
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=file_nonce[:16],
                    info=b"plugback v1 file key").derive(content_key)
    aead, rec, body, out = AESGCM(file_key), chunk_size + 16, blob[40:], []
    count = max(1, -(-len(body) // rec))
    for i in range(count):
        aad = blob[:40] + i.to_bytes(8, "big") + bytes([i == count - 1])
        out.append(aead.decrypt(file_nonce[16:] + i.to_bytes(4, "big"), body[i * rec:(i + 1) * rec], aad))
    payload = b"".join(out)
    return zstandard.ZstdDecompressor().decompressobj().decompress(payload) if coding == 1 else payload


@pytest.mark.parametrize("case", VECTORS["streams"], ids=lambda c: c["label"])
def test_stream_v2_known_answer_vectors(case):
    master = bytes.fromhex(VECTORS["master_key"])
    keys = SetKeys.from_master(master, 2)
    plaintext, blob = bytes.fromhex(case["plaintext"]), bytes.fromhex(case["ciphertext"])
    payload, nonce = bytes.fromhex(case["payload"]), bytes.fromhex(case["file_nonce"])
    assert decrypt_bytes(keys, blob, expected_name=case["object_name"]) == plaintext
    assert independent_decrypt_v2(master, blob) == plaintext
    assert blob[9] == case["coding"] and (case["coding"] == 1) == (payload != plaintext)
    # The format is pinned on the payload: zstd may pack the same text differently some day.
    out: list[bytes] = []
    seal = crypto_stream._Sealer(out.append, keys, case["chunk_size"], nonce, 2, case["coding"])
    seal.write(payload)
    seal.close()
    assert b"".join(out) == blob
    if case["coding"] == 0:
        assert encrypt_bytes(keys, plaintext, file_nonce=nonce, chunk_size=case["chunk_size"]) == blob


def test_v2_encryption_member_unwraps_to_the_vector_master_key():
    enc = VECTORS["encryption"]
    assert enc["version"] == 2
    keys = crypto.unlock_with_passphrase(enc, VECTORS["passphrase"])
    assert keys.master.hex() == VECTORS["master_key"] and keys.version == 2


# --- whole sets on disk -----------------------------------------------------------------------

TREE = {"docs/log.txt": TEXT, "docs/note.txt": b"short note " * 30, "media/noise.bin": NOISE,
        "media/tiny.bin": b"\x01\x02", "empty.txt": b""}


def _objects(set_path: Path) -> dict[str, Path]:
    return {p.name: p for p in (set_path / "objects").rglob("*") if p.is_file()}


def _entries(set_path: Path, sid: str) -> dict:
    with open_set(set_path, UNLOCK).open_manifest(sid) as reader:
        return {e.path: e for e in reader}


@pytest.fixture
def zset(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", TREE)
    set_path = tmp_path / "set"
    result = backup_path(set_path, [src], passphrase="pw")
    return src, set_path, result.snapshot_id


def test_set_round_trip_compresses_only_what_pays(zset, tmp_path):
    src, set_path, sid = zset
    assert json.loads((set_path / "plugback.json").read_text())["encryption"]["version"] == 2
    entries, objects = _entries(set_path, sid), _objects(set_path)
    log, noise = entries["Data/docs/log.txt"], entries["Data/media/noise.bin"]
    assert 0 < log.stored == objects[log.obj].stat().st_size < len(TEXT) // 5
    assert noise.stored == 0 and objects[noise.obj].stat().st_size == encrypted_size(len(NOISE))
    assert entries["Data/empty.txt"].stored == 0
    out = tmp_path / "out"
    assert not restore_path(set_path, out, unlock=UNLOCK).damaged
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, unlock=UNLOCK).ok
    assert verify_path(set_path, read_all=True, unlock=UNLOCK).ok


def test_verify_stays_exact_for_compressed_objects(zset):
    _, set_path, sid = zset
    obj = _objects(set_path)[_entries(set_path, sid)["Data/docs/log.txt"].obj]
    original = obj.read_bytes()
    obj.write_bytes(original[:-1])   # one byte short: no read needed to see it
    result = verify_path(set_path, unlock=UNLOCK)
    assert [p for p, _ in result.damaged] and "log.txt" in result.damaged[0][0]
    assert f"instead of {len(original)}" in result.damaged[0][1]
    obj.write_bytes(original)
    data = bytearray(original)
    data[len(data) // 2] ^= 4
    obj.write_bytes(bytes(data))   # same size: only --read-all sees it
    assert verify_path(set_path, unlock=UNLOCK).ok
    damaged = verify_path(set_path, read_all=True, unlock=UNLOCK).damaged
    assert len(damaged) == 1 and "does not authenticate" in damaged[0][1]


def test_a_bomb_in_place_of_an_object_is_damage_and_restores_nothing(zset, tmp_path):
    _, set_path, sid = zset
    note = _entries(set_path, sid)["Data/docs/note.txt"]
    obj = _objects(set_path)[note.obj]
    bset = open_set(set_path, UNLOCK)
    # Written with the set's own keys (a key holder's forgery): authentic, but it expands to 64 MiB.
    obj.write_bytes(_stream(bset.keys, compress.pack(bytes(64 << 20)), crypto.ZSTD, chunk_size=crypto.CHUNK_SIZE))
    damaged = verify_path(set_path, unlock=UNLOCK).damaged   # its size differs from the recorded one
    assert [p for p, _ in damaged] == [f"Data/docs/note.txt ({sid})"]
    out = tmp_path / "out"
    result = restore_path(set_path, out, unlock=UNLOCK)
    assert [p for p, _ in result.damaged] == ["Data/docs/note.txt"]
    assert "expands to more than the 330 bytes" in result.damaged[0][1]
    assert not (out / "Data" / "docs" / "note.txt").exists()
    assert (out / "Data" / "docs" / "log.txt").read_bytes() == TEXT


def test_dedup_and_incremental_keep_the_stored_size(zset):
    src, set_path, first = zset
    (src / "docs" / "copy.txt").write_bytes(TEXT)   # same content: stored once, recorded twice
    (src / "docs" / "note.txt").write_bytes(b"changed note " * 40)
    second = backup_path(set_path, [src], unlock=UNLOCK)
    assert second.files_copied == 1   # (copy.txt's content was there)
    entries = _entries(set_path, second.snapshot_id)
    assert entries["Data/docs/copy.txt"].stored == entries["Data/docs/log.txt"].stored > 0
    assert entries["Data/docs/log.txt"].stored == _entries(set_path, first)["Data/docs/log.txt"].stored
    assert verify_path(set_path, unlock=UNLOCK).ok


def test_format_1_set_still_backs_up_restores_verifies_and_forgets(tmp_path):
    """A set created by an older Plugback (encryption format 1): same keys, version 1."""
    src = make_tree(tmp_path / "src" / "Data", TREE)
    set_path = tmp_path / "set"
    BackupSet.create(set_path, BackupOptions().clock.now(), passphrase="pw")
    meta = json.loads((set_path / "plugback.json").read_text())
    meta["encryption"]["version"] = 1   # all that format 1 wrote differently: same keys, same dict
    (set_path / "plugback.json").write_text(json.dumps(meta))
    first = backup_path(set_path, [src], unlock=UNLOCK)
    assert open_set(set_path, UNLOCK).keys.version == 1
    for obj in _objects(set_path).values():
        assert obj.read_bytes()[8:12] == b"\x01\x00\x00\x00"   # stream version 1, nothing compressed
    assert all(e.stored == 0 for e in _entries(set_path, first.snapshot_id).values())
    (src / "docs" / "note.txt").write_bytes(b"second version " * 50)
    second = backup_path(set_path, [src], unlock=UNLOCK)
    assert second.files_copied == 1
    out = tmp_path / "out"
    restore_path(set_path, out, unlock=UNLOCK)
    assert read_tree(out / "Data") == read_tree(src)
    assert verify_path(set_path, read_all=True, unlock=UNLOCK).ok
    result = forget_path(set_path, RetentionPolicy(last=1), unlock=UNLOCK)
    assert result.forgotten and result.objects_removed == 1
    assert verify_path(set_path, read_all=True, unlock=UNLOCK).ok
    assert json.loads((set_path / "plugback.json").read_text())["encryption"]["version"] == 1


def test_stored_is_checked_where_manifests_are_read():
    obj = "ab" * 32
    good = {"path": "a", "type": "f", "size": 5, "sha256": "cd" * 32, "obj": obj, "stored": 77}
    assert parse_entry(good, "m", encrypted=True).stored == 77
    for bad in ({**good, "stored": -1}, {**good, "stored": "77"}, {**good, "stored": True},
                {"path": "d", "type": "d", "stored": 3},
                {k: v for k, v in good.items() if k != "obj"}):
        with pytest.raises(ManifestDamaged):
            parse_entry(bad, "m")


@pytest.mark.slow
def test_crash_at_every_write_step_of_a_compressed_backup(tmp_path):
    """Crash-safety of the compressed write path: every step of the second backup, then the next run."""
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": TEXT[:300_000], "b.bin": NOISE[:200_000], "c.txt": b"c" * 999})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src], passphrase="pw")
    expected_first = read_tree(src)
    pristine = tmp_path / "pristine"
    shutil.copytree(set_path, pristine)
    (src / "a.txt").write_bytes(TEXT[300_000:700_000])
    (src / "d.txt").write_bytes(TEXT[:50_000])
    (src / "c.txt").unlink()
    expected_second = read_tree(src)
    probe = FaultyFS(set_path)
    backup_path(set_path, [src], fs=probe, unlock=UNLOCK)
    steps = probe.calls
    assert steps > 10
    for n in range(1, steps + 1):
        shutil.rmtree(set_path)
        shutil.copytree(pristine, set_path)
        with pytest.raises(Crash):
            backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=n), unlock=UNLOCK)
        (set_path / "lock").unlink(missing_ok=True)
        out = tmp_path / f"r{n}"
        assert not restore_path(set_path, out, snapshot=first.snapshot_id, unlock=UNLOCK).damaged, n
        assert read_tree(out / "Data") == expected_first, n
        result = backup_path(set_path, [src], unlock=UNLOCK)
        assert result.status == "ok", n
        out2 = tmp_path / f"s{n}"
        restore_path(set_path, out2, unlock=UNLOCK)
        assert read_tree(out2 / "Data") == expected_second, n
        assert verify_path(set_path, read_all=True, unlock=UNLOCK).ok, n
        shutil.rmtree(out)
        shutil.rmtree(out2)


def test_the_vector_printed_in_encryption_md_is_the_tested_one():
    doc = (Path(__file__).parents[3] / "docs" / "encryption.md").read_text()
    block = doc.split("### Format 2 vectors", 1)[1].split("```", 2)[1]
    fields = {line.split()[0]: "".join(line.split()[1:]) for line in block.strip().splitlines()}
    case = next(c for c in VECTORS["streams"] if c["coding"] == 1 and c["chunk_size"] == 16)
    assert case["ciphertext"].startswith(fields["header"])
    assert (fields["payload"], fields["sha256"], fields["name"]) == (case["payload"], case["sha256"],
                                                                   case["object_name"])


def test_a_resumed_backup_keeps_the_stored_sizes_of_the_interrupted_one(tmp_path):
    """Files the interrupted run placed are taken from its journal (Placed.stored), not copied again."""
    from core.engine.progress import CancelToken
    from core.errors import Cancelled

    src = make_tree(tmp_path / "src" / "Data", {f"f{i:02}.txt": TEXT[i * 20_000:(i + 1) * 20_000 + 50_000]
                                                for i in range(40)})
    set_path = tmp_path / "set"
    token, seen = CancelToken(), []

    def stop(p):
        if p.phase == "copy" and p.current:
            seen.append(p.current)
            if len(seen) >= 25:
                token.cancel()

    with pytest.raises(Cancelled):
        backup_path(set_path, [src], passphrase="pw", cancel=token, progress=stop, workers=1)
    result = backup_path(set_path, [src], unlock=UNLOCK)
    assert result.files_copied < 40
    entries = _entries(set_path, result.snapshot_id)
    assert all(e.stored > 0 for e in entries.values() if e.type == "f")
    quick = verify_path(set_path, unlock=UNLOCK)
    assert quick.ok, quick.damaged


_FUZZ_KEYS = SetKeys.from_master(bytes(range(32)), version=2)
_FRAME = compress.pack(TEXT[:5000])


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=300),
                 st.tuples(st.integers(0, len(_FRAME) - 1), st.integers(1, 255), st.integers(0, len(_FRAME)))
                 .map(lambda t: (_FRAME[:t[0]] + bytes([_FRAME[t[0]] ^ t[1]]) + _FRAME[t[0] + 1:])[:max(t[2], 1)])))
def test_any_compressed_payload_reads_or_is_damage_never_another_error(payload):
    """An authentic stream (a key holder's, or a writer's bug) with any payload: the right text, other
    text (the manifest's size and SHA-256 catch that), or EncryptedDataDamaged; never a crash."""
    blob = _stream(_FUZZ_KEYS, payload, crypto.ZSTD)
    try:
        out = b"".join(DecryptingReader(io.BytesIO(blob), _FUZZ_KEYS, max_size=10_000))
    except EncryptedDataDamaged:
        return
    assert len(out) <= 10_000
