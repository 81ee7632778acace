"""How Plugback should drive rclone (issue #13): one ``rclone rcd`` against one ``rclone`` command
per operation or per batch, on a loopback WebDAV server (``rclone serve webdav``) and a ``local`` remote.

    .venv/bin/python bench/storage_rclone.py                     # 1,000 x 4 KiB and 4 x 16 MiB
    .venv/bin/python bench/storage_rclone.py --small 200 --big 2 --markdown

Ways measured, each for put, get and list of N small blobs and of a few 16 MiB blobs:

* ``rcd``: the RcloneBackend (core.engine.storage.rclone): one rclone process, an HTTP call per
  operation (uploads staged in tmp/ and moved into place, as the backend always does);
* ``command``: one ``rclone rcat`` / ``rclone cat`` per blob, one ``rclone lsjson -R`` per listing
  (no staging: the cheapest a command per operation can be);
* ``batch``: the blobs written to a local folder first, then one ``rclone copy`` up (and one down):
  what batching commands would cost at best (it needs the whole batch on local disk first).

Reports wall seconds per phase; nothing is asserted. Numbers: docs/architecture.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]   # a script run from the checkout measures this checkout's code

from core.engine.storage import RcloneBackend  # noqa: E402
from tests.support.rclone import RCLONE, RcloneWorld  # noqa: E402

SMALL = 4096
BIG = 16 << 20


def blobs(n_small: int, n_big: int) -> list[tuple[str, bytes]]:
    out = [(f"objects/{i % 256:02x}/{i:064x}", os.urandom(SMALL)) for i in range(n_small)]
    return out + [(f"objects/ff/big{i}", os.urandom(BIG)) for i in range(n_big)]


def groups(items) -> list[tuple[str, list]]:
    """The blobs by size class, leaving out an empty class (``--big 0``)."""
    out = [("small", [i for i in items if len(i[1]) == SMALL]), ("big", [i for i in items if len(i[1]) == BIG])]
    return [(label, group) for label, group in out if group]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_rcd(fs: str, items) -> dict:
    b = RcloneBackend("rclone:" + fs)
    try:
        out = {}
        for label, group in groups(items):
            out[f"put {label}"] = timed(lambda g=group: [b.put(n, d) for n, d in g])
            out[f"get {label}"] = timed(lambda g=group: [sum(map(len, b.get(n))) for n, _ in g])
        out["list"] = timed(lambda: sum(1 for _ in b.list()))
        return out
    finally:
        b.close()


def rclone(*args, data: bytes | None = None) -> bytes:
    return subprocess.run([RCLONE, *args], input=data, capture_output=True, check=True).stdout


def run_command(fs: str, items) -> dict:
    out = {}
    for label, group in groups(items):
        out[f"put {label}"] = timed(lambda g=group: [rclone("rcat", f"{fs}/{n}", data=d) for n, d in g])
        out[f"get {label}"] = timed(lambda g=group: [rclone("cat", f"{fs}/{n}") for n, _ in g])
    out["list"] = timed(lambda: len(json.loads(rclone("lsjson", "-R", "--files-only", "--no-modtime",
                                                      "--no-mimetype", fs))))
    return out


def run_batch(fs: str, items, work: Path) -> dict:
    out = {}
    for label, group in groups(items):
        stage, back = work / f"stage-{label}", work / f"back-{label}"

        def put(g=group, stage=stage, label=label):
            stage.mkdir(parents=True, exist_ok=True)
            for n, d in g:
                (stage / n).parent.mkdir(parents=True, exist_ok=True)
                (stage / n).write_bytes(d)
            rclone("copy", str(stage), f"{fs}/{label}")

        out[f"put {label}"] = timed(put)
        out[f"get {label}"] = timed(lambda back=back, label=label: rclone("copy", f"{fs}/{label}", str(back)))
    out["list"] = timed(lambda: rclone("lsjson", "-R", "--files-only", "--no-modtime", "--no-mimetype", fs))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--big", type=int, default=4)
    ap.add_argument("--ways", default="rcd,command,batch")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if RCLONE is None:
        print("rclone is not installed (apt-get install rclone)", file=sys.stderr)
        return 1
    items = blobs(args.small, args.big)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pb-rclone-bench-") as tmp:
        world = RcloneWorld(Path(tmp) / "rclone")
        os.environ["RCLONE_CONFIG"] = str(world.config)
        world.add_local("loc")
        world.add_webdav("wd", world.serve_webdav(Path(tmp) / "served"))
        try:
            for remote, base in (("webdav", "wd:"), ("local", f"loc:{tmp}/local/")):
                for way in args.ways.split(","):
                    fs = f"{base}{way}"
                    if way == "rcd":
                        results[f"{remote} {way}"] = run_rcd(fs, items)
                    elif way == "command":
                        results[f"{remote} {way}"] = run_command(fs, items)
                    else:
                        work = Path(tmp) / f"work-{remote}"
                        results[f"{remote} {way}"] = run_batch(fs, items, work)
                        shutil.rmtree(work)
                    print(f"{remote} {way}: done", file=sys.stderr)
        finally:
            world.close()
    report(results, args)
    return 0


def report(results: dict, args) -> None:
    phases = ["put small", "get small", "put big", "get big", "list"]
    head = (f"| way (seconds; {args.small} x {SMALL // 1024} KiB, {args.big} x {BIG >> 20} MiB) | "
            + " | ".join(phases) + " |")
    if args.markdown:
        print(head)
        print("|" + " --- |" * (len(phases) + 1))
    for name, r in results.items():
        cells = [f"{r[p]:.2f}" if p in r else "-" for p in phases]
        print(f"| {name} | " + " | ".join(cells) + " |" if args.markdown else f"{name:16} " + "  ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
