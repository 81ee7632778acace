"""Format 2 (issue #11): older versions of big files as content-defined chunks, on real files.

The big file is 40 MiB (the writer chunks from 16 MiB) with 1 MiB changed per day; the
crash tests lower the writer's threshold (``chunks.CHUNK_FROM``) so a 2 MiB file is chunked
and a crash can be placed at every write step in seconds.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import pytest

from core.cli import main as cli
from core.engine import chunks
from core.engine.layout import SetLayout
from core.engine.mend import mend
from core.engine.repo import BackupSet
from core.engine.retention import RetentionPolicy, forget, prune_objects
from core.engine.scrub import Cursor, scrub_slice
from core.errors import DamagedSet, NewerFormat, PlugbackError
from tests.support.engine import backup_path, open_set, restore_path, verify_path
from tests.support.faults import Crash, FaultyFS

MIB = 1 << 20
BIG = 40 * MIB


def _days(seed: int = 7, size: int = BIG, days: int = 2) -> list[bytes]:
    """A random file and its versions after each day, each with 1 MiB overwritten in a new place."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    out = [bytes(data)]
    for day in range(days):
        at = size // 3 + day * (size // 4)
        data[at:at + MIB] = rnd.randbytes(MIB)
        out.append(bytes(data))
    return out


def _du(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _lists(set_path) -> list:
    return sorted((set_path / "objects").rglob("*" + chunks.LIST_SUFFIX))


@pytest.fixture(scope="module")
def three_days(tmp_path_factory):
    """A format-2 set with three snapshots of a 40 MiB file (1 MiB changed each day); (set, source
    folder, versions, snapshot ids, set size after each backup). Tests work on copies."""
    base = tmp_path_factory.mktemp("chunks")
    src = base / "src" / "Data"
    src.mkdir(parents=True)
    versions = _days()
    set_path, ids, sizes = base / "set", [], []
    for v in versions:
        (src / "big.bin").write_bytes(v)
        ids.append(backup_path(set_path, [src], workers=1).snapshot_id)
        sizes.append(_du(set_path))
    return set_path, src, versions, ids, sizes


@pytest.fixture
def copy(three_days, tmp_path):
    set_path, src, versions, ids, sizes = three_days
    dst = tmp_path / "set"
    shutil.copytree(set_path, dst)
    return dst, src, versions, ids


def _restored(set_path, sid, out) -> bytes:
    result = restore_path(set_path, out, snapshot=sid)
    assert not result.damaged, result.damaged
    return (out / "Data" / "big.bin").read_bytes()


def test_new_plain_sets_are_format_2_and_a_small_change_stores_little(three_days, tmp_path):
    set_path, _, versions, ids, sizes = three_days
    assert json.loads((set_path / "plugback.json").read_text())["version"] == 2
    assert sizes[0] < BIG + MIB
    assert sizes[1] - sizes[0] < 8 * MIB, "1 MiB changed must not store the 40 MiB file again"
    assert sizes[2] - sizes[1] < 8 * MIB
    assert len(_lists(set_path)) == 2   # the two older versions; Latest/ holds the newest, plain
    assert (set_path / "Latest" / "Data" / "big.bin").read_bytes() == versions[2]
    for i, sid in enumerate(ids):
        assert _restored(set_path, sid, tmp_path / f"r{i}") == versions[i]
    v = verify_path(set_path, read_all=True)
    assert v.ok and v.damaged == [] and v.contents == 3


def test_old_versions_lean_on_latest_for_the_chunks_it_holds(three_days):
    set_path, *_ = three_days
    bset = open_set(set_path)
    newest = [c for c in (chunks.load(bset, p.name[:64]) for p in _lists(set_path)) if c.latest]
    assert newest and all(c.latest == "Data/big.bin" for c in newest)
    in_objects = [c for cl in newest for c, _ in cl.chunks if bset.layout.object(c).exists()]
    assert 0 < len(in_objects) < sum(len(cl.chunks) for cl in newest)


def test_forget_prunes_chunks_only_the_forgotten_version_needed(copy, tmp_path):
    set_path, _, versions, ids = copy
    bset = open_set(set_path)
    first = chunks.load(bset, hashlib.sha256(versions[0]).hexdigest())
    second = chunks.load(bset, hashlib.sha256(versions[1]).hexdigest())
    shared = {c for c, _ in first.chunks} & {c for c, _ in second.chunks}
    own = {c for c, _ in first.chunks} - {c for c, _ in second.chunks}
    assert shared and own
    result = forget(bset, RetentionPolicy(last=2))
    assert result.forgotten == [ids[0]] and result.objects_removed >= 1
    assert not chunks.list_path(bset, first.sha256).exists()
    assert not any(bset.layout.object(c).exists() for c in own)
    assert all(bset.layout.object(c).exists() for c, _ in second.chunks if bset.layout.object(c).exists())
    assert _restored(set_path, ids[1], tmp_path / "r1") == versions[1]
    assert verify_path(set_path, read_all=True).ok
    assert prune_objects(open_set(set_path)) == (0, 0)   # nothing else was unreferenced


def test_making_room_counts_what_only_the_oldest_version_needs(copy):
    from core.engine.retention import plan_room

    set_path, *_ = copy
    bset = open_set(set_path)
    before = {p: p.stat().st_blocks * 512 for p in (set_path / "objects").rglob("*") if p.is_file()}
    plan = plan_room(bset, free=0, need=1)
    assert plan.forget == [bset.snapshot_ids()[0]] and plan.frees > 0
    forget(bset, RetentionPolicy(last=2))
    gone = sum(n for p, n in before.items() if not p.exists())
    assert plan.frees == gone     # the plan's count is what the prune really freed


def _stored_chunk(bset, version: bytes) -> str:
    cl = chunks.load(bset, hashlib.sha256(version).hexdigest())
    return next(c for c, _ in cl.chunks if bset.layout.object(c).exists())


def test_verify_names_a_damaged_or_missing_chunk(copy, tmp_path):
    set_path, _, versions, ids = copy
    bset = open_set(set_path)
    c = _stored_chunk(bset, versions[0])
    path = bset.layout.object(c)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert verify_path(set_path).ok    # the quick check reads sizes only
    v = verify_path(set_path, read_all=True)
    assert [p for p, _ in v.damaged] == [f"Data/big.bin ({ids[0]})"]
    assert f"objects/{c[:2]}/{c}" in v.damaged[0][1] and "does not match" in v.damaged[0][1]
    result = restore_path(set_path, tmp_path / "out", snapshot=ids[0])
    assert result.damaged and not (tmp_path / "out" / "Data" / "big.bin").exists()
    path.unlink()
    quick = verify_path(set_path)
    assert [p for p, _ in quick.damaged] == [f"Data/big.bin ({ids[0]})"] and "is missing" in quick.damaged[0][1]
    assert _restored(set_path, ids[2], tmp_path / "newest") == versions[2]


def _hostile(cl: chunks.ChunkList, edit) -> bytes:
    """A list with its lines edited by ``edit`` and a checksum that matches again."""
    raw = chunks.encode(cl)
    body = edit(raw[:raw.rfind(b"end ")])
    return body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def _header(raw: bytes, **changes) -> bytes:
    first, rest = raw.split(b"\n", 1)
    head = json.loads(first) | changes
    return json.dumps(head).encode() + b"\n" + rest


def _edit_line(body: bytes, index: int, fn) -> bytes:
    """``body`` with its line ``index`` (0: the header) replaced by ``fn(line)``."""
    lines = body.split(b"\n")
    lines[index] = fn(lines[index])
    return b"\n".join(lines)


def _oversized(body: bytes) -> bytes:
    """The last chunk made 64 MiB, the header's size grown to match (so only the chunk limit is broken)."""
    lines = body.split(b"\n")
    c, n = lines[-2].split(b" ")[:2]
    lines[-2] = c + b" " + str(64 * MIB).encode()
    size = json.loads(lines[0])["size"] - int(n) + 64 * MIB
    return _header(b"\n".join(lines), size=size)


HOSTILE = {
    "bad hex name": lambda b: _edit_line(b, 1, lambda line: b"../" + line[3:]),
    "sizes do not add up": lambda b: _edit_line(b, -2, lambda line: line[:-1] + (b"8" if line[-1:] != b"8" else b"7")),
    "a huge count": lambda b: _header(b, count=10 ** 9),
    "fewer lines than the count": lambda b: _header(b, count=json.loads(b.split(b"\n")[0])["count"] + 1),
    "more lines than the count": lambda b: b + b"0" * 64 + b" 1\n",
    "latest outside Latest/": lambda b: _header(b, latest="../../etc/passwd"),
    "a chunk bigger than allowed": _oversized,
    "not a chunk list": lambda b: _header(b, format="plugback-manifest"),
}


@pytest.mark.parametrize("what", [*HOSTILE, "checksum", "symlink"])
def test_a_hostile_chunk_list_is_refused_as_damage(copy, tmp_path, what):
    set_path, _, versions, ids = copy
    bset = open_set(set_path)
    name = hashlib.sha256(versions[0]).hexdigest()
    path = chunks.list_path(bset, name)
    cl = chunks.load(bset, name)
    if what == "symlink":
        path.unlink()
        path.symlink_to(tmp_path / "elsewhere")
        (tmp_path / "elsewhere").write_bytes(chunks.encode(cl))
    elif what == "checksum":
        path.write_bytes(chunks.encode(cl).replace(b" ", b"  ", 1))
    else:
        path.write_bytes(_hostile(cl, HOSTILE[what]))
    with pytest.raises(chunks.ChunkListDamaged):
        chunks.load(bset, name)
    v = verify_path(set_path)
    assert [p for p, _ in v.damaged] == [f"Data/big.bin ({ids[0]})"]
    assert f"objects/{name[:2]}/{name}.chunks" in v.damaged[0][1]
    result = restore_path(set_path, tmp_path / "out", snapshot=ids[0])
    assert result.damaged
    assert _restored(set_path, ids[1], tmp_path / "r1") == versions[1]
    with pytest.raises(PlugbackError, match="Cannot prune"):
        prune_objects(open_set(set_path))


def test_a_newer_chunk_list_is_refused_not_misread(copy):
    set_path, _, versions, _ = copy
    bset = open_set(set_path)
    name = hashlib.sha256(versions[0]).hexdigest()
    cl = chunks.load(bset, name)
    chunks.list_path(bset, name).write_bytes(_hostile(cl, lambda b: _header(b, version=2)))
    with pytest.raises(NewerFormat):
        chunks.load(bset, name)


def test_the_rolling_check_finds_chunk_damage_and_mends_it_from_the_source(copy):
    set_path, src, versions, ids = copy
    bset = open_set(set_path)
    # A chunk of the second version in objects/ (the newest does not hold it) that the first also has.
    first = {c for c, _ in chunks.cut([versions[0]])}
    cl = chunks.load(bset, hashlib.sha256(versions[1]).hexdigest())
    c = next(c for c, _ in cl.chunks if bset.layout.object(c).exists() and c in first)
    bset.layout.object(c).write_bytes(b"rot" + bset.layout.object(c).read_bytes()[3:])
    damaged_list = chunks.list_path(bset, hashlib.sha256(versions[0]).hexdigest())
    damaged_list.write_bytes(damaged_list.read_bytes()[:-5])
    r = scrub_slice(bset, Cursor(), None)
    found = [d for d in r.damaged if d.where.startswith("objects/")]
    assert sorted(d.where for d in found) == sorted([f"objects/{c[:2]}/{c}", chunks.label(bset, damaged_list)])
    # The source holds the newest version: neither can be copied again from it.
    mended = {m.damage.where: m for m in mend(bset, found, [str(src)])}
    chunk_fix = mended[f"objects/{c[:2]}/{c}"]
    assert not chunk_fix.repaired and "changed" in chunk_fix.note and ids[1] in chunk_fix.holders.snapshots
    assert not mended[chunks.label(bset, damaged_list)].repaired
    (src / "big.bin").write_bytes(versions[0])     # the first version is back on this computer
    try:
        mended = {m.damage.where: m for m in mend(bset, found, [str(src)])}
    finally:
        (src / "big.bin").write_bytes(versions[2])
    assert all(m.repaired for m in mended.values()), [m.note for m in mended.values()]
    assert not damaged_list.exists() and bset.layout.object(hashlib.sha256(versions[0]).hexdigest()).exists()
    assert hashlib.sha256(bset.layout.object(c).read_bytes()).hexdigest() == c
    assert not scrub_slice(bset, Cursor(), None).damaged
    assert verify_path(set_path, read_all=True).ok


def test_a_damaged_newest_manifest_sets_latest_aside_without_losing_the_chunks_older_lists_lean_on(copy, tmp_path):
    set_path, src, versions, ids = copy
    bset = open_set(set_path)
    lean = chunks.load(bset, hashlib.sha256(versions[1]).hexdigest())
    assert lean.lean and not any(bset.layout.object(c).exists() for c in lean.lean)
    newest = bset.layout.manifest(ids[2])
    newest.write_bytes(newest.read_bytes()[:-40])
    result = backup_path(set_path, [src], workers=1)
    assert [w.code.value for w in result.warnings] == ["snapshot_damaged"]
    assert all(open_set(set_path).layout.object(c).exists() for c in lean.lean)
    for i in (0, 1):
        assert _restored(set_path, ids[i], tmp_path / f"r{i}") == versions[i]
    assert _restored(set_path, result.snapshot_id, tmp_path / "new") == versions[2]


def test_the_space_estimate_counts_a_big_file_leaving_latest(copy):
    from core.engine.space import estimate

    set_path, src, versions, _ = copy
    bset = open_set(set_path)
    (src / "big.bin").write_bytes(versions[0])
    try:
        need = estimate(bset, [str(src)])
    finally:
        (src / "big.bin").write_bytes(versions[2])
    assert need.content >= BIG      # the new copy
    assert need.margin >= BIG       # the old one's chunks, at most all of them


def test_a_format_1_set_keeps_format_1_until_upgraded(tmp_path, capsys):
    src = tmp_path / "src" / "Data"
    src.mkdir(parents=True)
    versions = _days(seed=3, size=20 * MIB, days=3)
    set_path = tmp_path / "set"
    (src / "big.bin").write_bytes(versions[0])
    bset = BackupSet.create(set_path, __import__("datetime").datetime.now().astimezone())
    bset.meta["version"] = 1     # as an older Plugback made it
    bset.write_meta()
    ids = [backup_path(set_path, [src], workers=1).snapshot_id]
    (src / "big.bin").write_bytes(versions[1])
    ids.append(backup_path(set_path, [src], workers=1).snapshot_id)
    assert not _lists(set_path) and SetLayout(set_path).object(hashlib.sha256(versions[0]).hexdigest()).exists()
    assert json.loads((set_path / "plugback.json").read_text())["version"] == 1
    assert cli(["upgrade", str(set_path)]) == 2     # not a terminal and no --yes: nothing changed
    assert json.loads((set_path / "plugback.json").read_text())["version"] == 1
    assert "can no longer read" in capsys.readouterr().err
    assert cli(["upgrade", str(set_path), "--yes"]) == 0
    assert json.loads((set_path / "plugback.json").read_text())["version"] == 2
    assert cli(["upgrade", str(set_path), "--yes"]) == 2
    assert "already uses format 2" in capsys.readouterr().err
    for v in versions[2:]:
        (src / "big.bin").write_bytes(v)
        ids.append(backup_path(set_path, [src], workers=1).snapshot_id)
    assert len(_lists(set_path)) == 2   # versions[1] and [2] left Latest/ after the upgrade
    for i, sid in enumerate(ids):
        assert _restored(set_path, sid, tmp_path / f"r{i}") == versions[i]
    forget(open_set(set_path), RetentionPolicy(last=2))
    assert verify_path(set_path, read_all=True).ok
    assert _restored(set_path, ids[-2], tmp_path / "again") == versions[-2]


def test_a_set_of_a_newer_format_is_refused_and_left_alone(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    backup_path(tmp_path / "set", [src])
    meta = tmp_path / "set" / "plugback.json"
    meta.write_text(meta.read_text().replace('"version": 2', '"version": 3'))
    before = {p: p.read_bytes() for p in (tmp_path / "set").rglob("*") if p.is_file()}
    with pytest.raises(NewerFormat):
        BackupSet.open(tmp_path / "set")
    for argv in (["backup", str(src), "--to", str(tmp_path / "set")], ["upgrade", str(tmp_path / "set"), "--yes"],
                 ["forget", str(tmp_path / "set"), "--keep-last", "1", "--prune"]):
        assert cli(argv) != 0
        assert "format version 3" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "set").rglob("*") if p.is_file()} == before


