"""The drive is untrusted input (#10): crafted files are refused with a typed error naming the file.

Every class of hostile file issue #10 reproduced, on a plain tmp folder: special
files (FIFO, symlink to /dev/zero, a 2 GB sparse file) in place of drive.json,
plugback.json, a manifest, the journal; manifests whose entries would reach
outside the set; the encrypted journal. The CLI answers with a message, never a
traceback, and nothing hangs (the tests that could hang run with a timeout).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import threading

import pytest

from core.agent import drives
from core.agent.config_file import update_config
from core.agent.drives import read_drive_file, write_drive_file
from core.agent.watcher import DriveWatcher
from core.engine import crypto, journal
from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.layout import SetLayout, drive_file
from core.engine.repo import BackupSet
from core.errors import DriveFileDamaged, ManifestDamaged, UnsafeManifestPath, UnsafePath
from tests.support.agent import make_agent  # noqa: F401 - a fixture, used by name
from tests.support.cli import run_cli
from tests.support.engine import backup_path, restore_path, verify_path
from tests.support.trees import make_tree, read_tree

SHA = hashlib.sha256(b"bravo").hexdigest()
FORGED = "20990101T000000Z-beef"
PASS = {"PLUGBACK_PASSPHRASE": "correct horse battery staple"}


@pytest.fixture
def plain_set(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"a.txt": b"alpha", "b.txt": b"bravo", "c/d.txt": b"delta"})
    set_path = tmp_path / "set"
    sid = backup_path(set_path, [src]).snapshot_id
    return src, set_path, sid


def _fifo(path):
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _zero_link(path):
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def _sparse(path, size=2 << 30):
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def _in_thread(fn, timeout=20.0):
    """fn()'s result, failing the test (not hanging it) if it does not return in time."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:   # noqa: BLE001 - handed to the test below
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} hung"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _raw_manifest(header: dict | None = None, entries=(), *, sid=FORGED) -> bytes:
    """A gzip'd manifest with a correct trailer around whatever header and entry dicts are given."""
    h = {"type": "header", "format": "plugback-manifest", "version": 1, "snapshot": sid,
         "time": "2099-01-01T00:00:00+00:00", "host": "h", "job": "j",
         "sources": [{"path": "/home/u/Data", "name": "Data"}], "parent": None,
         "totals": {"files": 0, "dirs": 0, "links": 0, "bytes": 0}}
    if header is not None:
        h = header
    body = b"".join(json.dumps(o).encode() + b"\n" for o in [h, *entries])
    trailer = {"type": "trailer", "entries": len(entries), "sha256": hashlib.sha256(body).hexdigest()}
    return gzip.compress(body + json.dumps(trailer).encode() + b"\n")


def _f(path, **kw):
    return {"path": path, "type": "f", "mtime_ns": 1, "mode": 0o644, "size": 5, "sha256": SHA} | kw


DATA = {"path": "Data", "type": "d", "mtime_ns": 1, "mode": 0o755}
LINK = {"path": "Data/x", "type": "l", "mtime_ns": 1, "mode": 0o777, "target": "/etc"}

