"""Encrypted backup sets: key wrapping, the chunked stream format, keyed object names.

The format is specified byte by byte in docs/encryption.md. This module is the
only code that knows it. API (everything the engine needs):

* ``create_encryption(passphrase) -> (SetKeys, enc)``: a new random master key;
  ``enc`` is the dict to store as ``plugback.json``'s ``"encryption"`` (only what
  opening the set needs: format, KDF parameters, wrapped master key, key check).
* ``check_encryption(enc)``: refuses a malformed or newer ``encryption`` dict
  (``EncryptedDataDamaged`` / ``NewerFormat``) without needing a secret.
* ``unlock_with_passphrase(enc, passphrase) -> SetKeys`` (``WrongPassphrase``) and
  ``unlock_with_recovery_key(enc, text) -> SetKeys`` (``WrongRecoveryKey`` /
  ``BadRecoveryKey``); which secret to try is ``core.agent.keys``'s choice.
* ``rewrap(enc, keys, new_passphrase) -> enc``: change the passphrase; data is
  not re-encrypted and the recovery key stays valid.
* ``recovery_key(keys_or_master) -> str`` / ``parse_recovery_key(text) -> bytes``.
* ``keys.object_hasher()``: streaming hasher; ``hexdigest()`` is the object's
  name in encrypted mode, ``sha256_hexdigest()`` the plain SHA-256 for the
  manifest, both from one pass. ``keys.object_name(sha256_hex)`` gives the name
  of content whose SHA-256 is already known (unchanged files).
* ``EncryptingWriter(raw, keys)``: ``write()`` plaintext, ``close()`` writes the
  final chunk (``raw`` is closed only with ``close_raw=True``).
* ``DecryptingReader(raw, keys, name=..., expected_name=None)``: ``read(n)`` or
  iterate plaintext blocks; raises ``EncryptedDataDamaged`` (naming ``name``) on
  any flipped bit, truncation, reordering or splicing, and ``ObjectNameMismatch``
  at the end when the content does not match ``expected_name``. Plaintext
  handed out before the end is authentic but possibly incomplete: callers
  commit what they restore only once the reader reached the end without error.
* ``encrypt_bytes(keys, data)`` / ``decrypt_bytes(keys, blob, name=...)`` for
  manifests and other small metadata (same stream format).
* ``encrypted_size(n)``: ciphertext size of ``n`` plaintext bytes
  (``HEADER_LEN + TAG_LEN * max(1, ceil(n / CHUNK_SIZE)) + n``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
import unicodedata
from dataclasses import dataclass
from typing import Iterator, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.errors import (
    BadRecoveryKey,
    EncryptedDataDamaged,
    NewerFormat,
    ObjectNameMismatch,
    UsageError,
    WrongPassphrase,
    WrongRecoveryKey,
)

ENC_FORMAT = "plugback-encryption"
ENC_VERSION = 1
KEY_LEN = 32

# Stream format (docs/encryption.md, "Stream").
MAGIC = b"PLUGBACK"
STREAM_VERSION = 1
FILE_NONCE_LEN = 24          # 16 bytes salt the per-file key, 8 bytes prefix every chunk nonce
HEADER_LEN = 40              # magic 8 + version 1 + reserved 3 + chunk size 4 + file nonce 24
TAG_LEN = 16
CHUNK_SIZE = 1 << 20         # big chunks: the per-chunk Python work must vanish next to AES
MAX_CHUNK_SIZE = 1 << 24     # a reader refuses larger chunks (a damaged header must not eat memory)
_MAX_CHUNKS = 1 << 32        # the chunk counter is 32 bits inside the nonce
_HEADER = struct.Struct(">8sB3sI24s")

# HKDF info strings: one subkey per purpose, never the master key itself.
INFO_CONTENT = b"plugback v1 content key"
INFO_NAMING = b"plugback v1 object naming key"
INFO_CHECK = b"plugback v1 key check"
INFO_FILE = b"plugback v1 file key"
WRAP_AAD = b"plugback v1 wrapped master key"

# scrypt: 128 MiB and a few hundred ms per unlock; tests set PLUGBACK_TESTONLY_WEAKEN_KDF=1.
SCRYPT_DEFAULT = {"n": 1 << 17, "r": 8, "p": 1}
SCRYPT_WEAK = {"n": 1 << 10, "r": 8, "p": 1}
WEAKEN_ENV = "PLUGBACK_TESTONLY_WEAKEN_KDF"
_SCRYPT_MAX_MEMORY = 1 << 30  # refuse stored parameters that would need more than 1 GiB

# Recovery key: Crockford base32 of master key + 3 checksum bytes = 56 characters.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_ALIASES = {"O": "0", "I": "1", "L": "1"}
RECOVERY_CHECK_PREFIX = b"plugback recovery key v1"
RECOVERY_CHECK_LEN = 3
RECOVERY_CHARS = 56
RECOVERY_GROUP = 4


def _hkdf(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(key)


@dataclass(frozen=True, repr=False)
class SetKeys:
    """The unlocked keys of one set: the master key and the subkeys derived from it."""

    master: bytes
    content: bytes
    naming: bytes
    check: bytes

    @classmethod
    def from_master(cls, master: bytes) -> "SetKeys":
        """Derive every subkey from a 32-byte master key (HKDF-SHA256, no salt)."""
        if len(master) != KEY_LEN:
            raise ValueError("the master key must be 32 bytes")
        return cls(master=bytes(master), content=_hkdf(master, INFO_CONTENT),
                   naming=_hkdf(master, INFO_NAMING), check=_hkdf(master, INFO_CHECK))

    def __repr__(self) -> str:
        return "SetKeys(<hidden>)"

    def object_hasher(self) -> "ObjectHasher":
        """A streaming hasher whose ``hexdigest()`` is the keyed object name."""
        return ObjectHasher(self.naming)

    def object_name(self, sha256_hex: str) -> str:
        """The encrypted-mode object name of content whose plain SHA-256 is ``sha256_hex``."""
        return hmac.new(self.naming, bytes.fromhex(sha256_hex), hashlib.sha256).hexdigest()

    @property
    def key_check(self) -> str:
        """Public value identifying this master key (stored in ``plugback.json``)."""
        return self.check[:16].hex()


class ObjectHasher:
    """One pass over plaintext gives both its SHA-256 and its keyed object name.

    The name is HMAC-SHA256(naming key, SHA-256(plaintext)): without the key
    nobody can tell which content an object holds, and the engine can name
    content from a manifest's SHA-256 without reading it again.
    """

    def __init__(self, naming_key: bytes):
        self._key = naming_key
        self._sha = hashlib.sha256()

    def update(self, data) -> None:
        self._sha.update(data)

    def sha256_hexdigest(self) -> str:
        return self._sha.hexdigest()

    def hexdigest(self) -> str:
        return hmac.new(self._key, self._sha.digest(), hashlib.sha256).hexdigest()


# --- key wrapping -------------------------------------------------------------------------


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC so the same passphrase typed on macOS (often NFD) and elsewhere gives the same key.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def kdf_defaults() -> dict:
    """The scrypt parameters for a new set (cheap only when the test-only variable is set)."""
    return dict(SCRYPT_WEAK if os.environ.get(WEAKEN_ENV) == "1" else SCRYPT_DEFAULT)


def _derive_kek(passphrase: str, kdf: dict) -> bytes:
    salt = bytes.fromhex(kdf["salt"])
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(_passphrase_bytes(passphrase))


def _wrap(master: bytes, passphrase: str, kdf_params: dict) -> dict:
    if not passphrase:
        raise UsageError("The passphrase is empty. Choose a passphrase (a few words are best).")
    kdf = {"name": "scrypt", **kdf_params, "salt": os.urandom(32).hex()}
    nonce = os.urandom(12)
    wrapped = AESGCM(_derive_kek(passphrase, kdf)).encrypt(nonce, master, WRAP_AAD)
    return {"kdf": kdf, "wrapped_key": {"nonce": nonce.hex(), "ciphertext": wrapped.hex()}}


def create_encryption(passphrase: str, *, master_key: bytes | None = None) -> tuple[SetKeys, dict]:
    """A new set's keys and the ``encryption`` dict for its ``plugback.json``."""
    keys = SetKeys.from_master(master_key if master_key is not None else os.urandom(KEY_LEN))
    enc = {"format": ENC_FORMAT, "version": ENC_VERSION, "cipher": "AES-256-GCM",
           **_wrap(keys.master, passphrase, kdf_defaults()), "key_check": keys.key_check}
    return keys, enc


