"""``Latest/``'s metadata read ahead of a restore by a child process (core/engine/restore_walk.py), and
a small file's content read in one call when it is exactly the size the manifest says (issue #11)."""

from __future__ import annotations

import os
import threading

import pytest

from core.engine import restore_ahead, restore_walk
from tests.support.engine import backup_path, restore_path
from tests.support.trees import make_tree, read_tree

pytestmark = pytest.mark.skipif(not restore_ahead.READS_AHEAD, reason="Linux only (fork, reads ahead)")

TREE = {f"d{i}/f{j}.txt": f"file {i}.{j} ".encode() * (j + 1) for i in range(4) for j in range(5)}
TREE.update({"empty.txt": b"", "top.txt": b"at the top"})


@pytest.fixture
def backed_up(tmp_path):
    src = make_tree(tmp_path / "Docs", TREE)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job="Docs")
    return src, set_path


@pytest.fixture
def children(monkeypatch):
    """The children started (their LatestAhead) and the roots each walked."""
    started: list[tuple[list[str], restore_walk.LatestAhead | None]] = []
    real = restore_walk.start

    def start(roots):
        ahead = real(roots)
        started.append((roots, ahead))
        return ahead

    monkeypatch.setattr(restore_walk, "start", start)
    return started


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_newest_snapshot_is_restored_byte_for_byte_with_latest_walked_ahead(backed_up, tmp_path, children):
    src, set_path = backed_up
    result = restore_path(set_path, tmp_path / "out")
    assert result.files_restored == len(TREE) and not result.damaged
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)
    [(roots, ahead)] = children
    assert roots == [str(set_path / "Latest")]
    assert ahead is not None and ahead.pid == 0   # stopped when the restore ended
    assert [p.name for p in (tmp_path / "out").rglob(".plugback-restore-*")] == []


def test_the_child_is_killed_and_reaped_when_the_restore_ends(backed_up, tmp_path, monkeypatch):
    _, set_path = backed_up
    pids: list[int] = []
    real_stop = restore_walk.LatestAhead.stop

    def stop(self):
        pids.append(self.pid)
        real_stop(self)

    monkeypatch.setattr(restore_walk.LatestAhead, "stop", stop)
    restore_path(set_path, tmp_path / "out")
    assert len(pids) == 1 and pids[0] > 0 and _reaped(pids[0])


def test_only_the_wanted_folders_are_walked(backed_up, tmp_path, children):
    _, set_path = backed_up
    result = restore_path(set_path, tmp_path / "out", paths=["Docs/d1"])
    assert result.files_restored == 5
    assert children[0][0] == [str(set_path / "Latest" / "Docs" / "d1")]


def test_no_child_for_an_older_snapshot(backed_up, tmp_path, children):
    src, set_path = backed_up
    (src / "top.txt").write_bytes(b"changed since")
    backup_path(set_path, [src], job="Docs")
    from tests.support.engine import open_set

    oldest = open_set(set_path).snapshot_ids()[0]
    result = restore_path(set_path, tmp_path / "out", snapshot=oldest)
    assert (tmp_path / "out" / "Docs" / "top.txt").read_bytes() == b"at the top" and not result.damaged
    assert children == []


def test_no_fork_while_another_thread_runs(tmp_path):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert restore_walk.start([str(tmp_path)]) is None
    finally:
        stop.set()
        other.join()


def test_the_walk_reads_every_entry_and_follows_no_symlink(tmp_path):
    make_tree(tmp_path / "Latest" / "a", {"x/1": b"1", "x/2": b"2", "y": b"3"})
    make_tree(tmp_path / "elsewhere", {f"f{i}": b"" for i in range(10)})
    (tmp_path / "Latest" / "a" / "link").symlink_to(tmp_path / "elsewhere")
    # a, x, 1, 2, y, link: the ten files behind the link are never listed
    assert restore_walk.walk([str(tmp_path / "Latest")]) == 6
    assert restore_walk.walk([str(tmp_path / "missing"), str(tmp_path / "Latest" / "a" / "x")]) == 2


def test_wanted_paths_become_folders_below_latest_and_unsafe_ones_are_left_out():
    latest = os.path.join("/set", "Latest")
    assert restore_walk.folders(latest, []) == [latest]
    assert restore_walk.folders(latest, ["/Docs/a/", "Docs/a", "Pics"]) == [
        os.path.join(latest, "Docs", "a"), os.path.join(latest, "Pics")]
    assert restore_walk.folders(latest, ["Docs/../..", "Docs//a", "Docs\\x", "Docs/ok"]) == [
        os.path.join(latest, "Docs", "ok")]


@pytest.mark.parametrize("content", [b"file 1.2 file 1.2 file 1.2 !", b"file 1.2 file 1.2 ", b"",
                                     b"file 1.2 file 1.2 file 1.3 "], ids=["longer", "shorter", "empty", "same size"])
def test_a_small_content_file_of_another_size_or_bytes_is_damaged(backed_up, tmp_path, content):
    """Read in one call when it is exactly the recorded size: a longer one fills the read past it."""
    _, set_path = backed_up
    assert TREE["d1/f2.txt"] == b"file 1.2 " * 3
    (set_path / "Latest" / "Docs" / "d1" / "f2.txt").write_bytes(content)
    result = restore_path(set_path, tmp_path / "out")
    assert [p for p, _ in result.damaged] == ["Docs/d1/f2.txt"]
    assert "does not match its checksum" in result.damaged[0][1]
    assert not (tmp_path / "out" / "Docs" / "d1" / "f2.txt").exists()
    assert (tmp_path / "out" / "Docs" / "d1" / "f1.txt").read_bytes() == TREE["d1/f1.txt"]
    assert [p.name for p in (tmp_path / "out").rglob(".plugback-restore-*")] == []
