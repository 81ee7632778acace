"""Do the encrypted backup's primitives run on two cores at once? (issue #11)

Each piece of work runs once in one thread, then twice at the same time in two threads:
a speed-up near 2x means the library lets go of the GIL (and a second core was free),
1x or less that the work holds the GIL. Pieces: SHA-256 and AES-GCM of 1 MiB, zstd of
1 MiB of text, ``crypto.seal_whole`` of 8 KB files (what an encrypted set's small file costs).

    flock /tmp/pb/bench.lock nice -n 5 .venv/bin/python bench/gil_primitives.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.engine import crypto  # noqa: E402

KEYS = crypto.SetKeys.from_master(os.urandom(32), 2)
BIG = os.urandom(1 << 20)
TEXT = (b"hello world some text " * 50000)[:1 << 20]
SMALL = [os.urandom(8000) for _ in range(2000)]
AES = AESGCM(os.urandom(32))


def sha256(n: int) -> None:
    for _ in range(n):
        hashlib.sha256(BIG).digest()


def aes_gcm(n: int) -> None:
    for _ in range(n):
        AES.encrypt(bytes(12), BIG, b"")


def zstd_text(n: int) -> None:
    z = zstandard.ZstdCompressor(level=3)   # (a context per thread: they are not thread-safe)
    for _ in range(n):
        z.compress(TEXT)


def seal_small(n: int) -> None:
    for i in range(n):
        crypto.seal_whole(KEYS, SMALL[i % len(SMALL)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="the repetitions of each piece times this (a quick look)")
    args = p.parse_args(argv)
    print(f"1-minute load {os.getloadavg()[0]:.1f}")
    for what, count, work in [("sha256 1 MiB", 1000, sha256), ("aes-gcm 1 MiB", 1000, aes_gcm),
                              ("zstd text 1 MiB", 300, zstd_text), ("seal_whole 8 KB", 20000, seal_small)]:
        n = max(1, round(count * args.scale))
        name = f"{what} x{n}"
        t, c = time.perf_counter(), time.process_time()
        work(n)
        one, one_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        threads = [threading.Thread(target=work, args=(n,)) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        two, two_cpu = time.perf_counter() - t, time.process_time() - c
        print(f"{name}: one thread {one:.3f} s wall ({one_cpu:.3f} CPU); twice in two threads {two:.3f} s "
              f"wall ({two_cpu:.3f} CPU); speed-up {2 * one / two:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
