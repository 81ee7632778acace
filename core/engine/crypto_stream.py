"""The chunked encrypted stream of objects and manifests (docs/encryption.md, "Stream format").

``core.engine.crypto`` re-exports everything here; callers use it through that module.

* ``EncryptingWriter(raw, keys)``: ``write()`` plaintext, ``close()`` writes the
  final chunk (``raw`` is closed only with ``close_raw=True``). In a format-2 set
  (``keys.version >= 2``) the stream is stream version 2: compressed with zstd when
  its first block shows that it pays (core/engine/compress.py), else stored as is.
* ``DecryptingReader(raw, keys, name=..., expected_name=None, max_size=None)``:
  ``read(n)`` or iterate plaintext blocks; decompresses transparently; raises
  ``EncryptedDataDamaged`` (naming ``name``) on any flipped bit, truncation,
  reordering, splicing, bad compressed data or more than ``max_size`` bytes out of
  a compressed stream, and ``ObjectNameMismatch`` at the end when the content does
  not match ``expected_name``. Plaintext handed out before the end is authentic but
  possibly incomplete: callers commit what they restore only once the reader
  reached the end without error.
* ``encrypt_bytes(keys, data)`` / ``decrypt_bytes(keys, blob, name=...)`` for
  manifests and other small metadata (same stream format).
* ``encrypted_size(n)``: ciphertext size of an uncompressed stream of ``n``
  plaintext bytes (``HEADER_LEN + TAG_LEN * max(1, ceil(n / CHUNK_SIZE)) + n``); a
  compressed one is smaller, and the manifest records its size (``Entry.stored``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from typing import TYPE_CHECKING, Iterator, NoReturn, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.engine import compress as codec
from core.errors import EncryptedDataDamaged, ObjectNameMismatch, UsageError

if TYPE_CHECKING:
    from core.engine.crypto import SetKeys

KEY_LEN = 32
MAGIC = b"PLUGBACK"
STREAM_VERSION = 1           # format-1 sets: the payload is the plaintext
STREAM_VERSION_2 = 2         # format-2 sets: byte 9 of the header says how the payload is coded
RAW, ZSTD = 0, 1             # stream version 2's coding byte
FILE_NONCE_LEN = 24          # 16 bytes salt the per-file key, 8 bytes prefix every chunk nonce
HEADER_LEN = 40              # magic 8 + version 1 + coding 1 + reserved 2 + chunk size 4 + file nonce 24
TAG_LEN = 16
CHUNK_SIZE = 1 << 20         # big chunks: the per-chunk Python work must vanish next to AES
MAX_CHUNK_SIZE = 1 << 24     # a reader refuses larger chunks (a damaged header must not eat memory)
MAX_SMALL = 256 << 20        # decrypt_bytes: the most a compressed blob may expand to by default
_MAX_CHUNKS = 1 << 32        # the chunk counter is 32 bits inside the nonce
_HEADER = struct.Struct(">8sBB2sI24s")
INFO_FILE = b"plugback v1 file key"


def hkdf(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 with 32 bytes of output (RFC 5869; no salt means 32 zero bytes)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(key)


def _file_cipher(keys: SetKeys, file_nonce: bytes) -> AESGCM:
    # A fresh key per file (salted by 16 random bytes) means a nonce prefix collision between
    # two files can never reuse a (key, nonce) pair.
    return AESGCM(hkdf(keys.content, INFO_FILE, salt=file_nonce[:16]))


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def encrypted_size(plain_len: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Bytes on the drive for an uncompressed stream of ``plain_len`` bytes: what a format-1 set
    stores, and a bound for a format-2 set (which compresses where the first block shows it saves;
    zstd stores a block it cannot shrink as is, at 3 bytes per 128 KiB)."""
    chunks = max(1, -(-plain_len // chunk_size))
    return HEADER_LEN + TAG_LEN * chunks + plain_len


def stored_field(plain_len: int, stored: int) -> int:
    """``Entry.stored`` for a stream of ``stored`` bytes holding ``plain_len`` bytes: 0 when that is
    what an uncompressed stream takes (format 1, and content that does not compress)."""
    return 0 if stored == encrypted_size(plain_len) else stored


class Readable(Protocol):
    """What a :class:`DecryptingReader` reads from: a binary file, or a chain of them."""

    def read(self, n: int = -1, /) -> bytes: ...


class Sink(Protocol):
    """Where an :class:`EncryptingWriter` writes: a binary file, or the engine's part writer."""

    def write(self, data: bytes, /) -> object: ...

    def close(self) -> None: ...


class _Sealer:
    """The chunked AEAD over a stream's payload: every chunk but the last holds exactly
    ``chunk_size`` bytes; up to one chunk is held back so the last can be flagged final."""

    def __init__(self, out, keys: SetKeys, chunk_size: int, file_nonce: bytes, version: int, coding: int):
        self._out = out
        self._chunk_size = chunk_size
        self._header = _HEADER.pack(MAGIC, version, coding, bytes(2), chunk_size, file_nonce)
        self._aead = _file_cipher(keys, file_nonce)
        self._prefix = file_nonce[16:]
        # Grows with what is held back (at most one chunk); most files are small, and a
        # 1 MiB buffer for each would cost an allocation and page faults per file.
        self._buf = bytearray()
        self._index = 0

    def _emit(self, plain, final: bool) -> None:
        if self._index >= _MAX_CHUNKS:
            raise UsageError("This file is too large to encrypt (more than 2^32 chunks).")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index), plain,
                                    _aad(self._header, self._index, final))
        # The header goes out with the first chunk: one write per small object, not two.
        self._out(self._header + sealed if self._index == 0 else sealed)
        self._index += 1

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        cs, buf = self._chunk_size, self._buf
        if buf:
            room = cs - len(buf)
            if len(view) <= room:
                buf += view
                return
            buf += view[:room]
            view = view[room:]
            self._emit(buf, final=False)  # more data follows, so this chunk is not the last
            del buf[:]
        # Encrypt straight from the caller's buffer; keep the tail (1..cs bytes) for close().
        while len(view) > cs:
            self._emit(view[:cs], final=False)
            view = view[cs:]
        buf += view   # a copy: the caller may reuse its buffer

    def close(self) -> None:
        """The final chunk (empty only for an empty payload)."""
        self._emit(self._buf, final=True)
        self._buf = bytearray()


