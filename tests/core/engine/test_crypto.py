"""core.engine.crypto: key wrapping, recovery key, the chunked stream, keyed names, test vectors."""

import hashlib
import io
import json
import os
import struct
import threading
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.agent.keys import Secret
from core.engine import crypto, crypto_stream
from core.engine.crypto import (
    CHUNK_SIZE,
    HEADER_LEN,
    TAG_LEN,
    DecryptingReader,
    EncryptingWriter,
    SetKeys,
    decrypt_bytes,
    encrypt_bytes,
    encrypted_size,
)
from core.errors import (
    BadRecoveryKey,
    DamagedSet,
    EncryptedDataDamaged,
    NewerFormat,
    ObjectNameMismatch,
    UsageError,
    WrongPassphrase,
    WrongRecoveryKey,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "stream-v1.json").read_text())
SMALL = 64  # a small chunk size so that many-chunk cases stay tiny


@pytest.fixture
def keys():
    return SetKeys.from_master(os.urandom(32))


def encrypt_file(path, keys, data, *, chunk_size=CHUNK_SIZE, piece=None):
    """Encrypt ``data`` into a real file, written in pieces of ``piece`` bytes."""
    with open(path, "wb") as raw:
        writer = EncryptingWriter(raw, keys, chunk_size=chunk_size)
        piece = piece or max(1, len(data))
        for i in range(0, len(data), piece):
            writer.write(data[i:i + piece])
        writer.close()
        assert not raw.closed  # the writer leaves raw open unless asked
    return Path(path).read_bytes()


def records(blob, chunk_size):
    """Split a stream into header and chunk records (ciphertext + tag)."""
    rec = chunk_size + TAG_LEN
    body = blob[HEADER_LEN:]
    return blob[:HEADER_LEN], [body[i:i + rec] for i in range(0, len(body), rec)]


def decrypt(keys, blob, name="objects/ab/abcd"):
    return decrypt_bytes(keys, blob, name=name)


# --- round trips -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 12345])
def test_round_trip_through_a_real_file(tmp_path, keys, size):
    data = os.urandom(size)
    blob = encrypt_file(tmp_path / "obj", keys, data, piece=300_000)
    assert len(blob) == encrypted_size(size)
    assert size < 16 or data not in blob   # a byte or two occurs in random ciphertext by chance
    with open(tmp_path / "obj", "rb") as raw:
        assert b"".join(DecryptingReader(raw, keys, name="obj")) == data
    with open(tmp_path / "obj", "rb") as raw:
        reader = DecryptingReader(raw, keys)
        parts = iter(lambda: reader.read(777_777), b"")
        assert b"".join(parts) == data


@pytest.mark.parametrize("piece", [1, 7, SMALL - 1, SMALL, SMALL + 1, 1000])
def test_write_and_read_piece_sizes_do_not_change_the_result(keys, piece):
    data = os.urandom(10 * SMALL + 3)
    out = io.BytesIO()
    writer = EncryptingWriter(out, keys, chunk_size=SMALL, file_nonce=bytes(24))
    for i in range(0, len(data), piece):
        writer.write(data[i:i + piece])
    writer.close()
    one_go = encrypt_bytes(keys, data, chunk_size=SMALL, file_nonce=bytes(24))
    assert out.getvalue() == one_go
    reader = DecryptingReader(io.BytesIO(one_go), keys)
    got = bytearray()
    while chunk := reader.read(piece):
        assert len(chunk) == piece or len(got) + len(chunk) == len(data)
        got += chunk
    assert bytes(got) == data