UNSAFE = {   # entries that would make restore or the next backup reach outside
    "dotdot": [DATA, _f("Data/../../escape.txt")],
    "parent-only": [_f("../escape.txt")],
    "absolute": [_f("/etc/passwd")],
    "nul": [DATA, _f("Data/a\x00b")],
    "empty-component": [DATA, _f("Data//x")],
    "dot-component": [DATA, _f("Data/./x")],
    "below-a-file": [DATA, _f("Data/f"), _f("Data/f/g")],
    "below-a-symlink": [DATA, LINK, _f("Data/x/passwd")],
    "mirror-dotdot": [DATA, _f("Data/b.txt", mirror="Data/../../victim.txt")],
    "mirror-absolute": [DATA, _f("Data/b.txt", mirror="/tmp/victim.txt")],
    "mirror-empty": [DATA, _f("Data/b.txt", mirror="")],
    "non-string-path": [{"path": 7, "type": "f", "size": 1, "sha256": SHA}],
}
WINDOWS_UNSAFE = {   # ... on Windows only: elsewhere ':' and '\\' are ordinary characters of a name
    "drive-letter": [_f("C:/Windows/evil.txt")],
    "drive-relative": [_f("C:evil.txt")],
    "backslash": [DATA, _f("Data/..\\..\\evil")],
}
DAMAGED = {   # entries or headers of the wrong type, size or count
    "parts-1e9": [DATA, _f("Data/b.txt", parts=10**9)],
    "parts-float": [DATA, _f("Data/b.txt", parts=3.0)],
    "size-negative": [DATA, _f("Data/b.txt", size=-1)],
    "size-bool": [DATA, _f("Data/b.txt", size=True)],
    "sha-not-hex": [DATA, _f("Data/b.txt", sha256="../../etc/passwd")],
    "sha-missing": [DATA, {"path": "Data/b.txt", "type": "f", "size": 5}],
    "obj-not-hex": [DATA, _f("Data/b.txt", obj="zz")],
    "type-unknown": [DATA, _f("Data/b.txt", type="x")],
    "link-no-target": [DATA, {"path": "Data/x", "type": "l"}],
    "lone-surrogate": [DATA, _f("Data/\ud800")],
    "duplicate": [DATA, _f("Data/b.txt"), _f("Data/b.txt")],
    "out-of-order": [DATA, _f("Data/z"), _f("Data/a")],
    "entry-not-object": [DATA, ["Data/b.txt"]],
}
HEADER = {
    "no-snapshot": lambda h: h.pop("snapshot"),
    "no-time": lambda h: h.pop("time"),
    "no-sources": lambda h: h.pop("sources"),
    "no-parent": lambda h: h.pop("parent"),
    "no-totals": lambda h: h.pop("totals"),
    "sources-not-list": lambda h: h.update(sources="Data"),
    "source-name-dotdot": lambda h: h.update(sources=[{"path": "/x", "name": ".."}]),
    "source-not-dict": lambda h: h.update(sources=[["/x", "Data"]]),
    "time-not-text": lambda h: h.update(time=12),
    "time-not-a-time": lambda h: h.update(time="yesterday"),
    "host-not-text": lambda h: h.update(host=None),
    "parent-not-an-id": lambda h: h.update(parent="../x"),
    "totals-negative": lambda h: h.update(totals={"files": -1}),
    "version-text": lambda h: h.update(version="1"),
}


def _header(change) -> dict:
    h = json.loads(gzip.decompress(_raw_manifest()).split(b"\n")[0])
    change(h)
    return h


# --- the manifest decoder ------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_entries_that_reach_outside_are_refused_as_unsafe(case):
    with pytest.raises(UnsafeManifestPath, match="snapshots/x.json.gz") as info:
        mio.decode(_raw_manifest(entries=UNSAFE[case]), name="snapshots/x.json.gz")
    # Both kinds: verify lists it as a damaged manifest, restore refuses it as an unsafe path.
    assert isinstance(info.value, ManifestDamaged) and isinstance(info.value, UnsafePath)
    assert info.value.exit_code == 4 and "outside the restore folder or the backup set" in str(info.value)


@pytest.mark.parametrize("case", sorted(WINDOWS_UNSAFE))
def test_drive_letters_and_backslashes_are_refused_where_they_separate(case, monkeypatch):
    monkeypatch.setattr(mf, "WINDOWS_PATHS", True)   # (as on Windows)
    with pytest.raises(UnsafeManifestPath, match="snapshots/x.json.gz"):
        mio.decode(_raw_manifest(entries=WINDOWS_UNSAFE[case]), name="snapshots/x.json.gz")


@pytest.mark.skipif(os.sep != "/", reason="a POSIX name rule")
def test_a_backslash_or_colon_is_part_of_a_name_on_posix(tmp_path):
    """Such names are legal on Linux and macOS: a folder holding them backs up again and again
    (before, the second backup refused the first one's manifest as unsafe) and restores in place."""
    src = tmp_path / "a:b"
    make_tree(src, {"x\\y/f.txt": b"one", "C:evil.txt": b"two", "..\\..\\evil": b"three"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "x\\y" / "f.txt").write_bytes(b"one, edited")
    backup_path(set_path, [src])
    out = tmp_path / "out"
    restore_path(set_path, out)
    assert read_tree(out) == {"a_b/x\\y/f.txt": b"one, edited", "a_b/C:evil.txt": b"two",
                              "a_b/..\\..\\evil": b"three"}   # (the top-level name is made portable)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a:b", "out", "set"]   # nothing outside


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_entries_of_the_wrong_shape_are_refused(case):
    with pytest.raises(ManifestDamaged, match="snapshots/x.json.gz"):
        mio.decode(_raw_manifest(entries=DAMAGED[case]), name="snapshots/x.json.gz")


@pytest.mark.parametrize("case", sorted(HEADER))
def test_headers_of_the_wrong_shape_are_refused(case):
    with pytest.raises(ManifestDamaged, match="snapshots/x.json.gz"):
        mio.decode(_raw_manifest(_header(HEADER[case])), name="snapshots/x.json.gz")


def test_a_well_formed_crafted_manifest_is_accepted():
    """The crafting helper makes manifests the decoder takes: the refusals above are the fields'."""
    m = mio.decode(_raw_manifest(entries=[DATA, _f("Data/b.txt", mirror="Data/b%2E.txt", parts=2), LINK]))
    assert [e.path for e in m.entries] == ["Data", "Data/b.txt", "Data/x"]
    assert m.entries[1].mirror_path == "Data/b%2E.txt" and m.entries[1].parts == 2


def test_a_gzip_bomb_is_refused_without_unpacking_it(monkeypatch):
    monkeypatch.setattr(mf, "MAX_MANIFEST_TEXT", 1 << 20)
    bomb = gzip.compress(b" " * (8 << 20))
    with pytest.raises(ManifestDamaged, match="unpacks to more than"):
        mio.decode(bomb)


def test_a_line_nested_too_deep_is_damage_not_a_recursion_error():
    lines = gzip.decompress(_raw_manifest(entries=[DATA])).split(b"\n")
    lines[1] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ManifestDamaged, match="not valid JSON"):
        mio.decode(gzip.compress(b"\n".join(lines)))


