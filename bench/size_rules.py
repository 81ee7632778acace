"""What an encrypted set of a folder would hold under each compression rule (issue #13's size goal).

For every distinct file content below FOLDER (a set stores each content once), the size of
its encrypted stream (``crypto_stream``'s header, payload and a tag per 1 MiB chunk) when the
payload is the plaintext or one zstd frame of it, and the CPU seconds spent compressing, for:

* ``sample`` — the writer's rule (``core/engine/compress.py``): the first 128 KiB decide; the
  stream is zstd level ``LEVEL`` if they shrink to 90 % or less, else stored as is;
* ``sample-else-L`` — the same, but a stream whose sample does not shrink is still one zstd
  frame, at the faster level L (zstd stores each 128 KiB block that does not shrink as a raw
  block: 3 bytes per block);
* ``always-L`` — every stream one zstd frame at level L.

Sizes are given in bytes and as allocated in 4 KiB blocks (one file per object, as in a local
set's ``objects/``). No key is needed: encryption does not change sizes.

    nice .venv/bin/python bench/size_rules.py /var/tmp/pb-bench/datasets/scale1-seed42-v1/tree
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.engine import compress  # noqa: E402
from core.engine.crypto_stream import CHUNK_SIZE, HEADER_LEN, TAG_LEN  # noqa: E402

BLOCK = 4096


def contents(folder: Path):
    """Each distinct regular file's bytes, once (files are read whole: fine for the bench set)."""
    seen: set[bytes] = set()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            data = Path(path).read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest not in seen:
                seen.add(digest)
                yield data


def stream_size(payload: int) -> int:
    return HEADER_LEN + TAG_LEN * max(1, -(-payload // CHUNK_SIZE)) + payload


def frame(data: bytes, level: int) -> int:
    """The size of one streamed zstd frame of ``data`` (as ``compress.Packer`` writes it)."""
    z = zstandard.ZstdCompressor(level=level).compressobj()
    out = 0
    for i in range(0, len(data), CHUNK_SIZE):
        out += len(z.compress(data[i:i + CHUNK_SIZE]))
    return out + len(z.flush())


def payload(data: bytes, rule: tuple[str, int]) -> int:
    kind, level = rule
    if kind == "always":
        return frame(data, level)
    sample = data[:compress.SAMPLE]
    if compress.worth_it(len(sample), len(compress.pack(sample))):
        return frame(data, compress.LEVEL)
    return frame(data, level) if kind == "else" else len(data)


RULES = {"sample": ("sample", 0), "sample-else-1": ("else", 1), "sample-else--1": ("else", -1),
         "always-3": ("always", 3), "always-1": ("always", 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--rules", default=",".join(RULES), help="comma-separated, from: " + ", ".join(RULES))
    args = p.parse_args(argv)
    rules = [r for r in args.rules.split(",") if r]
    totals = {r: [0, 0, 0.0] for r in rules}   # bytes, allocated, CPU seconds
    count = plain = 0
    for data in contents(args.folder):
        count += 1
        plain += len(data)
        for r in rules:
            t = time.process_time()
            size = stream_size(payload(data, RULES[r]))
            totals[r][2] += time.process_time() - t
            totals[r][0] += size
            totals[r][1] += -(-size // BLOCK) * BLOCK
    print(f"{count} distinct contents, {plain / 1e6:.1f} MB")
    print("| rule | bytes (MB) | allocated, 4 KiB blocks (MiB) | CPU s (compression) |")
    print("| --- | --- | --- | --- |")
    for r in rules:
        size, allocated, cpu = totals[r]
        print(f"| {r} | {size / 1e6:.3f} | {allocated / 2**20:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
