"""The per-file copy path of issue #11's speed work: the ordered window with work done in the
caller's thread, the read-back's spool record and its reads started ahead, the journal's
records, and the read-ahead hint for source files."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.engine import backup as backup_mod
from core.engine import journal, readback
from core.engine.fs import READS_AHEAD
from core.engine.manifest import FILE, Entry
from core.engine.readback_ahead import Written
from core.engine.scan import ScanEntry
from core.engine.store import prefetch_source
from core.engine.window import Window, lookahead
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree


def test_window_keeps_order_when_done_work_and_pool_jobs_mix():
    """Items done in the caller's thread wait behind earlier pool jobs: the order is the put order."""
    out = []
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        w = Window(pool, lambda item, result: out.append((item, result)), max_items=100, max_weight=1 << 30)
        w.put("first", result="at once")                       # nothing queued: out straight away
        w.put("slow", lambda: release.wait(5) and "pool", 1)   # a job still running ...
        w.put("small", result="done here")                      # ... so this one waits behind it
        assert out == [("first", "at once")]
        release.set()
        w.drain()
    assert out == [("first", "at once"), ("slow", "pool"), ("small", "done here")]


def test_window_raises_a_jobs_error_where_its_item_would_leave():
    go = threading.Event()

    def boom():
        go.wait(5)
        raise OSError("disk on fire")

    with ThreadPoolExecutor(max_workers=1) as pool:
        w = Window(pool, lambda item, result: None, max_items=1, max_weight=1 << 30)
        w.put("a", boom, 1)   # still running: queued
        go.set()
        with pytest.raises(OSError, match="disk on fire"):
            w.put("b", result=None)   # over max_items: "a" must leave first, and raises


def test_lookahead_shows_each_item_n_before_it_leaves_and_changes_nothing():
    seen: list[int] = []
    out = []
    for x in lookahead(range(10), 3, seen.append):
        out.append(x)
        assert seen[-1] == min(x + 3, 9)   # three ahead, until the end
    assert out == list(range(10)) and seen == list(range(10))


@pytest.mark.parametrize("name", ["plain.txt", "new\nline", "tab\there", "back\\slash", "quote\"d", "é ü",
                                  os.fsdecode(b"not-utf8-\xff")])
def test_readback_record_round_trips_any_file_name(name):
    """What the read-back and a repair need comes back exactly, whatever the name holds."""
    e = Entry(f"Data/{name}", FILE, 5, 123, 0o644, "ab" * 32, mirror=f"Data/{name}~1", parts=2, obj=None)
    se = ScanEntry(e.path, f"/src/{name}", FILE, 7, 123, 0o644, 9, 9)
    written = Written()
    try:
        for _ in range(3):
            written.add(readback.record(e, se))
        written.close_input()
        got = list(readback.decoded(written.blocks()))
    finally:
        written.close()
    assert len(got) == 3
    back, source = got[0]
    assert (back.path, back.mirror, back.sha256, back.size, back.parts, back.mtime_ns, back.mode) == \
        (e.path, e.mirror, e.sha256, e.size, e.parts, e.mtime_ns, e.mode)
    assert (source.abspath, source.size) == (se.abspath, se.size)
    # Formatted by hand for speed: the very text the JSON encoder writes, with and without a mirror.
    assert readback.record(e, se) == readback._ENCODE([e.path, e.mirror, e.sha256, e.obj, e.size, e.parts,
                                                       e.mtime_ns, e.mode, se.abspath, se.size]).encode()
    e.mirror, e.obj = None, "cd" * 32
    assert readback.record(e, se) == readback._ENCODE([e.path, None, e.sha256, e.obj, e.size, e.parts,
                                                       e.mtime_ns, e.mode, se.abspath, se.size]).encode()


@pytest.mark.parametrize("name", ["plain.txt", "new\nline", "quote\"d\\", "é ü \u2028", os.fsdecode(b"x-\xff")])
@pytest.mark.parametrize("obj, stored", [(None, 0), ("cd" * 32, 77)])
def test_journal_record_line_is_what_the_json_encoder_writes(name, obj, stored):
    """Journal lines are formatted without a dict per file: the same text, so load() reads them."""
    p = journal.Placed(f"Data/{name}", f"Data/{name}~1", "ab" * 32, obj, 5, -3, 1 << 63, 4, 2, stored)
    line = journal._record_line(p)
    assert line == journal._DUMP(p.to_dict()) + "\n"
    assert journal.Placed.from_dict(json.loads(line)) == p


@pytest.mark.skipif(not READS_AHEAD, reason="the one-thread read-back with reads started ahead is Linux's")
@pytest.mark.parametrize("swap", ["symlink", "fifo", "missing", "flipped"])
@pytest.mark.parametrize("big", [False, True], ids=["small", "big"])
def test_read_back_finds_a_copy_swapped_after_the_commit_and_copies_it_again(tmp_path, monkeypatch, swap, big):
    """The read-back opens each copy ahead (cache dropped, read started) the way verify does:
    a symlink is never followed (here to a file with the right bytes), a FIFO never waited on,
    and whatever reads back wrong is copied again from the source. ``big``: every file counts
    as big, so it is read back in a worker thread."""
    if big:
        monkeypatch.setattr(readback, "BIG", 0)
    spec = {f"f{i:03}.txt": b"content %d" % i for i in range(150)}   # more than readback.AHEAD
    src = make_tree(tmp_path / "src" / "Data", spec)
    twin = tmp_path / "twin"
    twin.write_bytes(spec["f100.txt"])
    commit = backup_mod._Run._commit

    def commit_then_swap(run, header):
        commit(run, header)
        copy = run.layout.latest / "Data" / "f100.txt"
        copy.unlink()
        if swap == "symlink":
            os.symlink(twin, copy)
        elif swap == "fifo":
            os.mkfifo(copy)
        elif swap == "flipped":
            copy.write_bytes(b"Content 100")

    monkeypatch.setattr(backup_mod._Run, "_commit", commit_then_swap)
    r = backup_path(tmp_path / "set", [src])
    copy = tmp_path / "set" / "Latest" / "Data" / "f100.txt"
    assert r.status == "ok" and not r.damaged, r.damaged
    assert not copy.is_symlink() and copy.read_bytes() == spec["f100.txt"]   # the repair's copy
    assert read_tree(tmp_path / "set" / "Latest" / "Data") == read_tree(src)
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


def test_prefetch_never_blocks_or_raises(tmp_path):
    """A FIFO swapped in for a file is not waited on; a missing file is no error (the copy reports)."""
    prefetch_source(str(tmp_path / "missing"))
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        done = threading.Event()
        t = threading.Thread(target=lambda: (prefetch_source(str(fifo)), done.set()), daemon=True)
        t.start()
        assert done.wait(5), "prefetch blocked on a FIFO"
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    prefetch_source(str(f))


def test_many_small_files_round_trip_through_the_inline_copy_and_batched_reads(tmp_path):
    """Small files (copied in the pass's thread) and a big one (in the pool) mixed across batch
    borders: the backup reads back clean, restores byte for byte and verifies."""
    spec = {f"d{i // 50}/f{i:03}.txt": os.urandom(i % 300) for i in range(130)}
    spec["d0/big.bin"] = os.urandom((1 << 20) + 17)
    src = make_tree(tmp_path / "src" / "Data", spec)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and r.files_copied == 131 and not r.damaged
    restore_path(tmp_path / "set", tmp_path / "out")
    assert read_tree(tmp_path / "out" / "Data") == read_tree(src)
    assert verify_path(tmp_path / "set", read_all=True).ok
