"""zstd inside the encrypted stream of format-2 encrypted sets (docs/encryption.md, "Compression").

Content is compressed before it is encrypted, and only where it pays, decided per
stream like borg's ``auto``: the first :data:`SAMPLE` bytes (the whole content when
it is smaller) are compressed once, and the stream is compressed only when that
sample shrinks to :data:`KEEP_NUM`/:data:`KEEP_DEN` of its size or less. Photos,
videos and archives fail the test on their first block and cost no further zstd work.

Reading is the untrusted side (the drive): :class:`Unpacker` turns a stream of
compressed bytes into plaintext in blocks of at most :data:`OUT_BLOCK` bytes, never
more than ``max_size`` in all (a decompression bomb stops at the size the caller
expected), refuses frames that need a window over :data:`MAX_WINDOW`, and reports
a damaged or truncated frame; each as ``EncryptedDataDamaged`` through ``damaged``.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator, NoReturn

import zstandard

LEVEL = 3                    # zstd's default: about 3x faster than level 9 for a few % more bytes
SAMPLE = 128 * 1024          # bytes tried before a stream's mode is decided
KEEP_NUM, KEEP_DEN = 9, 10   # compress when the sample shrinks to 90 % or less
MAX_WINDOW = 1 << 23         # 8 MiB: our writer uses 2 MiB at LEVEL; a bigger window is damage
OUT_BLOCK = 1 << 20          # plaintext handed out at a time (memory stays flat whatever the ratio)

# zstandard's contexts are not thread-safe (backup and restore run streams in worker threads),
# and a new one costs more than a small file's whole decompression: each thread keeps its own,
# a compressor for one-shot frames and a few decompressors (two streams of one thread may be
# read interleaved, so a stream holds one until it ends).
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    z = getattr(_local, "z", None)
    if z is None:
        z = _local.z = zstandard.ZstdCompressor(level=LEVEL)
    return z


def _take_decompressor() -> zstandard.ZstdDecompressor:
    free = getattr(_local, "free", None)
    return free.pop() if free else zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)


def _give_back(d: zstandard.ZstdDecompressor) -> None:
    free = _local.__dict__.setdefault("free", [])
    if len(free) < 4:
        free.append(d)


def worth_it(sample_len: int, packed_len: int) -> bool:
    """Whether compressing saved enough on the sample: the per-stream rule."""
    return packed_len * KEEP_DEN <= sample_len * KEEP_NUM


def pack(data) -> bytes:
    """One zstd frame holding ``data`` (its size recorded in the frame header)."""
    return _compressor().compress(data)


class Packer:
    """A streaming zstd frame: ``write`` returns the compressed bytes ready so far, ``finish`` the rest.

    The frame header records no content size: the size is not known until the end.
    Each stream gets its own context (zstandard's are not thread-safe).
    """

    def __init__(self):
        self._z = zstandard.ZstdCompressor(level=LEVEL).compressobj()

    def write(self, data) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Source:
    """The compressed bytes as a file for zstandard: one block at a time; notes whether it ran dry."""

    def __init__(self, blocks: Iterator[bytes]):
        self._blocks = blocks
        self._held = b""
        self.ran_dry = False

    def read(self, n: int) -> bytes:
        if not self._held:
            self._held = next(self._blocks, b"")
            if not self._held:
                self.ran_dry = True
                return b""
        out, self._held = self._held[:n], self._held[n:]
        return out

    def left_over(self) -> bool:
        """Whether compressed bytes remain after zstandard stopped reading."""
        return bool(self._held) or any(self._blocks)


def unpack(blocks: Iterator[bytes], max_size: int | None, damaged: Callable[[str], NoReturn]) -> Iterator[bytes]:
    """The plaintext of the one zstd frame in ``blocks``, at most ``OUT_BLOCK`` bytes at a time.

    ``damaged(reason)`` raises: on a bad or truncated frame, bytes after the frame,
    a window over ``MAX_WINDOW``, or more than ``max_size`` bytes of output (None: no
    limit but the streaming one on memory). Errors raised by ``blocks`` (a chunk that
    does not authenticate) pass through unchanged.
    """
    source = _Source(blocks)
    total = 0
    dctx = _take_decompressor()
    try:
        # read_to_iter stops at the end of the first frame and yields at most write_size bytes at a
        # time, whatever the ratio: a bomb costs time only up to max_size, never memory.
        # (zstandard's stubs want an IO[bytes]; it calls only read(n) on it)
        for out in dctx.read_to_iter(source, read_size=OUT_BLOCK, write_size=OUT_BLOCK):  # type: ignore[arg-type]
            total += len(out)
            if max_size is not None and total > max_size:
                damaged(f"it expands to more than the {max_size} bytes recorded for it "
                        "(damaged, or a decompression bomb)")
            yield out
    except zstandard.ZstdError as err:
        damaged(f"its compressed data is damaged ({err})")
    finally:
        _give_back(dctx)
    # zstandard ends quietly when its input ends inside a frame: that is a cut frame.
    if source.ran_dry:
        damaged("its compressed data is cut short (the frame does not end)")
    if source.left_over():
        damaged("it holds data after the end of its compressed frame")