def test_chunk_boundaries_and_overhead(keys):
    # Every chunk but the last is full; a plaintext of exactly n chunks has no empty tail chunk.
    for size in (0, 1, SMALL, SMALL + 1, 3 * SMALL):
        blob = encrypt_bytes(keys, os.urandom(size), chunk_size=SMALL)
        _, recs = records(blob, SMALL)
        assert len(recs) == max(1, -(-size // SMALL))
        assert len(blob) == encrypted_size(size, SMALL) == HEADER_LEN + TAG_LEN * len(recs) + size


def test_reader_handles_short_reads_from_a_pipe(keys):
    data = os.urandom(5 * SMALL + 9)
    blob = encrypt_bytes(keys, data, chunk_size=SMALL)
    read_fd, write_fd = os.pipe()

    def feed():
        with os.fdopen(write_fd, "wb", buffering=0) as w:
            for i in range(0, len(blob), 13):  # a pipe hands the reader odd-sized pieces
                w.write(blob[i:i + 13])

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_fd, "rb", buffering=0) as raw:
        assert DecryptingReader(raw, keys).read() == data
    feeder.join()


def test_reader_works_with_objects_that_only_have_read(keys):
    class ReadOnly:
        """A file-like object with read() alone, handing out at most 10 bytes per call."""

        def __init__(self, blob):
            self._inner = io.BytesIO(blob)

        def read(self, size):
            return self._inner.read(min(size, 10))

    data = os.urandom(3 * SMALL + 1)
    assert DecryptingReader(ReadOnly(encrypt_bytes(keys, data, chunk_size=SMALL)), keys).read() == data
    with pytest.raises(EncryptedDataDamaged, match="truncated"):
        DecryptingReader(ReadOnly(encrypt_bytes(keys, data, chunk_size=SMALL)[:-17]), keys).read()


def test_same_plaintext_encrypts_differently_each_time(keys):
    assert encrypt_bytes(keys, b"same") != encrypt_bytes(keys, b"same")


def test_close_raw_and_context_manager(tmp_path, keys):
    raw = open(tmp_path / "f", "wb")
    with EncryptingWriter(raw, keys, close_raw=True) as writer:
        writer.write(b"abc")
    assert raw.closed
    with DecryptingReader(open(tmp_path / "f", "rb"), keys, close_raw=True) as reader:
        assert reader.read() == b"abc"


# --- keys, passphrase, recovery key --------------------------------------------------------

def test_create_and_unlock_with_passphrase_and_secret():
    keys, enc = crypto.create_encryption("pässwörd")
    assert crypto.unlock_with_passphrase(enc, "pässwörd").master == keys.master
    assert crypto.unlock_with_passphrase(enc, "pässwörd").content == keys.content
    # The same passphrase typed in decomposed form (macOS) opens the set too.
    assert crypto.unlock_with_passphrase(enc, "pa\u0308sswo\u0308rd").master == keys.master


def test_wrong_passphrase_is_its_own_error_not_damage():
    _, enc = crypto.create_encryption("right")
    with pytest.raises(WrongPassphrase) as err:
        crypto.unlock_with_passphrase(enc, "wrong")
    assert not isinstance(err.value, DamagedSet)
    assert "Wrong passphrase" in str(err.value)


def test_plugback_json_holds_only_what_opening_needs():
    _, enc = crypto.create_encryption("pw")
    assert set(enc) == {"format", "version", "cipher", "kdf", "wrapped_key", "key_check"}
    assert set(enc["kdf"]) == {"name", "n", "r", "p", "salt"}
    assert json.loads(json.dumps(enc)) == enc


def test_kdf_is_strong_unless_the_test_variable_is_set(monkeypatch):
    assert crypto.kdf_defaults()["n"] == 2 ** 10
    monkeypatch.delenv(crypto.WEAKEN_ENV)
    assert crypto.kdf_defaults() == {"n": 2 ** 17, "r": 8, "p": 1}


def test_empty_passphrase_is_refused():
    with pytest.raises(UsageError, match="empty"):
        crypto.create_encryption("")


def test_bad_or_newer_encryption_settings_are_clear_errors():
    _, enc = crypto.create_encryption("pw")
    with pytest.raises(NewerFormat):
        crypto.unlock_with_passphrase({**enc, "version": 3}, "pw")
    for bad in (0, -1, True, "2"):
        with pytest.raises((EncryptedDataDamaged, NewerFormat)):
            crypto.unlock_with_passphrase({**enc, "version": bad}, "pw")
    # Absurd stored KDF cost (would need 128 GiB) is refused before scrypt runs.
    with pytest.raises(EncryptedDataDamaged, match="malformed"):
        crypto.unlock_with_passphrase({**enc, "kdf": {**enc["kdf"], "n": 2 ** 30}}, "pw")
    with pytest.raises(EncryptedDataDamaged, match="plugback.json"):
        crypto.unlock_with_passphrase({**enc, "wrapped_key": {"nonce": "zz"}}, "pw")
    with pytest.raises(EncryptedDataDamaged, match="key check"):
        crypto.unlock_with_passphrase({**enc, "key_check": "00" * 16}, "pw")


def test_recovery_key_opens_the_set_without_the_passphrase():
    keys, enc = crypto.create_encryption("pw")
    text = crypto.recovery_key(keys)
    groups = text.split("-")
    assert len(groups) == 14 and all(len(g) == 4 for g in groups)
    assert set(text) <= set(crypto.CROCKFORD + "-")
    assert crypto.unlock_with_recovery_key(enc, text).master == keys.master
    sloppy = " ".join(groups).lower().replace("0", "o").replace("1", "l")
    assert crypto.parse_recovery_key(sloppy) == keys.master
    assert crypto.recovery_key(keys.master) == text


def test_recovery_key_of_another_set_is_refused():
    _, enc = crypto.create_encryption("pw")
    other, _ = crypto.create_encryption("pw")
    with pytest.raises(WrongRecoveryKey, match="another backup set"):
        crypto.unlock_with_recovery_key(enc, crypto.recovery_key(other))


def test_recovery_key_typos_are_caught():
    master = hashlib.sha256(b"typo test").digest()
    chars = crypto.recovery_key(master).replace("-", "")
    for pos in range(len(chars)):
        for replacement in "0Z7":
            if replacement == chars[pos]:
                continue
            typo = chars[:pos] + replacement + chars[pos + 1:]
            with pytest.raises(BadRecoveryKey, match="mistyped"):
                crypto.parse_recovery_key(typo)
    for pos in range(len(chars) - 1):
        if chars[pos] != chars[pos + 1]:
            swapped = chars[:pos] + chars[pos + 1] + chars[pos] + chars[pos + 2:]
            with pytest.raises(BadRecoveryKey):
                crypto.parse_recovery_key(swapped)
    with pytest.raises(BadRecoveryKey, match="55 characters"):
        crypto.parse_recovery_key(chars[:-1])
    with pytest.raises(BadRecoveryKey, match=r"character 3 \('U'\)"):
        crypto.parse_recovery_key("AbU" + chars[3:])


def test_rewrap_changes_the_passphrase_without_touching_data():
    keys, enc = crypto.create_encryption("old passphrase")
    blob = encrypt_bytes(keys, b"written before the change")
    new_enc = crypto.rewrap(enc, keys, "new passphrase")
    assert new_enc["wrapped_key"] != enc["wrapped_key"] and new_enc["kdf"]["salt"] != enc["kdf"]["salt"]
    reopened = crypto.unlock_with_passphrase(new_enc, "new passphrase")
    assert decrypt(reopened, blob) == b"written before the change"
    with pytest.raises(WrongPassphrase):
        crypto.unlock_with_passphrase(new_enc, "old passphrase")
    assert crypto.unlock_with_recovery_key(new_enc, crypto.recovery_key(keys)).master == keys.master


def test_subkeys_are_distinct_and_never_the_master():
    keys = SetKeys.from_master(os.urandom(32))
    assert len({keys.master, keys.content, keys.naming, keys.check}) == 4
    assert "SetKeys(<hidden>)" == repr(keys) and keys.master.hex() not in repr(keys)
    assert "hunter2" not in repr(Secret.passphrase("hunter2"))


# --- tampering ---------------------------------------------------------------------------

@pytest.fixture
def stream(keys):
    data = os.urandom(4 * SMALL + 10)
    return data, encrypt_bytes(keys, data, chunk_size=SMALL)


def flip(blob, pos, bit=0):
    out = bytearray(blob)
    out[pos] ^= 1 << bit
    return bytes(out)


def test_every_flipped_header_bit_is_detected(keys, stream):
    data, blob = stream
    for pos in range(HEADER_LEN):
        for bit in (0, 7):
            with pytest.raises(EncryptedDataDamaged) as err:
                decrypt(keys, flip(blob, pos, bit), name="objects/ab/abcd")
            assert "objects/ab/abcd" in str(err.value)


def test_a_flipped_bit_anywhere_in_any_chunk_or_tag_is_detected(keys, stream):
    _, blob = stream
    _, recs = records(blob, SMALL)
    start = HEADER_LEN
    for index, rec in enumerate(recs):
        # first byte, a middle byte, and the last byte (in the tag) of each chunk
        for pos in (start, start + len(rec) // 2, start + len(rec) - 1):
            with pytest.raises(EncryptedDataDamaged, match=f"chunk {index} at byte {start}"):
                decrypt(keys, flip(blob, pos, 3))
        start += len(rec)


def test_dropping_the_last_chunk_is_reported_as_truncation(keys, stream):
    _, blob = stream
    header, recs = records(blob, SMALL)
    with pytest.raises(EncryptedDataDamaged, match="truncated"):
        decrypt(keys, header + b"".join(recs[:-1]))
    with pytest.raises(EncryptedDataDamaged, match="truncated"):
        decrypt(keys, header + recs[0])


def test_cut_mid_chunk_or_header_is_detected(keys, stream):
    _, blob = stream
    for cut in (len(blob) - 1, len(blob) - TAG_LEN - 3, HEADER_LEN + SMALL // 2, HEADER_LEN + 5):
        with pytest.raises(EncryptedDataDamaged):
            decrypt(keys, blob[:cut])
    with pytest.raises(EncryptedDataDamaged, match="ends right after its header"):
        decrypt(keys, blob[:HEADER_LEN])
    with pytest.raises(EncryptedDataDamaged, match="too short"):
        decrypt(keys, blob[:HEADER_LEN - 1])
    with pytest.raises(EncryptedDataDamaged, match="does not start with"):
        decrypt(keys, b"An ordinary file that was never encrypted by Plugback." * 3)
    with pytest.raises(EncryptedDataDamaged, match="too short"):
        decrypt(keys, b"")


def test_truncation_is_caught_by_the_streaming_reader_at_eof(tmp_path, keys):
    data = os.urandom(3 * CHUNK_SIZE)
    blob = encrypt_file(tmp_path / "obj", keys, data)
    (tmp_path / "cut").write_bytes(blob[:HEADER_LEN + 2 * (CHUNK_SIZE + TAG_LEN)])
    with open(tmp_path / "cut", "rb") as raw:
        reader = DecryptingReader(raw, keys, name="cut")
        assert reader.read(CHUNK_SIZE) == data[:CHUNK_SIZE]  # chunk 0 is authentic on its own
        with pytest.raises(EncryptedDataDamaged, match="truncated"):
            reader.read(CHUNK_SIZE)


def test_swapped_chunks_are_detected(keys, stream):
    _, blob = stream
    header, recs = records(blob, SMALL)
    for i, j in ((0, 1), (1, 2), (0, 3)):
        swapped = list(recs)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        with pytest.raises(EncryptedDataDamaged, match=f"chunk {i} "):
            decrypt(keys, header + b"".join(swapped))


def test_chunks_spliced_from_another_file_are_detected(keys, stream):
    data, blob = stream
    other = encrypt_bytes(keys, data, chunk_size=SMALL)  # same keys, same plaintext, other nonce
    header, recs = records(blob, SMALL)
    other_header, other_recs = records(other, SMALL)
    with pytest.raises(EncryptedDataDamaged, match="chunk 1 "):
        decrypt(keys, header + recs[0] + other_recs[1] + b"".join(recs[2:]))
    with pytest.raises(EncryptedDataDamaged, match="chunk 0 "):
        decrypt(keys, other_header + b"".join(recs))
    with pytest.raises(EncryptedDataDamaged):
        decrypt(keys, blob + other_recs[-1])  # a chunk appended after the final one


def test_data_of_another_set_does_not_decrypt(keys):
    other = SetKeys.from_master(os.urandom(32))
    with pytest.raises(EncryptedDataDamaged):
        decrypt(keys, encrypt_bytes(other, b"not yours"))


def test_damage_is_a_damaged_set_error_naming_the_object(keys, stream):
    _, blob = stream
    with pytest.raises(DamagedSet) as err:
        decrypt(keys, flip(blob, len(blob) - 1), name="snapshots/20261122T013000Z-ab12.json.gz")
    assert "snapshots/20261122T013000Z-ab12.json.gz" in str(err.value)
    assert err.value.code == "encrypted_damaged"


# --- keyed object names --------------------------------------------------------------------

def test_object_hasher_gives_a_keyed_name_and_the_plain_sha256(keys):
    data = os.urandom(3 * SMALL)
    hasher = keys.object_hasher()
    for i in range(0, len(data), 50):
        hasher.update(data[i:i + 50])
    plain = hashlib.sha256(data).hexdigest()
    assert hasher.sha256_hexdigest() == plain
    name = hasher.hexdigest()
    assert len(name) == 64 and name != plain
    assert keys.object_name(plain) == name
    other = SetKeys.from_master(os.urandom(32))
    assert other.object_name(plain) != name  # nobody without the key can confirm the content


def test_an_object_copied_under_another_name_is_detected(tmp_path, keys):
    objects = tmp_path / "objects"
    objects.mkdir()
    names = {}
    for content in (b"first file", b"second file"):
        hasher = keys.object_hasher()
        hasher.update(content)
        names[content] = hasher.hexdigest()
        (objects / names[content]).write_bytes(encrypt_bytes(keys, content))
    a, b = names[b"first file"], names[b"second file"]
    with open(objects / a, "rb") as raw:
        reader = DecryptingReader(raw, keys, name=f"objects/{a}", expected_name=a)
        assert reader.read() == b"first file"
        assert reader.sha256 == hashlib.sha256(b"first file").hexdigest()
    (objects / b).write_bytes((objects / a).read_bytes())  # the attacker's copy
    with pytest.raises(ObjectNameMismatch, match=f"objects/{b}"):
        decrypt_bytes(keys, (objects / b).read_bytes(), name=f"objects/{b}", expected_name=b)


# --- known-answer vectors --------------------------------------------------------------------

def independent_decrypt(master: bytes, blob: bytes) -> bytes:
    """A decryptor written from docs/encryption.md alone (no core.engine.crypto code)."""
    content_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"plugback v1 content key").derive(master)
    magic, version, reserved, chunk_size, file_nonce = struct.unpack(">8sB3sI24s", blob[:40])
    assert (magic, version, reserved) == (b"PLUGBACK", 1, b"\0\0\0")
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=file_nonce[:16],
                    info=b"plugback v1 file key").derive(content_key)
    aead, rec, body, out = AESGCM(file_key), chunk_size + 16, blob[40:], []
    count = max(1, -(-len(body) // rec))
    for i in range(count):
        final = i == count - 1
        nonce = file_nonce[16:] + i.to_bytes(4, "big")
        aad = blob[:40] + i.to_bytes(8, "big") + bytes([final])
        out.append(aead.decrypt(nonce, body[i * rec:(i + 1) * rec], aad))
    return b"".join(out)


@pytest.mark.parametrize("case", VECTORS["streams"], ids=lambda c: c["label"])
def test_stream_known_answer_vectors(case):
    keys = SetKeys.from_master(bytes.fromhex(VECTORS["master_key"]))
    plaintext = bytes.fromhex(case["plaintext"])
    blob = encrypt_bytes(keys, plaintext, file_nonce=bytes.fromhex(case["file_nonce"]),
                         chunk_size=case["chunk_size"])
    assert blob.hex() == case["ciphertext"]
    assert decrypt_bytes(keys, blob, expected_name=case["object_name"]) == plaintext
    assert independent_decrypt(bytes.fromhex(VECTORS["master_key"]), blob) == plaintext
    assert keys.object_name(hashlib.sha256(plaintext).hexdigest()) == case["object_name"]


def test_key_known_answer_vectors():
    master = bytes.fromhex(VECTORS["master_key"])
    keys = SetKeys.from_master(master)
    assert keys.content.hex() == VECTORS["content_key"]
    assert keys.naming.hex() == VECTORS["naming_key"]
    assert keys.key_check == VECTORS["key_check"]
    assert crypto.recovery_key(keys) == VECTORS["recovery_key"]
    enc = VECTORS["encryption"]
    assert crypto.unlock_with_passphrase(enc, VECTORS["passphrase"]).master == master
    # The wrapped key, unwrapped from the documented steps alone.
    kdf = enc["kdf"]
    kek = Scrypt(salt=bytes.fromhex(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"],
                 p=kdf["p"]).derive(VECTORS["passphrase"].encode())
    wrapped = enc["wrapped_key"]
    assert AESGCM(kek).decrypt(bytes.fromhex(wrapped["nonce"]), bytes.fromhex(wrapped["ciphertext"]),
                               b"plugback v1 wrapped master key") == master
    with pytest.raises(InvalidTag):
        AESGCM(kek).decrypt(bytes.fromhex(wrapped["nonce"]), bytes.fromhex(wrapped["ciphertext"]), b"")


_WORDS = b"report budget invoice notes draft final summary letter plan meeting minutes "


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("size", [0, 1, 100, 4096, (128 << 10) - 1, 128 << 10, (128 << 10) + 1,
                                  CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 5])
@pytest.mark.parametrize("kind", ["text", "random", "text then random"])
def test_seal_whole_writes_the_bytes_the_writer_writes(version, size, kind):
    # The small-file path seals content in one call: the same stream, byte for byte, as
    # EncryptingWriter given the same nonce (so readers, the vectors and the format cannot drift).
    keys = SetKeys.from_master(os.urandom(32), version)
    text = (_WORDS * (size // len(_WORDS) + 1))[:size]
    data = {"text": text, "random": os.urandom(size),
            "text then random": text[:size // 2] + os.urandom(size - size // 2)}[kind]
    nonce = os.urandom(crypto.FILE_NONCE_LEN)
    sealed = crypto_stream.seal_whole(keys, data, file_nonce=nonce)
    assert sealed == encrypt_bytes(keys, data, file_nonce=nonce)
    assert decrypt_bytes(keys, sealed) == data
    if version == 2 and kind == "text" and size > 4096:
        assert len(sealed) < size / 2   # compressed


def test_seal_whole_uses_a_fresh_nonce_each_time(keys):
    assert crypto_stream.seal_whole(keys, b"same") != crypto_stream.seal_whole(keys, b"same")
    with pytest.raises(ValueError):
        crypto_stream.seal_whole(keys, b"x", file_nonce=bytes(5))


def _stream(keys, data, compress):
    return bytearray(encrypt_bytes(keys, data, compress=compress, chunk_size=64 << 10))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("size", [0, 1, 5000, 64 << 10, (64 << 10) + 1, 300 << 10])
def test_open_whole_yields_what_the_reader_yields(size, compress):
    # One chunk is opened with one decrypt; more chunks go through DecryptingReader: the same plaintext.
    keys = SetKeys.from_master(os.urandom(32), 2)
    data = (_WORDS * (size // len(_WORDS) + 1))[:size] if compress else os.urandom(size)
    blob = _stream(keys, data, compress)
    assert b"".join(crypto.open_whole(keys, blob, max_size=size)) == data
    assert b"".join(crypto.open_whole(keys, memoryview(blob))) == data
    assert list(crypto.open_whole(keys, blob)) == list(DecryptingReader(io.BytesIO(bytes(blob)), keys))


@pytest.mark.parametrize("compress", [False, True])
def test_open_whole_reports_damage_as_the_reader_does(compress):
    keys = SetKeys.from_master(os.urandom(32), 2)
    data = _WORDS * 50
    good = _stream(keys, data, compress)

    def errors(blob, **kw):
        found = []
        for read in (lambda: b"".join(crypto.open_whole(keys, blob, name="objects/x", **kw)),
                     lambda: DecryptingReader(io.BytesIO(bytes(blob)), keys, name="objects/x", **kw).read()):
            with pytest.raises(EncryptedDataDamaged) as err:
                read()
            found.append(str(err.value))
        return found

    for at in (0, 9, HEADER_LEN + 3, len(good) - 1):   # magic, coding, payload, tag
        bad = bytearray(good)
        bad[at] ^= 1
        whole, reader = errors(bad)
        assert whole == reader and "objects/x" in whole
    for cut in (HEADER_LEN, HEADER_LEN + 5, len(good) - 1):
        whole, reader = errors(good[:cut])
        assert whole == reader
    other = _stream(SetKeys.from_master(os.urandom(32), 2), data, compress)
    assert errors(other)[0] == errors(other)[1]
    if compress:   # a bomb stops at the size the manifest records
        whole, reader = errors(good, max_size=len(data) - 1)
        assert whole == reader and "expands to more than" in whole
    v2 = _stream(keys, data, False)
    with pytest.raises(EncryptedDataDamaged, match="version-2 stream in a format-1 set"):
        b"".join(crypto.open_whole(SetKeys.from_master(keys.master, 1), v2))
