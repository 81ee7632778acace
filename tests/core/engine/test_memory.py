"""A backup's memory is flat in the number of files (#11): one sorted pass, nothing kept per file.

Measured in-process with tracemalloc (every Python allocation, in every thread):
the traced peak of a run over a tree of SMALL files and over one of LARGE files
may differ by at most PER_FILE bytes per added file, plus BOUNDED for buffers
that grow with a small set up to a fixed size (an encrypted manifest is read
through two records of up to 1 MiB). Before the streaming backup the difference
was about 3.5 KB per file (scan list, parent manifest as objects, a dict by
path, the new entries, the copy jobs, the written list); now it is near 0 plain,
and 16 bytes per file of trusted object names in encrypted sets.
Deterministic, not timed: the numbers are allocations, not seconds.
"""

from __future__ import annotations

import tracemalloc

import pytest

from core.engine.backup import BackupOptions, backup
from core.engine.repo import BackupSet
from tests.support.engine import open_set

SMALL, LARGE = 1_000, 5_000
PER_FILE = 150       # bytes of peak per added file, at most
BOUNDED = 5 << 19    # 2.5 MiB


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


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    return {n: _tree(root / f"src{n}" / "Data", n) for n in (SMALL, LARGE)}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_backup_peak_memory_is_flat_in_the_file_count(trees, tmp_path, encrypted):
    from core.agent.keys import Secret, make_unlocker
    from core.engine.progress import Clock

    peaks = {}
    tracemalloc.start()
    try:
        for n, src in trees.items():
            set_path = tmp_path / f"set{n}"
            BackupSet.create(set_path, Clock().now(), passphrase="pw" if encrypted else None)
            bset = open_set(set_path, make_unlocker(Secret.passphrase("pw")) if encrypted else None)
            full = _peak(bset, src)
            bset = open_set(set_path, make_unlocker(Secret.passphrase("pw")) if encrypted else None)
            same = _peak(bset, src)
            peaks[n] = (full, same)
    finally:
        tracemalloc.stop()
    added = LARGE - SMALL
    for i, kind in enumerate(("full", "no-change")):
        growth = (peaks[LARGE][i] - peaks[SMALL][i]) / added
        assert growth < PER_FILE + BOUNDED / added, f"{kind}: {growth:.0f} bytes more peak per file ({peaks})"