@pytest.fixture
def small_chunking(monkeypatch):
    """Chunk old versions from 1 MiB (the format's floor), so a 2 MiB file has a few chunks."""
    monkeypatch.setattr(chunks, "CHUNK_FROM", MIB)


def _crash_scenario(tmp_path):
    src = tmp_path / "src" / "Data"
    src.mkdir(parents=True)
    versions = _days(seed=11, size=2 * MIB, days=1)
    (src / "big.bin").write_bytes(versions[0])
    (src / "gone.bin").write_bytes(versions[0][::-1])      # removed later: all its chunks are written
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src], workers=1).snapshot_id
    (src / "big.bin").write_bytes(versions[1])
    (src / "gone.bin").unlink()
    return src, set_path, versions, first


@pytest.mark.slow
def test_a_crash_at_every_write_step_while_chunking_loses_nothing(small_chunking, tmp_path):
    src, set_path, versions, first = _crash_scenario(tmp_path)
    pristine = tmp_path / "pristine"
    shutil.copytree(set_path, pristine)
    probe = FaultyFS(set_path)
    backup_path(set_path, [src], fs=probe, workers=1)
    assert probe.log.count("replace") >= 6   # chunks and lists really were written
    steps = probe.calls
    for n in range(1, steps + 1):
        shutil.rmtree(set_path)
        shutil.copytree(pristine, set_path)
        with pytest.raises(Crash):
            backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=n), workers=1)
        (set_path / "lock").unlink(missing_ok=True)
        out = tmp_path / f"crash{n}"
        assert not restore_path(set_path, out, snapshot=first).damaged, n
        assert (out / "Data" / "big.bin").read_bytes() == versions[0], n
        assert (out / "Data" / "gone.bin").read_bytes() == versions[0][::-1], n
        shutil.rmtree(out)
        second = backup_path(set_path, [src], workers=1)
        assert second.status == "ok", (n, second.warnings)
        assert verify_path(set_path, read_all=True).ok, n
        assert _restored(set_path, first, out) == versions[0], n
        shutil.rmtree(out)


