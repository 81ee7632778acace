"""A failed backup leaves no descriptor open: not on a local temporary file (the spools of
``Latest.sha256``, of the proven parent's copy: deleted files in /tmp), not on the drive (the
journal, the files the read-back opened ahead: they would keep the drive busy at its eject).

Each test holds the run's error while it looks at /proc/self/fd, as a caller that logs or
reports it does: a failed run's objects live on in the error's traceback and in reference
cycles until the garbage collector finds them, so only what the run closed itself is closed.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from core.engine.progress import Progress
from core.errors import Cancelled, IOFailure
from tests.support.engine import backup_path, open_set, restore_path
from tests.support.faults import FaultyFS
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def _open_files() -> set[tuple[int, str]]:
    """(descriptor, target) of every file or deleted file this process holds open."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue   # (the listing's own descriptor)
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            out.add((int(fd), target))
    return out


def _source(tmp_path: Path, files: int = 150) -> Path:
    return make_tree(tmp_path / "Docs", {f"d{i // 50}/f{i}.txt": b"%d " % i * (i + 1) for i in range(files)})


def _change(src: Path, every: int = 3) -> None:
    for i, p in enumerate(sorted(src.rglob("*.txt"))):
        if i % every == 0:
            p.write_bytes(p.read_bytes() + b" changed")


def _ops(set_path: Path, src: Path, **options) -> list[str]:
    """The write operations a backup of ``src`` into a copy of ``set_path`` makes, in order."""
    import shutil

    probe = set_path.with_name("probe")
    shutil.copytree(set_path, probe)
    fs = FaultyFS(probe)
    backup_path(probe, [src], fs=fs, workers=1, **options)
    shutil.rmtree(probe)
    return fs.log


def test_a_backup_failing_mid_pass_closes_its_spools_before_it_raises(tmp_path):
    src = _source(tmp_path)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], workers=1)
    _change(src)
    log = _ops(set_path, src)
    at = next(i for i, op in enumerate(log, 1) if op == "create" and i > len(log) // 2)   # a copy, mid-pass
    before = _open_files()
    with pytest.raises(IOFailure) as failed:
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=at, error=errno.EIO), workers=1)
    assert _open_files() - before == set(), failed.value   # (the old code: Latest.sha256's spool, deleted, in /tmp)


def test_a_backup_from_a_proven_parent_failing_at_its_journal_closes_the_copy_and_the_journal(tmp_path):
    src, cache = _source(tmp_path), tmp_path / "cache"
    set_path = tmp_path / "set"
    backup_path(set_path, [src], workers=1, cache=cache)   # recorded: the next run's parent is proven
    _change(src)
    log = _ops(set_path, src, cache=cache)
    assert log[:2] == ["open_write", "write"]   # the journal: made, then its first line
    before = _open_files()
    with pytest.raises(IOFailure) as failed:
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=2, error=errno.EIO), workers=1, cache=cache)
    # (the old code: the parent's local copy and the spool in /tmp, journal.json on the drive)
    assert _open_files() - before == set(), failed.value
    backup_path(set_path, [src], workers=1, cache=cache)
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def test_a_failure_after_the_commit_is_the_drives_error_and_the_snapshot_stays(tmp_path):
    """The journal's removal is the last write: its failure is reported as what it is (the old
    code raised AttributeError from the failed run's checkpoint of the closed journal)."""
    src = _source(tmp_path)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], workers=1)
    _change(src)
    log = _ops(set_path, src)
    assert log[-2:] == ["close", "unlink"]
    before = _open_files()
    with pytest.raises(IOFailure, match="journal.json") as failed:
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=len(log), error=errno.EIO), workers=1)
    assert _open_files() - before == set(), failed.value
    assert len(open_set(set_path).snapshot_ids()) == 2   # committed before the failure
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    assert backup_path(set_path, [src], workers=1).files_copied == 0   # the next run finishes the steps


def test_a_read_back_stopped_at_its_first_report_closes_the_files_it_opened_ahead(tmp_path):
    src = _source(tmp_path, files=200)

    def progress(report: Progress) -> None:
        if report.phase == "verify":
            raise Cancelled()

    before = _open_files()
    with pytest.raises(Cancelled) as failed:
        backup_path(tmp_path / "set", [src], workers=1, progress=progress)
    # (the old code: up to readback.AHEAD copies in Latest/, held by the stopped read-back's generator)
    assert _open_files() - before == set(), failed.value
    assert len(open_set(tmp_path / "set").snapshot_ids()) == 1


def test_latest_sums_rewritten_after_a_rename_leaves_no_spool_unclosed(tmp_path):
    # A renamed file keeps the line count but not the names: Latest.sha256 cannot be patched in
    # place and is rewritten from a new spool; the first spool is closed, not left to the collector.
    import gc
    import warnings

    src, cache = _source(tmp_path, files=60), tmp_path / "cache"
    set_path = tmp_path / "set"
    backup_path(set_path, [src], workers=1, cache=cache)   # recorded: the next run splices Latest.sha256
    (src / "d0" / "f7.txt").rename(src / "d0" / "f7-renamed.txt")
    gc.collect()   # (earlier tests' garbage first: a simulated crash leaves its journal to the collector)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        backup_path(set_path, [src], workers=1, cache=cache)
        gc.collect()
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []
    assert (set_path / "Latest" / "Docs" / "d0" / "f7-renamed.txt").is_file()
