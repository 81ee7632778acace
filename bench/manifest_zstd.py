"""Should encrypted sets' manifests be zstd instead of gzip (issue #13)? Size and CPU of one
synthetic manifest of N entries (an encrypted set's: every file has a sha256 and an obj).

    .venv/bin/python bench/manifest_zstd.py --entries 1000000

The lines are what ``ManifestWriter`` writes (``Entry.to_dict``, compact JSON): paths in
folders of 50 files, realistic sizes and times, random hashes (they are most of the bytes
and do not compress below hex's 4 bits a character). gzip is the manifest writer's: the
deflate codec of core/engine/deflate.py (ISA-L) at level 1; zstd at levels 1 and 3. Each
codec compresses the text in 64 KiB blocks, as the writer's spool does, then unpacks it
in 1 MiB blocks; CPU seconds are the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

import zstandard

from core.engine import deflate
from core.engine.manifest import FILE, Entry

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
BLOCK = 64 << 10


def lines(n: int, seed: int = 13):
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000_000_000
    for i in range(n):
        folder, name = divmod(i, 50)
        e = Entry(f"Home/Documents/project-{folder // 100:04}/sub-{folder % 100:02}/file-{name:02}.txt", FILE,
                  size=rnd.randint(0, 200_000), mtime_ns=t0 + rnd.randint(0, 10**17), mode=0o100644,
                  sha256=os.urandom(32).hex(), ino=rnd.randint(1, 1 << 40), ctime_ns=t0 + rnd.randint(0, 10**17),
                  obj=os.urandom(32).hex())
        yield _ENCODER.encode(e.to_dict()).encode("ascii") + b"\n"


def blocks(n: int) -> list[bytes]:
    out, buf = [], bytearray()
    for line in lines(n):
        buf += line
        if len(buf) >= BLOCK:
            out.append(bytes(buf))
            buf.clear()
    out.append(bytes(buf))
    return out


def cpu(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t)
    return best, result


def gzip_pack(text: list[bytes]) -> bytes:
    z = deflate.compressobj(1, 16 + deflate.MAX_WBITS)
    return b"".join(z.compress(b) for b in text) + z.flush()


def gzip_unpack(blob: bytes) -> int:
    z, total = deflate.decompressobj(16 + deflate.MAX_WBITS), 0
    for i in range(0, len(blob), 1 << 20):
        total += len(z.decompress(blob[i:i + (1 << 20)]))
    return total


def zstd_pack(level: int):
    def pack(text: list[bytes]) -> bytes:
        z = zstandard.ZstdCompressor(level=level).compressobj()
        return b"".join(z.compress(b) for b in text) + z.flush()
    return pack


def zstd_unpack(blob: bytes) -> int:
    z, total = zstandard.ZstdDecompressor().decompressobj(), 0
    for i in range(0, len(blob), 1 << 20):
        total += len(z.decompress(blob[i:i + (1 << 20)]))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    text = blocks(args.entries)
    raw = sum(map(len, text))
    print(f"{args.entries} entries, {raw / 1e6:.1f} MB of JSON lines")
    print("| codec | size (MB) | ratio | pack CPU (s) | unpack CPU (s) |")
    print("| --- | --- | --- | --- | --- |")
    for label, pack, unpack in (("gzip (ISA-L level 1, today)", gzip_pack, gzip_unpack),
                                ("zstd level 1", zstd_pack(1), zstd_unpack),
                                ("zstd level 3", zstd_pack(3), zstd_unpack)):
        pack_s, blob = cpu(lambda p=pack: p(text), args.repeat)
        unpack_s, total = cpu(lambda u=unpack, b=blob: u(b), args.repeat)
        assert total == raw
        print(f"| {label} | {len(blob) / 1e6:.1f} | {raw / len(blob):.2f} | {pack_s:.2f} | {unpack_s:.2f} |")


if __name__ == "__main__":
    main()
