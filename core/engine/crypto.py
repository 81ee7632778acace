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
* The stream (``EncryptingWriter``, ``DecryptingReader``, ``seal_whole`` (= ``code_whole`` then ``seal_coded``),
  ``open_whole``, ``check_whole``, ``encrypt_bytes``,
  ``decrypt_bytes``, ``encrypted_size``) lives in ``core.engine.crypto_stream`` and is
  re-exported here: callers import it from this module.
* ``SetKeys.version``: the set's encryption format (``plugback.json``'s
  ``encryption.version``). New sets are format 2: their streams are compressed with
  zstd where that pays (docs/encryption.md, "Compression"); format-1 sets keep
  writing uncompressed version-1 streams, which older Plugback reads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import unicodedata
from concurrent.futures import Future, wait
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.engine.crypto_stream import (  # noqa: F401  (the stream's API, re-exported)
    CHUNK_SIZE,
    FILE_NONCE_LEN,
    HEADER_LEN,
    INFO_FILE,
    KEY_LEN,
    MAGIC,
    MAX_CHUNK_SIZE,
    RAW,
    STREAM_VERSION,
    STREAM_VERSION_2,
    TAG_LEN,
    ZSTD,
    DecryptingReader,
    EncryptingWriter,
    Readable,
    Sink,
    check_whole,
    code_whole,
    decrypt_bytes,
    encrypt_bytes,
    encrypted_size,
    open_whole,
    seal_coded,
    seal_whole,
    stored_field,
)
from core.engine.crypto_stream import hkdf as _hkdf
from core.errors import (
    BadRecoveryKey,
    EncryptedDataDamaged,
    NewerFormat,
    UsageError,
    WrongPassphrase,
    WrongRecoveryKey,
)

ENC_FORMAT = "plugback-encryption"
ENC_VERSION = 2          # format 2: streams compressed where that pays (docs/encryption.md)
ENC_VERSIONS = (1, 2)    # the formats this version opens

# HKDF info strings: one subkey per purpose, never the master key itself.
INFO_CONTENT = b"plugback v1 content key"
INFO_NAMING = b"plugback v1 object naming key"
INFO_CHECK = b"plugback v1 key check"
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


@dataclass(frozen=True, repr=False)
class SetKeys:
    """The unlocked keys of one set: the master key and the subkeys derived from it.

    ``version`` is the set's encryption format: what its streams may be (format 2:
    compressed where that pays) and what the writers make.
    """

    master: bytes
    content: bytes
    naming: bytes
    check: bytes
    version: int = 1

    @classmethod
    def from_master(cls, master: bytes, version: int = 1) -> "SetKeys":
        """Derive every subkey from a 32-byte master key (HKDF-SHA256, no salt); the subkeys are
        the same in every format."""
        if len(master) != KEY_LEN:
            raise ValueError("the master key must be 32 bytes")
        return cls(master=bytes(master), content=_hkdf(master, INFO_CONTENT),
                   naming=_hkdf(master, INFO_NAMING), check=_hkdf(master, INFO_CHECK), version=version)

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
    """scrypt (cryptography's: 0.39 s against hashlib's 0.43 s for N = 2^17 here, the same
    bytes; docs/performance.md "#13: a backup into an existing set"), or the key
    :func:`derive_ahead` started for the same passphrase and parameters (taken once)."""
    with _ahead_mutex:
        started = _ahead.pop(_ahead_key(passphrase, kdf), None)
    if started is not None:
        return started.result()
    return _scrypt(passphrase, kdf)


def _scrypt(passphrase: str, kdf: dict) -> bytes:
    salt = bytes.fromhex(kdf["salt"])
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(_passphrase_bytes(passphrase))


# Keys being derived ahead (derive_ahead), by a digest of (passphrase, parameters): at most a few.
_ahead: dict[bytes, Future] = {}
_ahead_mutex = threading.Lock()


def _ahead_key(passphrase: str, kdf: dict) -> bytes:
    params = json.dumps([kdf.get("salt"), kdf.get("n"), kdf.get("r"), kdf.get("p")]).encode()
    return hashlib.sha256(params + b"\0" + _passphrase_bytes(passphrase)).digest()


def derive_ahead(enc: dict, passphrase: str) -> None:
    """Start the scrypt of ``passphrase`` for the set ``enc`` (checked: :func:`check_encryption`)
    in a thread (it runs outside the GIL): when the unlock then tries that passphrase, after
    whatever it tries first (the keyring), :func:`unlock_with_passphrase` takes the key instead
    of deriving it again. Nothing else changes: which secret opens the set, in which order, is
    still the unlocker's. :func:`forget_ahead` drops what was not taken."""
    check_encryption(enc)
    kdf = enc["kdf"]
    done: Future = Future()
    with _ahead_mutex:
        if _ahead.setdefault(_ahead_key(passphrase, kdf), done) is not done:
            return

    def derive() -> None:
        try:
            done.set_result(_scrypt(passphrase, kdf))
        except BaseException as err:  # noqa: BLE001 - raised to the unlock that takes it
            done.set_exception(err)

    threading.Thread(target=derive, name="plugback-kdf", daemon=True).start()


def forget_ahead() -> None:
    """Drop the keys :func:`derive_ahead` made that no unlock took (waits for those still running)."""
    with _ahead_mutex:
        started = list(_ahead.values())
        _ahead.clear()
    wait(started)


def _wrap(master: bytes, passphrase: str, kdf_params: dict) -> dict:
    if not passphrase:
        raise UsageError("The passphrase is empty. Choose a passphrase (a few words are best).")
    kdf = {"name": "scrypt", **kdf_params, "salt": os.urandom(32).hex()}
    nonce = os.urandom(12)
    wrapped = AESGCM(_derive_kek(passphrase, kdf)).encrypt(nonce, master, WRAP_AAD)
    return {"kdf": kdf, "wrapped_key": {"nonce": nonce.hex(), "ciphertext": wrapped.hex()}}


def create_encryption(passphrase: str, *, master_key: bytes | None = None,
                      version: int = ENC_VERSION) -> tuple[SetKeys, dict]:
    """A new set's keys and the ``encryption`` dict for its ``plugback.json`` (``version`` 1 only
    to make format-1 sets in tests)."""
    if version not in ENC_VERSIONS:
        raise ValueError(f"unknown encryption format {version}")
    keys = SetKeys.from_master(master_key if master_key is not None else os.urandom(KEY_LEN), version)
    enc = {"format": ENC_FORMAT, "version": version, "cipher": "AES-256-GCM",
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
    if not isinstance(version, int) or isinstance(version, bool) or version > ENC_VERSION:
        raise NewerFormat(path=where, version=version)
    if version not in ENC_VERSIONS:
        raise EncryptedDataDamaged(name=where, reason=f"its encryption format {version} does not exist")
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
    keys = SetKeys.from_master(parse_recovery_key(recovery_key), enc["version"])
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
    keys = SetKeys.from_master(master, enc["version"])
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