def rewrap(enc: dict, keys: SetKeys, new_passphrase: str) -> dict:
    """``enc`` with the master key wrapped under a new passphrase (new salt, default KDF cost).

    The data is untouched and the recovery key stays valid; the old passphrase
    no longer opens the set once the returned dict replaces the old one.
    """
    check_encryption(enc)
    # Current defaults, not the old parameters: a passphrase change is when a set catches up.
    return {**enc, **_wrap(keys.master, new_passphrase, kdf_defaults()), "key_check": keys.key_check}


def check_encryption(enc: dict, where: str = "plugback.json") -> None:
    """Refuse an ``encryption`` dict this code cannot use, with a message naming why."""
    if not isinstance(enc, dict) or enc.get("format") != ENC_FORMAT:
        raise EncryptedDataDamaged(name=where, reason="the encryption settings are missing or unreadable")
    version = enc.get("version")
    if not isinstance(version, int) or version > ENC_VERSION:
        raise NewerFormat(path=where, version=version)
    try:
        kdf = enc["kdf"]
        n, r, p = kdf["n"], kdf["r"], kdf["p"]
        ok = (kdf["name"] == "scrypt" and all(isinstance(v, int) and v > 0 for v in (n, r, p))
              and n & (n - 1) == 0 and n > 1 and 128 * n * r * p <= _SCRYPT_MAX_MEMORY
              and len(bytes.fromhex(kdf["salt"])) >= 16
              and len(bytes.fromhex(enc["wrapped_key"]["nonce"])) == 12
              and len(bytes.fromhex(enc["wrapped_key"]["ciphertext"])) == KEY_LEN + TAG_LEN
              and len(bytes.fromhex(enc["key_check"])) == 16)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise EncryptedDataDamaged(name=where, reason="the key parameters are malformed")