def test_a_full_drive_while_chunking_keeps_the_old_version(small_chunking, tmp_path):
    import errno

    src, set_path, versions, first = _crash_scenario(tmp_path)
    probe = FaultyFS(set_path)
    pristine = tmp_path / "pristine"
    shutil.copytree(set_path, pristine)
    backup_path(set_path, [src], fs=probe, workers=1)
    shutil.rmtree(set_path)
    shutil.copytree(pristine, set_path)
    at = [i for i, op in enumerate(probe.log, 1) if op == "replace"][1]   # while chunks are written
    with pytest.raises(PlugbackError):
        backup_path(set_path, [src], fs=FaultyFS(set_path, fail_at=at, error=errno.ENOSPC), workers=1)
    assert _restored(set_path, first, tmp_path / "out") == versions[0]
    assert backup_path(set_path, [src], workers=1).status == "ok"
    assert verify_path(set_path, read_all=True).ok


def test_cut_finds_the_same_chunks_whatever_the_blocks(tmp_path):
    data = _days(seed=5, size=5 * MIB, days=0)[0]
    whole = list(chunks.cut([data]))
    pieces = list(chunks.cut(data[i:i + 4097] for i in range(0, len(data), 4097)))
    assert whole == pieces and b"".join(d for _, d in whole) == data
    assert all(chunks.MIN_SIZE <= len(d) <= chunks.MAX_SIZE for _, d in whole[:-1])