class EncryptingWriter:
    """Encrypts what is written to it into ``raw`` in the chunked stream format.

    ``compress``: None decides per stream in a format-2 set (codec.SAMPLE bytes are
    held until then) and never compresses in a format-1 set; True or False force it
    (format-2 sets only: tests and vectors). ``file_nonce`` is for the known-answer
    tests only: never reuse one.
    """

    def __init__(self, raw: Sink, keys: SetKeys, *, chunk_size: int = CHUNK_SIZE,
                 file_nonce: bytes | None = None, close_raw: bool = False, compress: bool | None = None):
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")
        file_nonce = os.urandom(FILE_NONCE_LEN) if file_nonce is None else bytes(file_nonce)
        if len(file_nonce) != FILE_NONCE_LEN:
            raise ValueError(f"file_nonce must be {FILE_NONCE_LEN} bytes")
        self._raw = raw
        self._close_raw = close_raw
        self._closed = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self._start = (keys, chunk_size, file_nonce)
        self._packer: codec.Packer | None = None
        self._sample: bytearray | None = None   # plaintext held while the mode is undecided
        self._seal: _Sealer
        if getattr(keys, "version", 1) < 2:
            if compress:
                raise ValueError("format-1 sets are never compressed")
            self._seal = self._sealer(STREAM_VERSION, RAW)
        elif compress is None:
            self._sample = bytearray()
        else:
            self._packer = codec.Packer() if compress else None
            self._seal = self._sealer(STREAM_VERSION_2, ZSTD if compress else RAW)

    def _out(self, data: bytes) -> None:
        self._raw.write(data)
        self.ciphertext_bytes += len(data)

    def _sealer(self, version: int, coding: int) -> _Sealer:
        keys, chunk_size, file_nonce = self._start
        return _Sealer(self._out, keys, chunk_size, file_nonce, version, coding)

    def _decide(self, held, whole: bool) -> None:
        """Choose the stream's coding from the first ``codec.SAMPLE`` bytes of ``held`` (all the
        plaintext when ``whole``), then seal ``held``."""
        self._sample = None
        trial = held if whole else held[:codec.SAMPLE]
        packed = codec.pack(trial)
        if not codec.worth_it(len(trial), len(packed)):
            self._seal = self._sealer(STREAM_VERSION_2, RAW)
            self._seal.write(held)
            return
        self._seal = self._sealer(STREAM_VERSION_2, ZSTD)
        if whole:
            self._seal.write(packed)   # the trial frame is the whole stream
            return
        self._packer = codec.Packer()
        self._seal.write(self._packer.write(held))

    def write(self, data) -> int:
        """Encrypt ``data`` (any bytes-like object); returns its length."""
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        self.plaintext_bytes += size
        if self._sample is not None:
            if not self._sample and size >= codec.SAMPLE:
                self._decide(view, whole=False)   # (a big first write: no copy)
            else:
                self._sample += view
                if len(self._sample) >= codec.SAMPLE:
                    self._decide(self._sample, whole=False)
        elif self._packer is not None:
            packed = self._packer.write(view)
            if packed:
                self._seal.write(packed)
        else:
            self._seal.write(view)
        return size

    def close(self) -> None:
        """Write the final chunk. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sample is not None:
            self._decide(self._sample, whole=True)
        if self._packer is not None:
            self._seal.write(self._packer.finish())
        self._seal.close()
        if self._close_raw:
            self._raw.close()

    def __enter__(self) -> "EncryptingWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        elif self._close_raw:
            self._raw.close()


def code_whole(data, version: int) -> tuple[int, bytes]:
    """(coding, payload): how :func:`seal_whole` codes ``data`` in a set of encryption format
    ``version`` (the writer's rule: zstd where the first ``codec.SAMPLE`` bytes show it pays). Needs
    no key: a backup may code small files before the set is unlocked (core/engine/remote/ahead.py)."""
    if version < 2:
        return RAW, data
    whole = len(data) < codec.SAMPLE   # (as the writer decides: a full sample streams)
    trial = data if whole else memoryview(data)[:codec.SAMPLE]
    packed = codec.pack(trial)
    if not codec.worth_it(len(trial), len(packed)):
        return RAW, data
    if whole:
        return ZSTD, packed   # the trial frame is the whole stream
    packer = codec.Packer()
    return ZSTD, packer.write(data) + packer.finish()


def seal_whole(keys: SetKeys, data, *, file_nonce: bytes | None = None) -> bytes:
    """The stream :class:`EncryptingWriter` writes for ``data`` written and closed at once, built
    in one call: the same coding rule, the same bytes for the same ``file_nonce``
    (test_crypto holds them equal). For small files, read whole (core/engine/store.py): the
    writer's sample buffer, sealer and per-write Python cost more than a small file's cipher."""
    coding, payload = code_whole(data, getattr(keys, "version", 1))
    return seal_coded(keys, coding, payload, file_nonce=file_nonce)


def seal_coded(keys: SetKeys, coding: int, payload, *, file_nonce: bytes | None = None) -> bytes:
    """The stream of a payload :func:`code_whole` coded already (``coding``: RAW or ZSTD), sealed
    whole: ``seal_whole(keys, data)`` is ``seal_coded(keys, *code_whole(data, keys.version))``."""
    file_nonce = os.urandom(FILE_NONCE_LEN) if file_nonce is None else bytes(file_nonce)
    if len(file_nonce) != FILE_NONCE_LEN:
        raise ValueError(f"file_nonce must be {FILE_NONCE_LEN} bytes")
    version = STREAM_VERSION_2 if getattr(keys, "version", 1) >= 2 else STREAM_VERSION
    if coding not in (RAW, ZSTD) or (coding == ZSTD and version == STREAM_VERSION):
        raise ValueError("format-1 sets are never compressed" if coding == ZSTD else f"unknown coding {coding}")
    header = _HEADER.pack(MAGIC, version, coding, bytes(2), CHUNK_SIZE, file_nonce)
    aead, prefix = _file_cipher(keys, file_nonce), file_nonce[16:]
    view, out, index = memoryview(payload), [header], 0
    while True:   # every chunk but the last is whole; the last holds 1..CHUNK_SIZE bytes (0: empty)
        final = len(view) <= CHUNK_SIZE
        piece = view if final else view[:CHUNK_SIZE]
        out.append(aead.encrypt(_nonce(prefix, index), piece, _aad(header, index, final)))
        if final:
            return b"".join(out)
        view, index = view[CHUNK_SIZE:], index + 1


def open_whole(keys: SetKeys, blob, *, name: str = "", max_size: int | None = None) -> Iterator[bytes]:
    """The plaintext blocks :class:`DecryptingReader` yields for the stream ``blob`` (bytes-like),
    read whole into memory, with the same checks and errors. A stream of one chunk (a small
    file's object) is opened here with one decrypt, without the reader's buffers and records;
    any other stream, and any that does not authenticate, goes to the reader, which words
    what is wrong. No keyed-name check (the reader's ``expected_name``): callers compare the
    plain SHA-256 with the manifest."""
    view = memoryview(blob)
    if len(view) >= HEADER_LEN + TAG_LEN:
        magic, version, coding, reserved, chunk_size, file_nonce = _HEADER.unpack_from(view)
        known = (version == STREAM_VERSION and coding == RAW) or (
            version == STREAM_VERSION_2 and getattr(keys, "version", 1) >= 2 and coding in (RAW, ZSTD))
        if (magic == MAGIC and known and reserved == bytes(2) and 1 <= chunk_size <= MAX_CHUNK_SIZE
                and len(view) - HEADER_LEN <= chunk_size + TAG_LEN):
            header = bytes(view[:HEADER_LEN])
            try:
                plain = _file_cipher(keys, file_nonce).decrypt(_nonce(file_nonce[16:], 0), view[HEADER_LEN:],
                                                              _aad(header, 0, True))
            except InvalidTag:
                plain = None
            if plain is not None and coding == RAW:
                if plain:
                    yield plain
                return
            if plain is not None:
                def damaged(reason: str) -> NoReturn:
                    raise EncryptedDataDamaged(name=name, reason=reason)

                yield from codec.unpack(iter((plain,)), max_size, damaged)
                return
    yield from DecryptingReader(io.BytesIO(view), keys, name=name, max_size=max_size)


def check_whole(keys: SetKeys, blob, expected_name: str, *, name: str = "", max_size: int | None = None) -> None:
    """Raise unless the stream ``blob`` (bytes-like, held whole) opens to content whose keyed name
    is ``expected_name``: what :class:`DecryptingReader` with ``expected_name`` checks, through
    :func:`open_whole` (one decrypt for a one-chunk stream) and one SHA-256, without the reader's
    buffers and records. ``EncryptedDataDamaged`` or ``ObjectNameMismatch`` (naming ``name``)."""
    sha = hashlib.sha256()
    for block in open_whole(keys, blob, name=name, max_size=max_size):
        sha.update(block)
    if not hmac.compare_digest(keys.object_name(sha.hexdigest()), str(expected_name).lower()):
        raise ObjectNameMismatch(name=name or expected_name)


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
    ``max_size``: the most plaintext a compressed stream may expand to (the size the
    caller expects, from a manifest); None: no limit (memory stays bounded anyway).
    """

    def __init__(self, raw: Readable, keys: SetKeys, *, name: str = "", expected_name: str | None = None,
                 close_raw: bool = False, max_size: int | None = None):
        self._raw = raw
        self._close_raw = close_raw
        self.name = name
        self._expected = expected_name
        self._hasher = keys.object_hasher() if expected_name is not None else None
        self.sha256: str | None = None
        header = _read_exact(raw, HEADER_LEN)
        coding = self._check_header(header, getattr(keys, "version", 1))
        _, _, _, _, chunk_size, file_nonce = _HEADER.unpack(header)
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
        self._unpacked: Iterator[bytes] | None = None
        if coding == ZSTD:
            self._unpacked = codec.unpack(iter(self._next_payload, None), max_size, self._damaged)

    def _check_header(self, header: bytes, set_version: int) -> int:
        """The payload's coding (RAW or ZSTD) from a header that this set may hold; damage otherwise."""
        if len(header) < HEADER_LEN:
            self._damaged("it is too short to be encrypted data: the header is cut off")
        magic, version, coding, reserved, chunk_size, _ = _HEADER.unpack(header)
        if magic != MAGIC:
            self._damaged("it does not start with the Plugback encryption header")
        # The set's plugback.json already refused newer sets, so an unknown version here is
        # far more likely a flipped bit than a newer writer: report it as damage.
        if version not in (STREAM_VERSION, STREAM_VERSION_2):
            self._damaged(f"its format version {version} is unknown (damaged, or written by a newer "
                          "Plugback)")
        if version == STREAM_VERSION_2 and set_version < 2:
            self._damaged("it is a version-2 stream in a format-1 set, where none is ever written")
        # Stream version 1 has no coding byte: its place is reserved and must be zero.
        if version == STREAM_VERSION and coding != RAW:
            self._damaged("its header is damaged (a compression flag in a format-1 stream)")
        if coding not in (RAW, ZSTD) or reserved != bytes(2) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            self._damaged("its header is damaged")
        return coding

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

    def _damaged(self, reason: str) -> NoReturn:
        raise EncryptedDataDamaged(name=self.name, reason=reason)

    def _next_payload(self) -> bytes | None:
        """The next chunk's payload (authenticated), or None after the final chunk."""
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
        self._done = final
        return plain

    def _next_block(self) -> bytes | None:
        """The next block of plaintext, or None at the end (checked then: ``_finish``)."""
        block = self._next_payload() if self._unpacked is None else next(self._unpacked, None)
        if block is not None and self._hasher is not None:
            self._hasher.update(block)
        # An uncompressed stream ends with its final chunk; a compressed one once the frame is checked.
        if block is None or (self._done and self._unpacked is None):
            self._finish()
        return block

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
        hasher = self._hasher
        if hasher is None or self.sha256 is not None:
            return
        self.sha256 = hasher.sha256_hexdigest()
        if not hmac.compare_digest(hasher.hexdigest(), str(self._expected).lower()):
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
            if not self._buf and len(block) == size:
                return block  # the common case: whole chunks, no copy
            self._buf += block
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def __iter__(self) -> Iterator[bytes]:
        """Plaintext blocks (about one per chunk) to the end; raises on damage."""
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
                  chunk_size: int = CHUNK_SIZE, compress: bool | None = None) -> bytes:
    """``data`` encrypted in the stream format (manifests, small metadata)."""
    out = io.BytesIO()
    writer = EncryptingWriter(out, keys, chunk_size=chunk_size, file_nonce=file_nonce, compress=compress)
    writer.write(data)
    writer.close()
    return out.getvalue()


def decrypt_bytes(keys: SetKeys, blob: bytes, *, name: str = "", expected_name: str | None = None,
                  max_size: int = MAX_SMALL) -> bytes:
    """The plaintext of ``blob``; raises ``EncryptedDataDamaged`` naming ``name`` on damage."""
    return DecryptingReader(io.BytesIO(blob), keys, name=name, expected_name=expected_name,
                            max_size=max_size).read()