# --- special files in a set ------------------------------------------------------------------

@pytest.mark.parametrize("make", [_fifo, _zero_link, _sparse], ids=["fifo", "symlink-to-dev-zero", "sparse-2GB"])
def test_special_manifest_is_refused_fast(plain_set, make):
    src, set_path, sid = plain_set
    path = SetLayout(set_path).manifest(sid)
    make(path)
    bset = BackupSet.open(set_path)
    with pytest.raises(ManifestDamaged, match=f"snapshots/{sid}.json.gz"):
        _in_thread(lambda: bset.manifest(sid))
    assert _in_thread(lambda: bset.snapshots()) == []
    v = _in_thread(lambda: verify_path(set_path))
    assert [what for what, _ in v.damaged] == [f"snapshots/{sid}"]


@pytest.mark.parametrize("make", [_fifo, _zero_link, _sparse], ids=["fifo", "symlink-to-dev-zero", "sparse-2GB"])
def test_special_plugback_json_is_refused_fast(plain_set, make):
    src, set_path, sid = plain_set
    make(SetLayout(set_path).meta)
    with pytest.raises(DriveFileDamaged, match="plugback.json"):
        _in_thread(lambda: BackupSet.open(set_path))


def test_manifest_reached_through_a_symlinked_folder_is_refused(plain_set, tmp_path):
    src, set_path, sid = plain_set
    elsewhere = tmp_path / "elsewhere"
    (set_path / "snapshots").rename(elsewhere)
    (set_path / "snapshots").symlink_to(elsewhere)
    with pytest.raises(ManifestDamaged, match="symbolic link"):
        BackupSet.open(set_path).manifest(sid)


def test_content_that_is_a_fifo_is_damaged_not_a_hang(plain_set, tmp_path):
    src, set_path, sid = plain_set
    _fifo(set_path / "Latest" / "Data" / "b.txt")
    r = _in_thread(lambda: restore_path(set_path, tmp_path / "out"))
    assert [p for p, _ in r.damaged] == ["Data/b.txt"]
    assert read_tree(tmp_path / "out") == {"Data/a.txt": b"alpha", "Data/c/d.txt": b"delta"}


@pytest.mark.parametrize("make", [_fifo, _zero_link, _sparse], ids=["fifo", "symlink-to-dev-zero", "sparse-2GB"])
def test_special_journal_is_ignored_and_replaced(plain_set, make):
    src, set_path, sid = plain_set
    make(SetLayout(set_path).journal)
    assert _in_thread(lambda: journal.load(SetLayout(set_path).journal)) == (None, {})
    (src / "a.txt").write_bytes(b"alpha 2")
    r = _in_thread(lambda: backup_path(set_path, [src]), timeout=60)
    assert r.status == "ok" and not os.path.lexists(SetLayout(set_path).journal)
    assert (set_path / "Latest" / "Data" / "a.txt").read_bytes() == b"alpha 2"


