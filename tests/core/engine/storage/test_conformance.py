"""The guarantees of core.engine.storage.base.Backend, checked on every backend (see conftest)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.engine.storage import BlobInfo, read_all
from core.engine.storage.base import CHUNK, TMP, Staged, Unstaged, can_stage
from core.errors import BadBlobName, BlobNotFound, DriveFileDamaged, StorageError

BIG = os.urandom(CHUNK * 2 + 12345)     # more than one chunk, and more than rclone keeps in memory


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def content(backend, name, offset=0) -> bytes:
    return b"".join(backend.get(name, offset))


def test_a_put_blob_reads_back_byte_for_byte(subject):
    b = subject.backend
    b.put("plugback.json", b'{"format": "plugback-set"}')
    b.put("objects/ab/" + "ab" * 32, lambda: iter([BIG[:1000], BIG[1000:]]))
    b.put("snapshots/empty", b"")
    assert content(b, "plugback.json") == b'{"format": "plugback-set"}'
    assert content(b, "objects/ab/" + "ab" * 32) == BIG
    assert content(b, "snapshots/empty") == b""
    assert b.stat("objects/ab/" + "ab" * 32) == BlobInfo("objects/ab/" + "ab" * 32, len(BIG))
    assert b.stat("snapshots/empty").size == 0


def test_unstaged_content_reads_back_byte_for_byte_and_leaves_nothing_in_tmp(subject):
    """Content a caller marks Unstaged (packs) may be written in place; it must still arrive whole,
    be listed, and replace a blob of that name."""
    b = subject.backend
    name = "packs/ab/" + "ab" * 32
    b.put(name, Unstaged(BIG[:5000]))
    b.put(name, Unstaged(BIG))
    assert content(b, name) == BIG and [i.name for i in b.list("packs")] == [name]
    assert files_under(subject.root) == [name]


def test_get_from_an_offset_gives_the_rest(subject):
    b = subject.backend
    b.put("objects/00/big", BIG)
    assert content(b, "objects/00/big", CHUNK + 7) == BIG[CHUNK + 7:]
    assert content(b, "objects/00/big", len(BIG)) == b""


def test_a_missing_blob_is_not_found_for_stat_and_get(subject):
    b = subject.backend
    with pytest.raises(BlobNotFound):
        b.stat("objects/00/none")
    with pytest.raises(BlobNotFound):
        b.get("objects/00/none")
    b.put("objects/00/one", b"1")
    with pytest.raises(BlobNotFound):
        b.get("objects/00/two")      # the folder exists, the blob does not


def test_a_second_put_replaces_the_blob_whole(subject):
    b = subject.backend
    b.put("plugback.json", b"A" * 100)
    b.put("plugback.json", b"B" * 100)   # same size: a "same size and time" shortcut would keep A
    assert content(b, "plugback.json") == b"B" * 100


def test_list_is_recursive_ordered_and_shows_only_plugback_names(subject):
    b = subject.backend
    names = ["plugback.json", "objects/ab/" + "1" * 64, "objects/ab/" + "0" * 64, "objects/0f/x",
             "snapshots/20261122T013000Z-ab.json.gz", "locks/20261122T013000Z-ff"]
    for n in names:
        b.put(n, n.encode())
    # Things Plugback never writes: a desktop's junk, a name with a space, leftovers in tmp/.
    (subject.root / "tmp").mkdir(exist_ok=True)
    for junk in (".DS_Store", "objects/ab/bad name", "tmp/leftover.part"):
        (subject.root / junk).write_bytes(b"junk")
    listed = list(b.list())
    assert [i.name for i in listed] == sorted(names, key=lambda n: n.split("/"))
    assert all(i.size == len(i.name) for i in listed)
    assert [i.name for i in b.list("objects/")] == ["objects/0f/x", "objects/ab/" + "0" * 64,
                                                    "objects/ab/" + "1" * 64]
    assert [i.name for i in b.list("objects/ab")] == ["objects/ab/" + "0" * 64, "objects/ab/" + "1" * 64]
    assert list(b.list("nothing")) == []
    assert list(b.list("plugback.json")) == []          # a blob is not a folder


def test_delete_removes_and_a_second_delete_is_fine(subject):
    b = subject.backend
    b.put("objects/aa/one", b"1")
    b.put("objects/aa/two", b"2")
    b.delete("objects/aa/one")
    b.delete("objects/aa/one")
    b.delete("objects/zz/never")
    assert [i.name for i in b.list()] == ["objects/aa/two"]
    with pytest.raises(BlobNotFound):
        b.stat("objects/aa/one")


BAD_NAMES = ["../escape", "/etc/passwd", "objects/../../x", "a//b", "a/./b", "", ".hidden", "tmp/x",
             "objects\\..\\x", "C:x", "a/b/c/d/e", "x" * 300, "ok/\u00e9", "a\0b", "objects/ab/CON",
             "locks/nul.json", "a./b", 7, None]


def test_a_bad_name_is_refused_before_anything_is_touched(subject):
    b = subject.backend
    b.put("plugback.json", b"{}")
    before = files_under(subject.root)
    for name in BAD_NAMES:
        calls = [(b.put, name, b"x"), (b.get, name), (b.stat, name), (b.delete, name)]
        if name != "":           # list("") is "everything"
            calls.append((lambda folder: list(b.list(folder)), name))
        for fn, *args in calls:
            with pytest.raises(BadBlobName):
                fn(*args)
    assert files_under(subject.root) == before


def test_a_put_that_fails_part_way_leaves_the_old_blob_and_cleans_up(subject):
    b = subject.backend
    b.put("plugback.json", b"old")

    def broken():
        yield BIG[:CHUNK]
        raise RuntimeError("the source file vanished")

    with pytest.raises(RuntimeError):
        b.put("plugback.json", broken)
    with pytest.raises(RuntimeError):
        b.put("objects/ab/new", broken)
    assert content(b, "plugback.json") == b"old"
    with pytest.raises(BlobNotFound):
        b.stat("objects/ab/new")
    # rclone may still be winding up the abandoned upload in tmp/ for a moment (it reads on until
    # it sees the cut): clean_partial runs when a run starts, so here it may take a second go.
    for _ in range(50):
        b.clean_partial()
        if files_under(subject.root) == ["plugback.json"]:
            break
        time.sleep(0.1)
    assert files_under(subject.root) == ["plugback.json"]
    b.put("objects/ab/new", b"now whole")      # the backend still works
    assert content(b, "objects/ab/new") == b"now whole"


def test_puts_and_gets_from_several_threads(subject):
    b = subject.backend
    errors = []

    def work(t):
        try:
            for i in range(6):
                name = f"objects/{t:02x}/{i:04d}"
                b.put(name, name.encode() * 50)
                assert content(b, name) == name.encode() * 50
        except Exception as err:  # noqa: BLE001 - reported below (an assert in a thread is lost otherwise)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(1 for _ in b.list("objects")) == 24


def test_read_all_refuses_a_blob_over_its_limit(subject):
    b = subject.backend
    b.put("locks/big", BIG)
    with pytest.raises(DriveFileDamaged):
        read_all(b, "locks/big", 4096)
    assert read_all(b, "locks/big", len(BIG)) == BIG


def test_a_staged_blob_is_nowhere_under_its_name_until_committed(subject):
    """base.Stages: the rclone backends stage (their remotes move on the server); a local folder does
    not need to (its puts are fast) and says so."""
    b = subject.backend
    assert can_stage(b) is (subject.kind != "local")
    if not can_stage(b):
        return
    name = "objects/cd/" + "cd" * 32
    b.make_folders(["", TMP, "objects"])
    staged = b.stage(name, lambda: iter([BIG[:70000], BIG[70000:]]))
    with pytest.raises(BlobNotFound):
        b.stat(name)
    assert [i.name for i in b.list("")] == [] and [f for f in files_under(subject.root) if f.startswith("tmp/")]
    assert b"".join(b.read_staged(staged)) == BIG                 # read back in tmp/, before it is named
    assert b"".join(b.read_staged(staged, 65000)) == BIG[65000:]
    b.commit(staged)
    assert content(b, name) == BIG and [i.name for i in b.list("")] == [name]
    assert files_under(subject.root) == [name]
    replaced = b.stage(name, b"newer")                       # a commit replaces the name whole
    b.commit(replaced)
    assert content(b, name) == b"newer"
    dropped = b.stage("objects/ef/" + "ef" * 32, BIG)
    b.discard(dropped)
    b.discard(dropped)                                       # gone already is fine
    with pytest.raises(BlobNotFound):
        b.read_staged(dropped)
    assert files_under(subject.root) == [name]


def test_a_staged_place_that_stage_did_not_make_is_refused(subject):
    b = subject.backend
    assert can_stage(b) is (subject.kind != "local")
    if not can_stage(b):
        return   # a local folder has no staged places to refuse (its puts are whole by themselves)
    b.put("plugback.json", b"{}")
    for bad in (Staged("objects/00/x", "plugback.json"), Staged("objects/00/x", "tmp/../plugback.json")):
        with pytest.raises(StorageError):
            b.commit(bad)
        with pytest.raises(StorageError):
            b.discard(bad)
        with pytest.raises(StorageError):
            b.read_staged(bad)
    assert content(b, "plugback.json") == b"{}"
