"""Where one full backup to a loopback WebDAV remote spends its wall time (issue #13): a timeline.

    .venv/bin/python -P bench/remote_timeline.py                  # 300 x 4 KiB + 4 x 16 MiB
    .venv/bin/python -P bench/remote_timeline.py --dataset 0.1    # bench/make_dataset.py's tree
    .venv/bin/python -P bench/remote_timeline.py --source DIR --all
    .venv/bin/python -P bench/remote_timeline.py --dataset 0.1 --existing  # into a set made first

Runs ``plugback backup SRC --to rclone:wd:NAME`` in this process (this checkout's code) against
``rclone serve webdav`` over a temporary folder, with the rc calls and the run's phases stamped
(seconds since the engine's imports began: the interpreter's own start, ~0.03 s, is not in it;
the thread that ran them), and counts the WebDAV requests
rclone made (its ``--dump headers`` log): rclone's WebDAV backend starts one request every 10 ms
at most, so the count sets the pace (docs/performance.md, "Remote sets, fourth pass"). Prints
each kind of step (count, summed seconds, first start, last end); ``--all`` every step too.
``--existing``: the set is made first (an empty folder backed up, in another process, untimed),
so the run opens it (the passphrase's scrypt before anything: "unlock") instead of making it.
A measurement, not a test: run it on a quiet machine, several times.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.remote_set import _server_cpu, make_dataset, make_source  # noqa: E402
from tests.support.rclone import RcloneWorld  # noqa: E402

_REQUEST = re.compile(r"DEBUG : (GET|PUT|MOVE|PROPFIND|MKCOL|DELETE|HEAD|COPY|POST) /")


T0 = [time.time()]       # when the engine's imports begin (reset just before them)
STEPS: list[tuple[float, float, str, str]] = []


def _stamp(owner, attr: str, label: str, key=None) -> None:
    """Wrap ``owner.attr`` so each call is recorded as (start, end, thread, label[+key])."""
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def stamped(*args, **kwargs):
        start = time.time() - T0[0]
        try:
            return fn(*args, **kwargs)
        finally:
            STEPS.append((start, time.time() - T0[0], threading.current_thread().name,
                          label + (key(*args, **kwargs) if key else "")))

    setattr(owner, attr, stamped)


def instrument(log: list[str], dump: bool = True) -> None:
    """Stamp the rc calls and the run's phases; keep rclone's log lines in ``log`` (with requests)."""
    from core.engine import crypto
    from core.engine.remote import backup, commit, packs, parent
    from core.engine.storage import rclone, rclone_rcd

    _stamp(rclone_rcd.Rcd, "_start", "rclone rcd started")
    _stamp(rclone_rcd.Rcd, "call", "rc ", key=lambda self, path, params: path)
    _stamp(rclone_rcd.Rcd, "download", "rc download (until its headers)")
    _stamp(rclone.RcloneBackend, "put", "put ", key=lambda self, name, data: name.split("/")[0])
    # (A new set's first backup puts in two steps: the upload to tmp/ at once, the move after the lock.)
    _stamp(rclone.RcloneBackend, "stage", "put ", key=lambda self, name, data: name.split("/")[0] + ": to tmp/")
    _stamp(rclone.RcloneBackend, "commit", "put ", key=lambda self, staged: staged.name.split("/")[0] + ": moved")
    _stamp(crypto, "create_encryption", "scrypt (the new set's key)")
    _stamp(crypto, "unlock_with_passphrase", "unlock (scrypt, an existing set)")
    _stamp(backup.RemoteLock, "acquire", "lock taken")
    _stamp(backup._Run, "execute", "the run (scan to manifest)")
    _stamp(backup._Run, "_read_small", "small files read, packed")
    _stamp(packs.Packer, "_store", "pack stored (put, read back, index)")
    _stamp(commit.StagedManifest, "__init__", "manifest encrypted, checked, to tmp/")
    _stamp(commit.StagedManifest, "commit", "manifest put and read back")   # (moved onto its name)
    _stamp(packs.Packer, "wait", "the last pack waited for")
    _stamp(parent.ParentAhead, "_fetch", "parent manifest fetched ahead")
    real_drain = rclone_rcd._drain

    def drain(proc, lines, last_words, secret):
        real_drain(proc, _Tee(lines, log), last_words, secret)

    rclone_rcd._drain = drain
    if not dump:
        return
    real_init = rclone_rcd.Rcd.__init__

    def init(self, exe="rclone", extra_args=()):
        real_init(self, exe, [*extra_args, "--dump", "headers", "--log-level", "DEBUG"])

    rclone_rcd.Rcd.__init__ = init   # type: ignore[method-assign]


class _Tee:
    """The rcd's line queue, also keeping every line in ``log``."""

    def __init__(self, lines, log: list[str]):
        self._lines, self._log = lines, log

    def put(self, line) -> None:
        if line is not None and _REQUEST.search(line):
            self._log.append(line)
        self._lines.put(line)