def test_cli_names_the_file_and_never_shows_a_traceback(plain_set):
    src, set_path, sid = plain_set
    layout = SetLayout(set_path)
    layout.manifest(FORGED).write_bytes(_raw_manifest(entries=UNSAFE["dotdot"]))
    parts = "20990102T000000Z-beef"
    layout.manifest(parts).write_bytes(_raw_manifest(entries=DAMAGED["parts-1e9"], sid=parts))
    fifo = "20990103T000000Z-beef"
    _fifo(layout.manifest(fifo))
    proc = run_cli("verify", set_path, timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    for bad in (FORGED, parts, fifo):
        assert f"snapshots/{bad}" in proc.stdout
    proc = run_cli("snapshots", set_path, timeout=60)
    # Listing reads headers only (issue #11): a readable header is listed, and the damage shows
    # when the snapshot is used (ls, below) and in verify (above); a manifest that is no file is not.
    assert proc.returncode == 0 and sid in proc.stdout and fifo not in proc.stdout
    for bad in (FORGED, parts, fifo):
        proc = run_cli("ls", set_path, bad, timeout=60)
        assert proc.returncode == 4 and f"snapshots/{bad}.json.gz" in proc.stderr, proc.stderr
    _fifo(layout.meta)
    proc = run_cli("snapshots", set_path, timeout=60)
    assert proc.returncode == 4 and "plugback.json" in proc.stderr and "named pipe" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_backup_after_a_hostile_newest_manifest_touches_nothing_outside(plain_set, tmp_path):
    """The issue's worst case: a plain manifest's path/mirror joined to Latest/ moved files anywhere."""
    src, set_path, sid = plain_set
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours")
    real = [e.to_dict() for e in BackupSet.open(set_path).manifest(sid).entries]
    hostile = [d | {"mirror": "../../victim.txt"} if d["path"] == "Data/b.txt" else d for d in real]
    hostile.append(_f("Data/zz/../../../victim.txt"))
    SetLayout(set_path).manifest(FORGED).write_bytes(_raw_manifest(entries=hostile))
    (src / "b.txt").unlink()                     # the next backup removes b.txt from Latest/
    r = backup_path(set_path, [src])
    assert r.status == "warnings" and any(FORGED in w.path for w in r.warnings)
    assert victim.read_bytes() == b"not yours"
    restore_path(set_path, tmp_path / "out")
    assert read_tree(tmp_path / "out") == {"Data/a.txt": b"alpha", "Data/c/d.txt": b"delta"}


# --- encrypted sets: the decoder, not the decryption, refuses ---------------------------------

@pytest.fixture
def enc_set(tmp_path):
    src = make_tree(tmp_path / "src" / "Data", {"b.txt": b"bravo"})
    set_path = tmp_path / "enc"
    backup_path(set_path, [src], passphrase=PASS["PLUGBACK_PASSPHRASE"])
    unlock = lambda enc, set_id: crypto.unlock_with_passphrase(enc, PASS["PLUGBACK_PASSPHRASE"])  # noqa: E731
    return src, set_path, BackupSet.open(set_path, unlock), unlock


@pytest.mark.parametrize("entries,error", [
    (UNSAFE["dotdot"], UnsafeManifestPath),
    (UNSAFE["below-a-symlink"], UnsafeManifestPath),
    ([DATA, _f("Data/b.txt")], ManifestDamaged),          # a file with no object name
    (DAMAGED["parts-1e9"], ManifestDamaged),
], ids=["dotdot", "below-a-symlink", "no-obj", "parts-1e9"])
def test_encrypted_manifest_with_hostile_entries_is_refused(enc_set, entries, error):
    src, set_path, bset, unlock = enc_set
    entries = [e | {"obj": "ab" * 32} if e["type"] == "f" and error is UnsafeManifestPath else e for e in entries]
    blob = crypto.encrypt_bytes(bset.keys, _raw_manifest(entries=entries))
    SetLayout(set_path).manifest(FORGED).write_bytes(blob)
    with pytest.raises(error, match=f"snapshots/{FORGED}.json.gz"):
        BackupSet.open(set_path, unlock).manifest(FORGED)


def test_encrypted_journal_holds_no_path_or_plain_hash(enc_set, tmp_path):
    src, set_path, bset, unlock = enc_set
    path = SetLayout(set_path).journal
    placed = journal.Placed("Data/Geheimnis.txt", "Data/Geheimnis.txt", SHA, "ab" * 32, 5, 1, 2, 3)
    j = journal.Journal(bset.fs, path, "20990101T000000Z-beef", None, {}, bset.keys)
    j.record(placed)
    j.checkpoint()
    j.close()
    raw = path.read_bytes()
    assert b"Geheimnis" not in raw and SHA.encode() not in raw and b"ab" * 32 not in raw
    assert journal.load(path, bset.keys) == ({"snapshot": "20990101T000000Z-beef", "parent": None},
                                             {"Data/Geheimnis.txt": placed})
    assert journal.load(path, None)[1] == {}                   # no keys: nothing usable
    lines = raw.split(b"\n")
    i = next(i for i, line in enumerate(lines) if b"sealed" in line)
    sealed = json.loads(lines[i])["sealed"]
    lines[i] = json.dumps({"sealed": sealed[:-8] + "AAAAAAA="}).encode()
    path.write_bytes(b"\n".join(lines))
    assert journal.load(path, bset.keys)[1] == {}              # tampered: not trusted
    plain = [lines[0], json.dumps(placed.to_dict()).encode(), b'{"checkpoint":1}']
    path.write_bytes(b"\n".join(plain))
    assert journal.load(path, bset.keys)[1] == {}              # clear records: not Plugback's


def test_plain_journal_records_are_checked(tmp_path):
    path = tmp_path / "journal.json"
    good = journal.Placed("Data/a", "Data/a", SHA, None, 1, 2, 3, 4)
    for bad in ({"p": "../x"}, {"m": "/etc/passwd"}, {"sha": "x"}, {"parts": 10**9}, {"size": "1"}):
        lines = [{"snapshot": FORGED, "parent": None}, good.to_dict(), good.to_dict() | bad | {"p": "Data/b"}
                 if "p" not in bad else good.to_dict() | bad, {"checkpoint": 2}]
        path.write_text("".join(json.dumps(o) + "\n" for o in lines))
        assert journal.load(path)[1] == {}, bad    # the damaged line ends what is trusted
    path.write_text("".join(json.dumps(o) + "\n" for o in [{"snapshot": FORGED, "parent": None},
                                                           good.to_dict(), {"checkpoint": 1}]))
    assert journal.load(path) == ({"snapshot": FORGED, "parent": None}, {"Data/a": good})


# --- drive.json and the drive watcher -----------------------------------------------------------

@pytest.mark.parametrize("make", [_fifo, _zero_link, _sparse], ids=["fifo", "symlink-to-dev-zero", "sparse-2GB"])
def test_special_drive_file_is_not_a_drive(tmp_path, make):
    write_drive_file(tmp_path, "Blue")
    make(drive_file(tmp_path))
    assert _in_thread(lambda: read_drive_file(tmp_path)) is None


def test_drive_file_below_a_symlinked_folder_is_not_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    write_drive_file(real, "Blue")
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "Plugback").symlink_to(real / "Plugback")
    assert read_drive_file(real) is not None and read_drive_file(mount) is None


