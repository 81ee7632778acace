"""The sources read ahead of the scan by a child process (core/engine/scan_ahead.py): the folders and
entries the scan reads and no others, never through a symlink; the child ends by itself, when it is
stopped, and when its parent is gone; ``plugback backup`` reaps it whether the backup succeeds or
fails."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from core.cli import main
from core.engine import scan_ahead
from core.engine.scan import Excluder
from tests.support.trees import Symlink, make_tree

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the child is started on Linux only")


@pytest.fixture
def one_thread(monkeypatch):
    """As in ``plugback backup``, where no other thread runs when the child is started (threads other
    tests left in this process run nothing the child touches: it only walks folders)."""
    monkeypatch.setattr(scan_ahead.threading, "active_count", lambda: 1)


def _tree(tmp_path):
    outside = make_tree(tmp_path / "elsewhere", {"deep/x": b"x", "deep/y": b"y"})
    return make_tree(tmp_path / "src", {"a/b/c.txt": b"c", "a/d.txt": b"d", "e/f.txt": b"f",
                                        "node_modules/m/x.js": b"x", "a/__pycache__/p.pyc": b"p",
                                        "link": Symlink(str(outside)), "g.txt": b"g"})


def _listed(monkeypatch, root) -> list[str]:
    """The folders ``walk`` lists below ``root`` (the OS cache it fills cannot be observed)."""
    listed: list[str] = []
    real = scan_ahead._listed

    def listing(path, top):
        rel = os.path.relpath(path, root)
        listed.append("" if rel == "." else rel.replace(os.sep, "/"))
        return real(path, top)

    monkeypatch.setattr(scan_ahead, "_listed", listing)
    return listed


def test_it_reads_the_folders_the_scan_enters_and_no_others(tmp_path, monkeypatch):
    src = _tree(tmp_path)
    listed = _listed(monkeypatch, src)
    excluder = Excluder(["node_modules/"], skip_dirs=[str(src / "e")])   # (e: the set, inside the source)
    n = scan_ahead.walk([str(src)], excluder)
    # Not node_modules (excluded), __pycache__ (a default exclude), the set (e), nor through the link.
    assert listed == ["", "a", "a/b"]
    # Each entry of those folders lstat-ed once: a, e, g.txt, link, node_modules; b, d.txt, __pycache__; c.txt.
    assert n == 9


def test_it_stops_when_its_parent_is_gone(tmp_path, monkeypatch):
    src = _tree(tmp_path)
    listed = _listed(monkeypatch, src)
    assert scan_ahead.walk([str(src)], Excluder(), parent=os.getpid()) == 0   # (not this process's parent)
    assert listed == []


def test_a_folder_it_cannot_read_is_passed_over(tmp_path):
    src = make_tree(tmp_path / "src", {"a/x": b"x", "b/y": b"y"})
    assert scan_ahead.walk([str(src), str(tmp_path / "gone")], Excluder()) == 4


def test_the_engines_compiled_modules_are_asked_for(tmp_path):
    tag = sys.implementation.cache_tag
    make_tree(tmp_path / "pkg", {f"__pycache__/a.{tag}.pyc": b"a", f"__pycache__/b.{tag}.pyc": b"b",
                                 "__pycache__/c.cpython-10.pyc": b"c", f"__pycache__/d.{tag}.pyc.tmp": b"d",
                                 f"__pycache__/e.{tag}.pyc": Symlink(str(tmp_path / "pkg" / "a.py")),
                                 "a.py": b""})
    assert scan_ahead.load_ahead(str(tmp_path / "pkg")) == 2   # (not another version's, nor through a link)
    assert scan_ahead.load_ahead(str(tmp_path / "frozen")) == 0


@linux
def test_the_child_walks_and_ends_by_itself(tmp_path, one_thread):
    src = _tree(tmp_path)
    ahead = scan_ahead.start([str(src)], [], str(tmp_path / "set"))
    assert ahead is not None and ahead.pid > 0
    pid, status = os.waitpid(ahead.pid, 0)   # (it ends once its walk is done)
    assert pid == ahead.pid and os.waitstatus_to_exitcode(status) == 0
    ahead.pid = 0   # (reaped here)
    ahead.stop()


@linux
def test_stop_ends_the_child_and_reaps_it(tmp_path, one_thread):
    src = make_tree(tmp_path / "src", {f"d{i:03}/e{j}/x": b"x" for i in range(50) for j in range(3)})
    ahead = scan_ahead.start([str(src)], [], str(tmp_path / "set"))
    assert ahead is not None
    pid = ahead.pid
    ahead.stop()
    assert ahead.stopped and ahead.pid == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)   # (reaped: no longer this process's child)
    ahead.stop()   # (again: nothing)


def test_no_child_while_another_thread_runs(tmp_path):
    src = make_tree(tmp_path / "src", {"a/x": b"x"})
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert scan_ahead.start([str(src)], [], str(tmp_path / "set")) is None
    finally:
        release.set()
        other.join()


def test_no_child_for_a_bad_exclude_pattern(tmp_path, one_thread):
    src = make_tree(tmp_path / "src", {"a/x": b"x"})
    assert scan_ahead.start([str(src)], ["!"], str(tmp_path / "set")) is None   # (the backup says why)


@linux
def test_a_backup_reaps_its_child_when_it_succeeds_or_fails(tmp_path, monkeypatch, one_thread):
    started: list[tuple[scan_ahead.ScanAhead, int]] = []
    real = scan_ahead.start

    def start(*args):
        ahead = real(*args)
        started.extend([(ahead, ahead.pid)] if ahead is not None else [])
        return ahead

    monkeypatch.setattr(scan_ahead, "start", start)
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(20)})
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    (tmp_path / "set" / "plugback.json").write_text("not json")   # the set cannot be opened: before any scan
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) != 0
    assert len(started) == 2
    for ahead, pid in started:
        assert ahead.pid == 0
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize("argv, plan", [
    (["backup", "a", "b", "--to", "s"], (["a", "b"], [], "s")),
    (["backup", "a", "--json", "--to", "s", "--exclude", "*.tmp", "--no-verify", "--exclude", "x/"],
     (["a"], ["*.tmp", "x/"], "s")),
    (["backup", "a", "--recovery-key-file", "k", "--to", "s"], (["a"], [], "s")),
    (["backup", "a", "--to=s"], None),                  # (the parser's forms: left to it)
    (["backup", "a", "--t", "s"], None),
    (["backup", "a", "--to", "s", "--to", "t"], None),
    (["backup", "a", "--to", "s", "--help"], None),
    (["backup", "--", "-a", "--to", "s"], None),
    (["backup", "a", "--to"], None),
    (["backup", "--to", "s"], None),
    (["backup", "a", "--to", "rclone:remote:path"], None),   # (a remote backup starts no child)
    (["restore", "s", "out"], None),
])
def test_plain_backup_arguments_are_read_before_the_parser(argv, plan):
    got = scan_ahead.backup_args(argv)
    if plan is None:
        assert got is None
    else:
        sources, excludes, to = plan
        assert got == ([os.path.abspath(p) for p in sources], excludes, os.path.abspath(to))


@linux
def test_the_early_child_is_taken_only_for_the_arguments_it_reads(tmp_path, one_thread):
    src = make_tree(tmp_path / "src", {f"d{i:03}/e{j}/x": b"x" for i in range(50) for j in range(3)})
    argv = ["backup", str(src), "--to", str(tmp_path / "set")]
    scan_ahead.start_early(argv)
    ahead = scan_ahead.take_early([str(src)], [], str(tmp_path / "set"))
    assert ahead is not None and ahead.pid > 0
    assert scan_ahead.take_early([str(src)], [], str(tmp_path / "set")) is None   # (handed over once)
    ahead.stop()
    scan_ahead.start_early(argv)
    pid = scan_ahead._early[1].pid if scan_ahead._early else 0
    assert pid > 0
    assert scan_ahead.take_early([str(src)], ["*.tmp"], str(tmp_path / "set")) is None   # not what it reads
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)   # (stopped and reaped)


@linux
def test_plugback_backup_starts_its_child_before_the_parser(tmp_path, monkeypatch, one_thread):
    """One child a run, started before the command line is parsed, and reaped at its end."""
    import core.cli

    events: list[str] = []
    real_start, real_build = scan_ahead.start, core.cli.build_parser

    def start(*args):
        events.append("child")
        return real_start(*args)

    monkeypatch.setattr(scan_ahead, "start", start)
    monkeypatch.setattr(core.cli, "build_parser", lambda *a: (events.append("parser"), real_build(*a))[1])
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(20)})
    assert main(["backup", str(src), "--to", str(tmp_path / "set")]) == 0
    assert events == ["child", "parser"] and scan_ahead._early is None
    events.clear()
    assert main(["backup", f"--to={tmp_path / 'set'}", str(src)]) == 0   # (read by the parser only)
    assert events == ["parser", "child"]



@linux
def test_a_command_line_refused_after_the_early_child_started_reaps_it(tmp_path, monkeypatch, one_thread):
    """The parser failing after the child started (argparse exits with SystemExit; faked here: the
    plain forms the early reader accepts all parse): the child is stopped and reaped before
    ``main`` leaves (the old code left it running until the process exited)."""
    import core.cli

    started: list[scan_ahead.ScanAhead | None] = []
    real_start = scan_ahead.start
    monkeypatch.setattr(scan_ahead, "start", lambda *a: started.append(real_start(*a)) or started[-1])

    def refused(*_):
        raise SystemExit(2)

    monkeypatch.setattr(core.cli, "build_parser", refused)
    src = make_tree(tmp_path / "src", {f"d{i:03}/x": b"x" for i in range(20)})
    with pytest.raises(SystemExit):
        main(["backup", str(src), "--to", str(tmp_path / "set")])
    child = started[0]
    assert child is not None and scan_ahead._early is None
    assert child.stopped and child.pid == 0   # (killed and reaped)


@pytest.mark.skipif(not scan_ahead._BY_DESCRIPTOR, reason="folders read through their descriptors (POSIX)")
def test_folders_are_read_through_their_descriptors_and_never_through_a_link(tmp_path, monkeypatch):
    src = _tree(tmp_path)
    n = scan_ahead.walk([str(src)], Excluder())
    monkeypatch.setattr(scan_ahead, "_BY_DESCRIPTOR", False)
    assert scan_ahead.walk([str(src)], Excluder()) == n   # (the same entries read by path)
    monkeypatch.undo()
    with scan_ahead._listed(str(src / "link"), True) as it:   # (a source's own folder: followed, as the scan does)
        assert sorted(d.name for d in it) == ["deep"]
    with pytest.raises(OSError):   # (a folder below it that became a symlink since its lstat: not listed)
        with scan_ahead._listed(str(src / "link"), False):
            pass