def test_decode_refuses_a_list_for_other_content():
    cl = chunks.ChunkList("ab" * 32, 3, (("cd" * 32, 3),))
    assert chunks.decode(chunks.encode(cl), "ab" * 32, "x") == cl
    with pytest.raises(DamagedSet, match="does not describe"):
        chunks.decode(chunks.encode(cl), "ef" * 32, "x")


def test_known_answers_of_format_2_chunking():
    """tests/core/engine/vectors/chunks-v2.json pins the cutting and the list's bytes (the same
    boundaries as the Rust fastcdc crate's v2020 cutter, normalization level 1, gave)."""
    from pathlib import Path

    from tests.core.engine.vectors.make_chunk_vectors import vector_data

    vectors = json.loads((Path(__file__).parent / "vectors" / "chunks-v2.json").read_text())
    assert vectors["cdc"] == chunks.CDC
    data = vector_data(vectors["data"]["seed"].encode(), vectors["data"]["size"])
    assert hashlib.sha256(data).hexdigest() == vectors["data"]["sha256"]
    offset, cut = 0, []
    for c, piece in chunks.cut([data]):
        cut.append({"offset": offset, "size": len(piece), "sha256": c})
        offset += len(piece)
    assert cut == vectors["chunks"]
    raw = vectors["chunk_list"].encode()
    cl = chunks.decode(raw, vectors["data"]["sha256"], "vector")
    assert [(c["sha256"], c["size"]) for c in cut] == list(cl.chunks)
    assert cl.latest == "Documents/big file.bin" and cl.lean == {cut[1]["sha256"]}
    assert chunks.encode(cl) == raw
