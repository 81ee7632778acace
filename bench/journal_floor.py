"""The floor under a journal backup in format 1 (issue #12): what any run must do with a whole-file
manifest, whatever else it skips. Not a test; prints CPU seconds (medians of --repeat).

    python bench/journal_floor.py SET [--repeat 5]

For the newest manifest of the plain set SET: read the file, unpack it (gunzip), hash its text
(SHA-256: the trailer), and pack the text again (gzip, fastest level), once with the standard
library's zlib and once with ISA-L (``isal``, what core/engine/deflate.py uses when installed).
A run that splices (core/engine/splice.py) from the parent's drive file must at least unpack and
hash the parent and pack and hash the new manifest; one that reads the local copy and copies its
pieces (core/engine/local_copy.py, pieces.py) must still unpack and hash the new manifest's text
(the trailer): the "gunzip" and "sha256" lines alone.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
import zlib
from pathlib import Path


def _timed(fn, repeat: int) -> float:
    """CPU seconds (the median): on a shared machine wall time measures the neighbours too."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    newest = sorted((args.set / "snapshots").glob("*.json.gz"))[-1]
    raw = newest.read_bytes()
    text = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
    codecs = {"zlib": zlib}
    try:
        from isal import isal_zlib

        codecs["isal"] = isal_zlib
    except ImportError:
        print("isal is not installed: zlib only", file=sys.stderr)
    entries = text.count(b"\n") - 2
    print(f"{newest.name}: {len(raw) / 1e6:.1f} MB gzip, {len(text) / 1e6:.1f} MB text, "
          f"{entries:,} entries; medians of {args.repeat}")
    print(f"  read the file: {_timed(newest.read_bytes, args.repeat):.3f} s")
    print(f"  sha256 of the text: {_timed(lambda: hashlib.sha256(text).digest(), args.repeat):.3f} s")
    for name, codec in codecs.items():
        def pack(codec=codec):
            z = codec.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            return z.compress(text) + z.flush()

        unpack = _timed(lambda codec=codec: codec.decompressobj(16 + zlib.MAX_WBITS).decompress(raw), args.repeat)
        packed = _timed(pack, args.repeat)
        print(f"  {name}: gunzip {unpack:.3f} s, gzip -1 {packed:.3f} s ({len(pack()) / 1e6:.1f} MB); "
              f"floor (gunzip + sha256 + gzip + sha256) about "
              f"{unpack + packed + 2 * _timed(lambda: hashlib.sha256(text).digest(), 1):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