@pytest.mark.parametrize("raw", [b"[]", b'{"format":"plugback-drive"}', b'{"format":"plugback-drive","drive_id":7}',
                                 b'{"format":"plugback-drive","drive_id":"../../x"}', b"\xff\xfe", b"[" * 100_000])
def test_drive_file_that_is_not_one_is_refused(raw):
    with pytest.raises(DriveFileDamaged, match="drive.json"):
        drives.decode_drive_file(raw)


def test_drive_label_is_made_printable():
    info = drives.decode_drive_file(json.dumps({"format": "plugback-drive", "drive_id": "a-1",
                                                "label": "Blue\n\x1b[31mred" + "x" * 500, "created": 5}).encode())
    assert info.label.startswith("Blue[31mred") and len(info.label) == 200 and info.created == ""


def test_watcher_is_not_hung_by_a_fifo_drive_file(tmp_path, paths, make_agent):  # noqa: F811 - the fixture
    good, bad = tmp_path / "good", tmp_path / "bad"
    for mount in (good, bad):
        mount.mkdir()
        write_drive_file(mount, mount.name)
    _fifo(drive_file(bad))
    drive_id = read_drive_file(good).drive_id
    update_config(paths.config_file, lambda c: c.drives.append({"drive_id": drive_id, "label": "good"}))
    agent, _ = make_agent()
    watcher = DriveWatcher(agent, interval=0.2, mounts=lambda: frozenset({str(bad), str(good)}))
    _in_thread(watcher.poll)
    assert agent.present == {drive_id: str(good)} and watcher.known[str(bad)] is None


def test_cli_drives_is_not_hung_by_a_fifo_drive_file(ext4_drive):
    """`plugback drives` reads drive.json of every mounted volume: a FIFO there once hung it."""
    mount = ext4_drive.mount_point
    (mount / "Plugback").mkdir()
    _fifo(drive_file(mount))
    try:
        proc = run_cli("drives", "--json", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("plugback drives hung on a FIFO drive.json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (listed,) = [v for v in json.loads(proc.stdout) if v["mount"] == str(mount)]
    assert listed["drive_id"] is None
