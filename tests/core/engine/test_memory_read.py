"""Memory of the reading commands is flat in the file count (issue #11).

Each command runs on a set of ~2,000 and one of ~10,000 tiny files, with
``tracemalloc`` tracing what Python allocates during the command (deterministic,
not timed); the peak may grow by less than PER_FILE bytes per added file. A
command that builds a list, a dict or a set of every entry costs several hundred
bytes per file and fails here. SQLite's scratch tables (core/engine/scratch.py)
are C allocations, not traced: their page cache is capped by design.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import shutil
import tracemalloc

import pytest

from core.cli.backup_cmds import cmd_diff, cmd_ls
from core.engine.repo import BackupSet
from core.engine.restore import RestoreOptions, restore
from core.engine.retention import RetentionPolicy, forget
from core.engine.verify import VerifyOptions, verify
from tests.support.engine import backup_path

SMALL, BIG = 2_000, 8_000
PER_FILE = 300          # bytes of traced peak per added file
_INTERNS = re.compile(r"pathlib|restore_spool")   # where strings are interned (see _peak)


def _make_files(root, n: int, generation: int = 0) -> None:
    """``n`` tiny files, 100 per folder; ``generation`` > 0 changes every 50th file."""
    for i in range(n):
        folder = root / f"d{i // 100:04d}"
        if generation == 0 and i % 100 == 0:
            folder.mkdir(parents=True)
        if generation == 0 or i % 50 == 0:
            (folder / f"file-{i:06d}.txt").write_bytes(f"file {i} generation {generation}\n".encode())


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """{n: (set path, [two snapshot ids])} for a warm-up size and the two measured ones."""
    out = {}
    for n in (20, SMALL, BIG):
        base = tmp_path_factory.mktemp(f"mem{n}")
        src = base / "Data"
        _make_files(src, n)
        first = backup_path(base / "set", [src], verify=False).snapshot_id
        _make_files(src, n, generation=1)   # a few changes: objects to prune, lines to diff
        second = backup_path(base / "set", [src], verify=False).snapshot_id
        out[n] = (base / "set", [first, second])
    return out


def _cli_args(set_path, **kw) -> argparse.Namespace:
    return argparse.Namespace(set=str(set_path), json=True, recovery_key_file=None, **kw)


def _quiet(fn):
    """``fn`` with stdout to the null device (a captured stdout would grow with the listing)."""
    def run(*args):
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            fn(*args)
    return run


def _restore(set_path, ids, out):
    shutil.rmtree(out, ignore_errors=True)
    r = restore(BackupSet.open(set_path), out, RestoreOptions(snapshot=ids[0], workers=2))
    assert r.damaged == [] and r.files_restored > 0


def _verify(read_all):
    def run(set_path, ids, out):
        assert verify(BackupSet.open(set_path), VerifyOptions(read_all=read_all, workers=2)).ok
    return run


OPERATIONS = {
    "snapshots": lambda set_path, ids, out: BackupSet.open(set_path).snapshots(),
    "ls": _quiet(lambda set_path, ids, out: cmd_ls(_cli_args(set_path, snapshot="latest", path=""))),
    "diff": _quiet(lambda set_path, ids, out: cmd_diff(_cli_args(set_path, a=ids[0], b=ids[1]))),
    "restore": _restore,
    "verify": _verify(False),
    "verify-read-all": _verify(True),
    # Last: it forgets the first snapshot of each set and prunes its old versions.
    "forget-prune": lambda set_path, ids, out: forget(BackupSet.open(set_path), RetentionPolicy(last=1)),
}


def _peak(fn, *args) -> tuple[int, bool]:
    """The peak of what Python allocates while ``fn(*args)`` runs (bytes), less any growth of
    CPython's table of interned strings; and whether that table grew.

    pathlib interns every path component it parses, so every few tens of thousands
    of paths that process-wide table is reallocated (a few MB, for every string the
    test process interned): a cost of the process, not of the command that happens
    to trigger it. ``marshal.loads`` interns the strings it reads too (restore's spool,
    core/engine/restore_spool.py). It is the one block that large still alive afterwards
    whose allocation came from a line of pathlib or of that spool's reader.
    """
    gc.collect()
    tracemalloc.start()
    try:
        fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
        interned = sum(t.size for t in tracemalloc.take_snapshot().traces
                       if t.size >= 256 * 1024 and _INTERNS.search(t.traceback[0].filename))
        return peak - interned, interned > 0
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_peak_memory_is_flat_in_the_file_count(sets, tmp_path, name):
    op = OPERATIONS[name]
    warm_path, warm_ids = sets[20]
    if name != "forget-prune":
        op(warm_path, warm_ids, tmp_path / "warm")   # imports and first-use caches, untraced
    peaks = {}
    for n in (SMALL, BIG):
        set_path, ids = sets[n]
        peaks[n], grew = _peak(op, set_path, ids, tmp_path / f"out{n}")
        if grew and name != "forget-prune":   # (forget changes the set: a second run measures another command)
            # The table grew in this run: its old copy was alive beside the new one at some moment,
            # maybe the peak's, so the peak less the new table is not the command's. The table is
            # big enough now: the run again.
            peaks[n], grew = _peak(op, set_path, ids, tmp_path / f"again{n}")
    per_file = (peaks[BIG] - peaks[SMALL]) / (BIG - SMALL)
    assert per_file < PER_FILE, f"{name}: peak {peaks} bytes grows {per_file:.0f} bytes per file"