def unlock_with_recovery_key(enc: dict, recovery_key: str, *, where: str = "plugback.json") -> SetKeys:
    """Open a set with its recovery key; ``WrongRecoveryKey`` / ``BadRecoveryKey`` otherwise."""
    check_encryption(enc, where)
    keys = SetKeys.from_master(parse_recovery_key(recovery_key))
    if not hmac.compare_digest(keys.key_check, enc["key_check"]):
        raise WrongRecoveryKey()
    return keys


def unlock_with_passphrase(enc: dict, passphrase: str, *, where: str = "plugback.json") -> SetKeys:
    """Open a set with its passphrase.

    Raises ``WrongPassphrase``; a tampered wrapped key looks like a wrong
    passphrase (AES-GCM cannot tell them apart), but the recovery key still
    opens the set then.
    """
    check_encryption(enc, where)
    kek = _derive_kek(passphrase, enc["kdf"])
    wrapped = enc["wrapped_key"]
    try:
        master = AESGCM(kek).decrypt(bytes.fromhex(wrapped["nonce"]),
                                     bytes.fromhex(wrapped["ciphertext"]), WRAP_AAD)
    except InvalidTag:
        raise WrongPassphrase() from None
    keys = SetKeys.from_master(master)
    if not hmac.compare_digest(keys.key_check, enc["key_check"]):
        raise EncryptedDataDamaged(name=where, reason="the key check does not match the wrapped key")
    return keys


