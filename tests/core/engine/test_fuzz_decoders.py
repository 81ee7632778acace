"""Fuzzing the decoders of everything read from a drive (#10): manifests, drive.json, plugback.json,
the journal, the lock and format 2's chunk lists. Random and mutated inputs end in the documented
error types only, never another exception, and reading never writes.

Each test runs FUZZ examples (PLUGBACK_FUZZ_EXAMPLES raises it for a long run; the default keeps
the whole file around half a minute).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.agent.drives import decode_drive_file
from core.engine import chunks, journal
from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.lock import decode_holder
from core.engine.repo import BackupSet, decode_meta
from core.errors import DriveFileDamaged, EncryptedDataDamaged, ManifestDamaged, NewerFormat, NotASet

FUZZ = int(os.environ.get("PLUGBACK_FUZZ_EXAMPLES", "700"))
SETTINGS = settings(max_examples=FUZZ, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHA = hashlib.sha256(b"x").hexdigest()
SID = "20261122T013000Z-ab12"

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(["", ".", "..", "../x", "/abs", "C:", "a\\b", "a\x00b", "\ud800", "Data/x",
                                     SHA, SID, "f", "d", "l", "plugback-manifest", "header", "trailer"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

GOOD_HEADER = {"type": "header", "format": "plugback-manifest", "version": 1, "snapshot": SID,
               "time": "2026-11-22T01:30:00+00:00", "host": "laptop", "job": "Docs",
               "sources": [{"path": "/home/u/Data", "name": "Data"}], "parent": None,
               "totals": {"files": 1, "dirs": 1, "links": 1, "bytes": 5}}
GOOD_ENTRIES = [
    {"path": "Data", "type": "d", "mtime_ns": 1, "mode": 0o755},
    {"path": "Data/a.txt", "type": "f", "mtime_ns": 2, "mode": 0o644, "size": 5, "sha256": SHA,
     "ino": 3, "ctime_ns": 4, "mirror": "Data/a%3A.txt", "parts": 2, "obj": "ab" * 32, "attrs": 2},
    {"path": "Data/link", "type": "l", "mtime_ns": 5, "mode": 0o777, "target": "../elsewhere"},
]


def _manifest(header: dict, entries: list) -> bytes:
    body = b"".join(json.dumps(o).encode() + b"\n" for o in [header, *entries])
    trailer = {"type": "trailer", "entries": len(entries), "sha256": hashlib.sha256(body).hexdigest()}
    return gzip.compress(body + json.dumps(trailer).encode() + b"\n")


def _mutate(d: dict, data) -> dict:
    """``d`` with a few keys replaced by any JSON value, or removed."""
    d = dict(d)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(d) + ["extra"]))
        if data.draw(st.booleans()):
            d.pop(key, None)
        else:
            d[key] = data.draw(json_values)
    return d


def _decode_manifest(blob: bytes) -> None:
    try:
        m = mio.decode(blob, name="snapshots/fuzz.json.gz")
    except (ManifestDamaged, NewerFormat) as err:
        assert "snapshots/fuzz.json.gz" in str(err)
        return
    # Whatever is accepted is safe to use: every path is one restore and backup may join.
    for e in m.entries:
        assert mf.path_problem(e.path) is None and (e.mirror is None or mf.path_problem(e.mirror) is None)
        assert all(isinstance(v, int) and not isinstance(v, bool) for v in (e.size, e.mtime_ns, e.mode, e.parts))
        assert 0 <= e.parts <= mf.MAX_PARTS and (e.type != mf.FILE or mf.is_hex64(e.sha256))
        assert type(e.attrs) is int and e.attrs & ~mf.ATTRS == 0 and (e.type != mf.LINK or not e.attrs)


@SETTINGS
@given(st.data())
def test_manifest_with_mutated_fields(data):
    header = _mutate(GOOD_HEADER, data) if data.draw(st.booleans()) else GOOD_HEADER
    entries = [_mutate(e, data) if data.draw(st.booleans()) else e for e in GOOD_ENTRIES]
    if data.draw(st.booleans()):
        entries.append(data.draw(json_values))
    _decode_manifest(_manifest(header, entries))


@SETTINGS
@given(st.data())
def test_manifest_with_mutated_bytes(data):
    text = bytearray(gzip.decompress(_manifest(GOOD_HEADER, GOOD_ENTRIES)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            text[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            text[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del text[i]
    lines = bytes(text).split(b"\n")
    if data.draw(st.booleans()):   # a forger who fixes the trailer up: only the field checks are left
        body = b"".join(line + b"\n" for line in lines[:-2])
        trailer = {"type": "trailer", "entries": max(0, len(lines) - 3), "sha256": hashlib.sha256(body).hexdigest()}
        text = bytearray(body + json.dumps(trailer).encode() + b"\n")
    blob = gzip.compress(bytes(text))
    if data.draw(st.booleans()):
        blob = bytearray(blob)
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= 0xFF
        blob = bytes(blob)
    _decode_manifest(blob)


@SETTINGS
@given(st.binary(max_size=300))
def test_manifest_from_random_bytes(blob):
    _decode_manifest(blob)
    _decode_manifest(gzip.compress(blob))


def _raw(data, good: dict) -> bytes:
    """Random bytes, random JSON, or ``good`` with a few fields changed."""
    kind = data.draw(st.sampled_from(["bytes", "json", "mutated", "mutated"]))
    if kind == "bytes":
        return data.draw(st.binary(max_size=200))
    return json.dumps(data.draw(json_values) if kind == "json" else _mutate(good, data)).encode()


GOOD_DRIVE = {"format": "plugback-drive", "version": 1, "drive_id": "4b0c1c9e-5b1c-4d1e-9a55-0d6e7f8a9b0c",
              "label": "Backup", "created": "2026-11-22T01:30:00+00:00"}


@SETTINGS
@given(st.data())
def test_drive_file(data):
    raw = _raw(data, GOOD_DRIVE)
    try:
        info = decode_drive_file(raw, "/media/x/Plugback/drive.json")
    except DriveFileDamaged as err:
        assert "drive.json" in str(err)
        return
    assert isinstance(info.drive_id, str) and len(info.label) <= 200 and info.label.isprintable()


GOOD_META = {"format": "plugback-set", "version": 1, "set_id": "4b0c1c9e-5b1c-4d1e-9a55-0d6e7f8a9b0c",
             "created": "2026-11-22T01:30:00+00:00", "host": "laptop", "job": "Docs", "encryption": None}
GOOD_ENC = {"format": "plugback-aes256gcm", "version": 1,
            "kdf": {"name": "scrypt", "n": 16384, "r": 8, "p": 1, "salt": "00" * 16},
            "wrapped_key": {"nonce": "00" * 12, "ciphertext": "00" * 48}, "key_check": "00" * 16}


@SETTINGS
@given(st.data())
def test_set_file(data):
    meta = dict(GOOD_META)
    if data.draw(st.booleans()):
        meta["encryption"] = _mutate(GOOD_ENC, data) if data.draw(st.booleans()) else GOOD_ENC
    raw = _raw(data, meta)
    try:
        decode_meta(raw, Path("/media/x/set/plugback.json"))
    except (DriveFileDamaged, NotASet, NewerFormat, EncryptedDataDamaged) as err:
        assert "plugback.json" in str(err) or "/media/x/set" in str(err)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


GOOD_JOURNAL = [{"snapshot": SID, "parent": None},
                journal.Placed("Data/a", "Data/a", SHA, None, 1, 2, 3, 4).to_dict(), {"checkpoint": 1}]


@SETTINGS
@given(st.data())
def test_journal(data):
    lines = [json.dumps(_mutate(o, data) if data.draw(st.booleans()) else o).encode() for o in GOOD_JOURNAL]
    if data.draw(st.booleans()):
        lines.insert(data.draw(st.integers(0, len(lines))), data.draw(st.one_of(
            st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=40).map(lambda b: json.dumps({"sealed": base64.b64encode(b).decode()}).encode()))))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.json"
        path.write_bytes(b"\n".join(lines))
        before = _tree(Path(tmp))
        header, trusted = journal.load(path)
        assert _tree(Path(tmp)) == before            # reading never writes
    assert header is None or mf.is_snapshot_id(header["snapshot"])
    for p, placed in trusted.items():
        assert p == placed.path and mf.path_problem(placed.path) is None and mf.is_hex64(placed.sha256)


@SETTINGS
@given(st.one_of(st.binary(max_size=100), json_values.map(lambda v: json.dumps(v).encode())))
def test_lock_record(raw):
    holder = decode_holder(raw)
    assert isinstance(holder, dict) and (not holder or isinstance(holder["host"], str))
    assert all(isinstance(holder.get(k, ""), str) for k in ("machine", "purpose", "time", "token"))


@pytest.fixture(scope="module")
def fuzz_set(tmp_path_factory):
    from tests.support.engine import backup_path
    from tests.support.trees import make_tree

    root = tmp_path_factory.mktemp("fuzzset")
    src = make_tree(root / "Data", {"a.txt": b"alpha"})
    backup_path(root / "set", [src])
    return root / "set"


@settings(max_examples=max(50, FUZZ // 4), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_set_with_a_fuzzed_manifest_is_read_without_writing(fuzz_set, data):
    """Through the set, as the CLI reads it: only typed errors, and the set is unchanged."""
    bset = BackupSet.open(fuzz_set)
    sid = "20990101T000000Z-f022"
    entries = [_mutate(e, data) if data.draw(st.booleans()) else e for e in GOOD_ENTRIES]
    path = bset.layout.manifest(sid)
    path.write_bytes(_manifest(GOOD_HEADER | {"snapshot": sid}, entries))
    try:
        before = _tree(fuzz_set)
        try:
            bset.manifest(sid)
        except (ManifestDamaged, NewerFormat):
            pass
        assert [s.id for s in bset.snapshots()][:1] == bset.snapshot_ids()[:1]
        assert _tree(fuzz_set) == before
    finally:
        path.unlink()


CHUNK_LIST = chunks.ChunkList(SHA, 7, (("ab" * 32, 3), ("cd" * 32, 4)), "Data/big.bin", frozenset({"cd" * 32}))


def _sealed(body: bytes) -> bytes:
    """``body`` with a checksum line that matches (so the decoder looks past it)."""
    return body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"


@SETTINGS
@given(st.data())
def test_chunk_list(data):
    """Format 2's chunk lists (core/engine/chunks.py): a mutated header, mutated or extra lines,
    random bytes; only ChunkListDamaged or NewerFormat, and what decodes is consistent."""
    good = chunks.encode(CHUNK_LIST)
    head, *lines = good[:good.rfind(b"end ")].split(b"\n")
    kind = data.draw(st.sampled_from(["bytes", "header", "lines", "unsealed"]))
    if kind == "bytes":
        raw = data.draw(st.binary(max_size=300))
    elif kind == "header":
        raw = _sealed(json.dumps(_mutate(json.loads(head), data)).encode() + b"\n" + b"\n".join(lines))
    elif kind == "lines":
        lines.insert(data.draw(st.integers(0, len(lines))), data.draw(st.binary(max_size=80)))
        raw = _sealed(b"\n".join([head, *lines]))
    else:
        raw = bytearray(good)
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        raw = bytes(raw)
    try:
        cl = chunks.decode(raw, SHA, "objects/2d/x.chunks")
    except (chunks.ChunkListDamaged, NewerFormat) as err:
        assert "objects/2d/x.chunks" in str(err)
        return
    assert cl.sha256 == SHA and sum(n for _, n in cl.chunks) == cl.size
    assert all(mf.is_hex64(c) and 0 < n <= chunks.MAX_CHUNK for c, n in cl.chunks)
    assert cl.lean <= {c for c, _ in cl.chunks} and (cl.latest is not None or not cl.lean)
