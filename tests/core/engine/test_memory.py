"""A backup's memory is flat in the number of files (#11): one sorted pass, nothing kept per file.

Measured in-process with tracemalloc (every Python allocation, in every thread):
the traced peak of a run over a tree of SMALL files and over one of LARGE files
may differ by at most PER_FILE bytes per added file, plus BOUNDED for buffers
that grow with a small set up to a fixed size (an encrypted manifest is read
through two records of up to 1 MiB) or are allocated or not depending on which
thread ran first (1 MiB read buffers); each peak is the least of TRIES runs. Before the streaming backup the difference
was about 3.5 KB per file (scan list, parent manifest as objects, a dict by
path, the new entries, the copy jobs, the written list); now it is near 0 plain,
and 16 bytes per file of trusted object names in encrypted sets.
Deterministic, not timed: the numbers are allocations, not seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from core.engine.backup import BackupOptions, backup
from core.engine.repo import BackupSet
from tests.support.engine import open_set
from tests.support.env import repo_root, subprocess_env

SMALL, LARGE = 1_000, 5_000
PER_FILE = 150       # bytes of peak per added file, at most
BOUNDED = 4 << 20    # 4 MiB: buffers of a fixed size, some allocated or not by thread timing
TRIES = 2            # each peak is the least of this many runs (timing only ever adds)


def _tree(root, n):
    """``n`` tiny files, 100 to a folder (a realistic shape: most folders are small)."""
    for i in range(n):
        d = root / f"d{i // 100:04}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"file-{i:06}.txt").write_bytes(b"%d\n" % i)
    return root


def _peak(bset, src) -> int:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = backup(bset, [src], BackupOptions(workers=1))
    assert result.status == "ok"
    return tracemalloc.get_traced_memory()[1] - base


def measure(root, encrypted: bool) -> dict[int, tuple[int, int]]:
    """{files: (full peak, no-change peak)} for trees of SMALL and LARGE files under ``root``."""
    from core.agent.keys import Secret, make_unlocker
    from core.engine.progress import Clock

    trees = {n: _tree(root / f"src{n}" / "Data", n) for n in (SMALL, LARGE)}
    unlock = make_unlocker(Secret.passphrase("pw")) if encrypted else None
    peaks = {}
    tracemalloc.start()
    try:
        for n, src in trees.items():
            runs = []
            for t in range(TRIES):
                set_path = root / f"set{n}-{t}"
                BackupSet.create(set_path, Clock().now(), passphrase="pw" if encrypted else None)
                runs.append((_peak(open_set(set_path, unlock), src), _peak(open_set(set_path, unlock), src)))
            peaks[n] = (min(r[0] for r in runs), min(r[1] for r in runs))
    finally:
        tracemalloc.stop()
    return peaks


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_backup_peak_memory_is_flat_in_the_file_count(tmp_path, encrypted):
    # A fresh interpreter: tracemalloc counts every thread, and threads other tests left
    # running (agents, servers) would add their allocations to the peaks at random.
    proc = subprocess.run([sys.executable, "-m", "tests.core.engine.test_memory", str(tmp_path), str(encrypted)],
                          capture_output=True, text=True, cwd=repo_root(), env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    peaks = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    added = LARGE - SMALL
    for i, kind in enumerate(("full", "no-change")):
        growth = (peaks[LARGE][i] - peaks[SMALL][i]) / added
        assert growth < PER_FILE + BOUNDED / added, f"{kind}: {growth:.0f} bytes more peak per file ({peaks})"


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]), sys.argv[2] == "True")))