# --- recovery key ------------------------------------------------------------------------


def _recovery_checksum(master: bytes) -> bytes:
    return hashlib.sha256(RECOVERY_CHECK_PREFIX + master).digest()[:RECOVERY_CHECK_LEN]


def recovery_key(keys_or_master: SetKeys | bytes) -> str:
    """The master key as 14 groups of 4 Crockford base32 characters (with a checksum)."""
    master = keys_or_master.master if isinstance(keys_or_master, SetKeys) else bytes(keys_or_master)
    if len(master) != KEY_LEN:
        raise ValueError("the master key must be 32 bytes")
    number = int.from_bytes(master + _recovery_checksum(master), "big")
    chars = "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in reversed(range(RECOVERY_CHARS)))
    return "-".join(chars[i:i + RECOVERY_GROUP] for i in range(0, RECOVERY_CHARS, RECOVERY_GROUP))


def parse_recovery_key(text: str) -> bytes:
    """The master key in a typed recovery key; spaces, dashes and case do not matter.

    Raises ``BadRecoveryKey`` saying what is wrong (a character that is never
    used, the wrong length, or a checksum mismatch from a mistyped character).
    """
    chars = "".join(c for c in str(text).upper() if c not in " -\t\r\n")
    number = 0
    for pos, c in enumerate(chars, 1):
        c = _CROCKFORD_ALIASES.get(c, c)
        if c not in CROCKFORD:
            raise BadRecoveryKey(reason=f"character {pos} ({chars[pos - 1]!r}) never appears in "
                                        "recovery keys")
        number = (number << 5) | CROCKFORD.index(c)
    if len(chars) != RECOVERY_CHARS:
        raise BadRecoveryKey(reason=f"it has {len(chars)} characters, a recovery key has "
                                    f"{RECOVERY_CHARS}")
    payload = number.to_bytes(KEY_LEN + RECOVERY_CHECK_LEN, "big")
    master, check = payload[:KEY_LEN], payload[KEY_LEN:]
    if not hmac.compare_digest(check, _recovery_checksum(master)):
        raise BadRecoveryKey(reason="its checksum does not match, so at least one character is mistyped")
    return master


# --- stream ------------------------------------------------------------------------------