def report(total: float, requests: list[str], everything: bool) -> None:
    kinds = collections.Counter(_REQUEST.search(line).group(1) for line in requests)   # type: ignore[union-attr]
    print(f"backup: {total:.3f} s from the engine's imports on; WebDAV requests {sum(kinds.values())} {dict(kinds)}")
    groups: dict[str, list] = collections.defaultdict(lambda: [0, 0.0, 1e9, 0.0])
    for start, end, _, label in STEPS:
        g = groups[label]
        g[0], g[1], g[2], g[3] = g[0] + 1, g[1] + end - start, min(g[2], start), max(g[3], end)
    for label, (n, summed, first, last) in sorted(groups.items(), key=lambda kv: kv[1][2]):
        print(f"{label:42} {n:5}x  sum {summed:7.3f}  first {first:6.3f}  last end {last:6.3f}")
    if everything:
        for line in requests:
            print(line)
        for start, end, thread, label in sorted(STEPS):
            print(f"{start:7.3f} {end:7.3f} {end - start:6.3f} {thread:22} {label}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=float, metavar="SCALE", help="bench/make_dataset.py's tree at SCALE")
    ap.add_argument("--source", type=Path, help="back up this folder instead")
    ap.add_argument("--all", action="store_true", help="print every step, not only the sums")
    ap.add_argument("--no-dump", action="store_true", help="no --dump headers (rclone's own CPU as in a real run; "
                    "no request count)")
    ap.add_argument("--existing", action="store_true", help="make the set first (untimed), then time a backup into it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pb-remote-timeline-") as tmp:
        source = args.source or Path(tmp) / "src" / "data"
        if args.source is None:
            make_dataset(source, args.dataset) if args.dataset else make_source(source, 300, 4)
        world = RcloneWorld(Path(tmp) / "rclone")
        server = world.serve_webdav(Path(tmp) / "served")
        world.add_webdav("wd", server)
        os.environ.update(RCLONE_CONFIG=str(world.config), PLUGBACK_HOME=str(Path(tmp) / "home"))
        os.environ.setdefault("PLUGBACK_PASSPHRASE", "bench passphrase")
        requests: list[str] = []
        try:
            if args.existing:
                _make_set(Path(tmp) / "empty", "rclone:wd:timeline")
            T0[0] = time.time()
            cpu0, server0 = os.times(), _server_cpu(server.proc.pid)
            instrument(requests, dump=not args.no_dump)
            from core.cli import main as cli

            with contextlib.redirect_stdout(io.StringIO()):
                code = cli(["backup", str(source), "--to", "rclone:wd:timeline", "--json"])
            total = time.time() - T0[0]
            cpu1, server1 = os.times(), _server_cpu(server.proc.pid)
        finally:
            world.close()
        if code != 0:
            raise SystemExit(f"the backup failed ({code})")
    report(total, requests, args.all)
    # (rclone rcd has exited and been reaped by now: its CPU is in the children's times.)
    print(f"CPU s: plugback {cpu1.user - cpu0.user + cpu1.system - cpu0.system:.3f}, rclone "
          f"{cpu1.children_user - cpu0.children_user + cpu1.children_system - cpu0.children_system:.3f}, "
          f"WebDAV server {server1 - server0:.3f}")


def _make_set(empty: Path, spec: str) -> None:
    """The set made by a backup of an empty folder, in another process (this one's imports stay cold)."""
    import subprocess

    empty.mkdir()
    subprocess.run([sys.executable, "-P", "-m", "core.cli", "backup", str(empty), "--to", spec, "--json"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


if __name__ == "__main__":
    main()
