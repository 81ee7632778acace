"""The sources read ahead of the scan (core/engine/prefetch.py): the folders the scan enters and
no others, never through a symlink; it ends when the scan does, by itself on a warm tree, and
when a backup fails before its scan."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import pytest

from core.cli import main
from core.engine import prefetch, scan_ahead
from core.engine.prefetch import THREADS, WARM_FOLDERS, Prefetch
from core.engine.scan import Excluder
from tests.support.trees import Symlink, make_tree


class Recording(Prefetch):
    """Notes the folders it lists below its one root (the OS cache it fills cannot be observed)."""

    def __init__(self, roots, *args, **kw):
        self.read: list[str] = []
        real = os.scandir

        def listing(path):
            rel = os.path.relpath(path, roots[0])
            self.read.append("" if rel == "." else rel.replace(os.sep, "/"))
            return real(path)

        prefetch.os = SimpleNamespace(scandir=listing, path=os.path, name=os.name)   # (this module's only)
        super().__init__(roots, *args, **kw)


@pytest.fixture(autouse=True)
def _os_again():
    yield
    prefetch.os = os


def _finished(p: Prefetch) -> None:
    for t in p._threads:
        t.join(timeout=30)
        assert not t.is_alive()


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plugback-prefetch"]


def test_it_reads_the_folders_the_scan_enters_and_no_others(tmp_path):
    outside = make_tree(tmp_path / "elsewhere", {"deep/x": b"x"})
    src = make_tree(tmp_path / "src", {"a/b/c.txt": b"c", "a/d.txt": b"d", "e/": None, "node_modules/m/x.js": b"x",
                                       "a/__pycache__/p.pyc": b"p", "link": Symlink(str(outside)), "f.txt": b"f"})
    excluder = Excluder(["node_modules/"], skip_dirs=[str(tmp_path / "src" / "e")])
    p = Recording([str(src)], excluder.excluded, excluder.skip_dirs, THREADS, warm_entry_s=0, count_blocks=False)
    _finished(p)
    assert sorted(p.read) == ["", "a", "a/b"]   # not node_modules, __pycache__ (defaults), the set (e), the link


def test_excludes_given_later_apply_to_folders_not_yet_read(tmp_path):
    src = make_tree(tmp_path / "src", {f"d{i}/x": b"x" for i in range(3)})
    p = Recording([str(src)], threads=0, warm_entry_s=0, count_blocks=False)   # (no threads: read here, in turn)
    assert p._read(str(src), "") == ["d0", "d1", "d2"]      # listed before the scan's excludes came
    p.exclude(lambda rel, is_dir: rel == "d1", set())
    for rel in ("d0", "d1", "d2"):
        p._read(str(src), rel)
    assert p.read == ["", "d0", "d2"]


def test_it_stops_by_itself_on_a_warm_tree(tmp_path):
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(3 * WARM_FOLDERS)})
    warm = Recording([str(src)], threads=THREADS, warm_entry_s=1.0, count_blocks=False)   # (each folder: memory speed)
    _finished(warm)
    assert warm.stopped and len(warm.read) < 2 * WARM_FOLDERS
    cold = Recording([str(src)], threads=THREADS, warm_entry_s=0, count_blocks=False)     # (no folder does)
    _finished(cold)
    assert len(cold.read) == 3 * WARM_FOLDERS + 1


@pytest.mark.skipif(not prefetch.COUNTS_BLOCKS, reason="a thread's count of blocks read: Linux only")
def test_on_linux_a_tree_read_without_the_disk_is_warm(tmp_path):
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(3 * WARM_FOLDERS)})
    for _ in range(2):   # (just written, then read: cached)
        list(os.walk(src))
    p = Recording([str(src)], threads=THREADS, warm_entry_s=0)   # (the time it takes says nothing: the block count decides)
    _finished(p)
    assert p.stopped and len(p.read) < 2 * WARM_FOLDERS


def test_stop_ends_the_threads(tmp_path):
    src = make_tree(tmp_path / "src", {f"d{i:03}/e{j}/x": b"x" for i in range(50) for j in range(3)})
    p = Prefetch([str(src)], threads=THREADS, warm_entry_s=0, count_blocks=False)
    p.stop()
    assert p.stopped and not any(t.is_alive() for t in p._threads)


def test_a_backup_stops_its_read_ahead_when_it_succeeds_or_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prefetch, "DEFAULT_THREADS", THREADS)   # (off by default: on for this test)
    monkeypatch.setattr(scan_ahead, "start", lambda *args: None)   # (no child process: the threads read ahead)
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(20)})
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    assert not _prefetch_threads()
    (tmp_path / "set" / "plugback.json").write_text("not json")   # the set cannot be opened: before any scan
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) != 0
    assert not _prefetch_threads()