def _file_cipher(keys: SetKeys, file_nonce: bytes) -> AESGCM:
    # A fresh key per file (salted by 16 random bytes) means a nonce prefix
    # collision between two files can never reuse a (key, nonce) pair.
    return AESGCM(_hkdf(keys.content, INFO_FILE, salt=file_nonce[:16]))


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def encrypted_size(plain_len: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Bytes on the drive for ``plain_len`` bytes of plaintext."""
    chunks = max(1, -(-plain_len // chunk_size))
    return HEADER_LEN + TAG_LEN * chunks + plain_len


class Readable(Protocol):
    """What a :class:`DecryptingReader` reads from: a binary file, or a chain of them."""

    def read(self, n: int = -1, /) -> bytes: ...


class Sink(Protocol):
    """Where an :class:`EncryptingWriter` writes: a binary file, or the engine's part writer."""

    def write(self, data: bytes, /) -> object: ...

    def close(self) -> None: ...


class EncryptingWriter:
    """Encrypts what is written to it into ``raw`` in the chunked stream format.

    Every chunk but the last holds exactly ``chunk_size`` bytes; the writer holds
    back up to one chunk so that ``close()`` can flag the last one as final.
    ``file_nonce`` is for the known-answer tests only: never reuse one.
    """

    def __init__(self, raw: Sink, keys: SetKeys, *, chunk_size: int = CHUNK_SIZE,
                 file_nonce: bytes | None = None, close_raw: bool = False):
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
        file_nonce = os.urandom(FILE_NONCE_LEN) if file_nonce is None else bytes(file_nonce)
        if len(file_nonce) != FILE_NONCE_LEN:
            raise ValueError(f"file_nonce must be {FILE_NONCE_LEN} bytes")
        self._raw = raw
        self._close_raw = close_raw
        self._chunk_size = chunk_size
        self._header = _HEADER.pack(MAGIC, STREAM_VERSION, bytes(3), chunk_size, file_nonce)
        self._aead = _file_cipher(keys, file_nonce)
        self._prefix = file_nonce[16:]
        # Grows with what is held back (at most one chunk); most files are small, and a
        # 1 MiB buffer for each would cost an allocation and page faults per file.
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self._out(self._header)

    def _out(self, data: bytes) -> None:
        self._raw.write(data)
        self.ciphertext_bytes += len(data)

    def _emit(self, plain, final: bool) -> None:
        if self._index >= _MAX_CHUNKS:
            raise UsageError("This file is too large to encrypt (more than 2^32 chunks).")
        self._out(self._aead.encrypt(_nonce(self._prefix, self._index), plain,
                                     _aad(self._header, self._index, final)))
        self._index += 1

    def write(self, data) -> int:
        """Encrypt ``data`` (any bytes-like object); returns its length."""
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        self.plaintext_bytes += size
        cs, buf = self._chunk_size, self._buf
        if buf:
            room = cs - len(buf)
            if size <= room:
                buf += view
                return size
            buf += view[:room]
            view = view[room:]
            self._emit(buf, final=False)  # more data follows, so this chunk is not the last
            del buf[:]
        # Encrypt straight from the caller's buffer; keep the tail (1..cs bytes) for close().
        while len(view) > cs:
            self._emit(view[:cs], final=False)
            view = view[cs:]
        buf += view   # a copy: the caller may reuse its buffer
        return size

    def close(self) -> None:
        """Write the final chunk (empty only for empty plaintext). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._emit(self._buf, final=True)
        self._buf = bytearray()
        if self._close_raw:
            self._raw.close()

    def __enter__(self) -> "EncryptingWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        elif self._close_raw:
            self._raw.close()


def _read_exact(raw: Readable, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at end of file (raw files may return short reads)."""
    data = raw.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = raw.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class DecryptingReader:
    """Reads plaintext out of a stream written by :class:`EncryptingWriter`.

    ``name`` appears in error messages (the object or file the engine opened).
    With ``expected_name`` the reader also checks, at the end, that the content's
    keyed hash equals that object name; ``sha256`` then holds its plain SHA-256.
    """

    def __init__(self, raw: Readable, keys: SetKeys, *, name: str = "", expected_name: str | None = None,
                 close_raw: bool = False):
        self._raw = raw
        self._close_raw = close_raw
        self.name = name
        self._expected = expected_name
        self._hasher = keys.object_hasher() if expected_name is not None else None
        self.sha256: str | None = None
        header = _read_exact(raw, HEADER_LEN)
        if len(header) < HEADER_LEN:
            self._damaged("it is too short to be encrypted data: the header is cut off")
        magic, version, reserved, chunk_size, file_nonce = _HEADER.unpack(header)
        if magic != MAGIC:
            self._damaged("it does not start with the Plugback encryption header")
        # The set's plugback.json already refused newer sets, so an unknown version here is
        # far more likely a flipped bit than a newer writer: report it as damage.
        if version != STREAM_VERSION:
            self._damaged(f"its format version {version} is unknown (damaged, or written by a newer "
                          "Plugback)")
        if reserved != bytes(3) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            self._damaged("its header is damaged")
        self._header = header
        self._record = chunk_size + TAG_LEN
        self._aead = _file_cipher(keys, file_nonce)
        self._prefix = file_nonce[16:]
        self._index = 0
        self._offset = HEADER_LEN
        # Two record buffers, reused: the one being decrypted and the one read ahead to see
        # whether the current chunk is the last (fresh 1 MiB buffers cost page faults).
        # A raw reader that knows its size (the engine's) lets a small object get small ones:
        # one record shorter than a full one is the final record either way.
        size = getattr(raw, "size", None)
        cap = self._record if size is None else max(1, min(self._record, size - HEADER_LEN))
        self._buffers = [bytearray(cap), bytearray(cap)]
        self._next: memoryview | bytes = self._read_record(1)
        if not self._next:
            self._damaged("it ends right after its header (the data is missing)")
        self._done = False
        self._buf = bytearray()

    def _read_record(self, which: int) -> memoryview:
        """The next record (fewer bytes only at end of data) in reusable buffer ``which``."""
        buf = self._buffers[which]
        view = memoryview(buf)
        got = 0
        readinto = getattr(self._raw, "readinto", None)
        while got < len(buf):
            if readinto is not None:
                n = readinto(view[got:])
            else:
                more = self._raw.read(len(buf) - got)
                n = len(more)
                view[got:got + n] = more
            if not n:
                break
            got += n
        return view[:got]

    def _damaged(self, reason: str):
        raise EncryptedDataDamaged(name=self.name, reason=reason)

    def _next_block(self) -> bytes | None:
        """The next chunk's plaintext, or None after the final chunk."""
        if self._done:
            return None
        record = self._next
        self._next = self._read_record(self._index % 2) if len(record) == self._record else b""
        final = not self._next
        index = self._index
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, index), record, _aad(self._header, index, final))
        except InvalidTag:
            self._damaged(self._why(record, index, final))
        self._index += 1
        self._offset += len(record)
        if self._hasher is not None:
            self._hasher.update(plain)
        if final:
            self._done = True
            self._finish()
        return plain

    def _why(self, record: memoryview | bytes, index: int, final: bool) -> str:
        where = f"chunk {index} at byte {self._offset}"
        if final and len(record) == self._record:
            try:
                self._aead.decrypt(_nonce(self._prefix, index), record, _aad(self._header, index, False))
                return f"it is truncated: the data ends after {where}, which is not the last chunk"
            except InvalidTag:
                pass
        if final:
            return (f"{where} does not authenticate: it was altered or cut short, or it comes "
                    "from another file")
        return (f"{where} does not authenticate: it was altered, moved, or comes from another "
                "file, or the header was altered")

    def _finish(self) -> None:
        if self._hasher is None:
            return
        self.sha256 = self._hasher.sha256_hexdigest()
        if not hmac.compare_digest(self._hasher.hexdigest(), str(self._expected).lower()):
            raise ObjectNameMismatch(name=self.name or self._expected)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` plaintext bytes (all the rest if negative); fewer only at the end."""
        if size is None or size < 0:
            parts = [bytes(self._buf), *iter(self._next_block, None)]
            self._buf = bytearray()
            return b"".join(parts)
        while len(self._buf) < size:
            block = self._next_block()
            if block is None:
                break
            if not self._buf and (len(block) == size or (self._done and len(block) < size)):
                return block  # the common case: whole chunks, no copy
            self._buf += block
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def __iter__(self) -> Iterator[bytes]:
        """Plaintext blocks (one per chunk) to the end; raises on damage."""
        if self._buf:
            rest = bytes(self._buf)
            self._buf = bytearray()
            yield rest
        while (block := self._next_block()) is not None:
            if block:
                yield block

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if self._close_raw and close is not None:
            close()

    def __enter__(self) -> "DecryptingReader":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def encrypt_bytes(keys: SetKeys, data: bytes, *, file_nonce: bytes | None = None,
                  chunk_size: int = CHUNK_SIZE) -> bytes:
    """``data`` encrypted in the stream format (manifests, small metadata)."""
    out = io.BytesIO()
    writer = EncryptingWriter(out, keys, chunk_size=chunk_size, file_nonce=file_nonce)
    writer.write(data)
    writer.close()
    return out.getvalue()


def decrypt_bytes(keys: SetKeys, blob: bytes, *, name: str = "", expected_name: str | None = None) -> bytes:
    """The plaintext of ``blob``; raises ``EncryptedDataDamaged`` naming ``name`` on damage."""
    return DecryptingReader(io.BytesIO(blob), keys, name=name, expected_name=expected_name).read()
