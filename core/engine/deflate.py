"""The deflate codec manifests are written and read with: ISA-L (the ``isal`` package) where it
is installed, else the standard library's zlib.

Both speak the same format (RFC 1951/1952: anything one writes the other reads, and so does
every gzip tool), so this changes speed, never bytes' meaning. ISA-L's fastest level
compresses a manifest about seven times faster than zlib's and unpacks it three times
faster, which is most of what a journal backup does with a large manifest
(docs/performance.md, "Change journal"). Its output differs from zlib's byte for byte
(and is a little smaller); nothing depends on the compressed bytes themselves.
"""

from __future__ import annotations

import types
import zlib

_codec: types.ModuleType
try:
    from isal import isal_zlib as _codec
except ImportError:   # (no wheel for this platform: the same format, only slower)
    _codec = zlib

MAX_WBITS = zlib.MAX_WBITS
DEFLATED = zlib.DEFLATED
Z_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
Z_FINISH = zlib.Z_FINISH
#: What a damaged stream raises (ISA-L's error is not zlib's).
error: tuple[type[Exception], ...] = (zlib.error, _codec.error)


def compressobj(level: int, wbits: int):
    return _codec.compressobj(level, zlib.DEFLATED, wbits)


def decompressobj(wbits: int):
    return _codec.decompressobj(wbits)


crc32 = _codec.crc32
