"""Encrypted sets end to end: the CLI as a user runs it, and what an attacker with the drive sees."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest

from core.agent.keys import Secret, make_unlocker
from core.engine import crypto
from core.engine.progress import CancelToken
from core.engine.repo import BackupSet
from core.errors import Cancelled
from tests.support.cli import run_cli
from tests.support.engine import backup_path, forget_path, restore_path, verify_path
from tests.support.trees import File, Symlink, make_tree, read_tree

PASS = {"PLUGBACK_PASSPHRASE": "correct horse battery staple"}
SECRET_NAMES = ["TopSecretFolder", "confidential-salary.xlsx", "Geheimnis.txt", "Plans"]
SECRET_CONTENT = b"the launch code is 0000 " * 50


def _tree():
    return {
        "TopSecretFolder/confidential-salary.xlsx": File(SECRET_CONTENT, 0o600, 1_700_000_000_000_000_000),
        "TopSecretFolder/Geheimnis.txt": "Zutaten: Zucker, Zimt",
        "TopSecretFolder/empty/": None,
        "TopSecretFolder/shortcut": Symlink("Geheimnis.txt"),
        "big.bin": os.urandom(3 * (1 << 20) + 123),   # several chunks
    }


@pytest.fixture
def enc(tmp_path):
    src = make_tree(tmp_path / "home" / "Plans", _tree())
    set_path = tmp_path / "drive" / "set"
    set_path.parent.mkdir()
    proc = run_cli("backup", src, "--to", set_path, "--encrypt", "--json", env=PASS)
    assert proc.returncode == 0, proc.stderr
    return src, set_path, json.loads(proc.stdout)["snapshot_id"]


def _ok(proc, code=0):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_user_story_passphrase_recovery_key_passwd(enc, tmp_path):
    src, set_path, first = enc
    out = tmp_path / "r1"
    _ok(run_cli("restore", set_path, out, env=PASS))
    assert read_tree(out / "Plans", modes=True) == read_tree(src, modes=True)

    key = _ok(run_cli("key", "export", set_path, env=PASS)).stdout.strip()
    keyfile = tmp_path / "recovery.txt"
    keyfile.write_text(key.lower().replace("-", " "))   # typed sloppily from paper
    out2 = tmp_path / "r2"
    _ok(run_cli("restore", set_path, out2, "--recovery-key-file", keyfile))
    assert read_tree(out2 / "Plans") == read_tree(src)
    _ok(run_cli("snapshots", set_path, env={"PLUGBACK_RECOVERY_KEY": key}))

    _ok(run_cli("key", "passwd", set_path, env=PASS | {"PLUGBACK_NEW_PASSPHRASE": "new one"}))
    assert run_cli("snapshots", set_path, env=PASS).returncode == 2
    out3 = tmp_path / "r3"
    _ok(run_cli("restore", set_path, out3, env={"PLUGBACK_PASSPHRASE": "new one"}))
    assert read_tree(out3 / "Plans") == read_tree(src)
    _ok(run_cli("restore", set_path, tmp_path / "r4", "--recovery-key-file", keyfile))


def test_nothing_in_the_set_reveals_names_or_content(enc):
    src, set_path, _ = enc
    needles = [n.encode() for n in SECRET_NAMES] + [SECRET_CONTENT[:24], b"Zutaten",
                                                   str(src).encode(), socket.gethostname().encode()]
    needles += [n.encode("utf-16-le") for n in SECRET_NAMES]
    needles = [n for n in needles if len(n) >= 6]   # shorter ones occur in random bytes by chance
    for path in set_path.rglob("*"):
        assert not any(n.decode("latin-1") in path.name for n in needles[:4])
        if path.is_file():
            data = path.read_bytes()
            for n in needles:
                assert n not in data, f"{n!r} found in {path}"
    meta = json.loads((set_path / "plugback.json").read_text())
    assert set(meta) == {"format", "version", "set_id", "created", "encryption"}
    assert not (set_path / "Latest").exists() and not (set_path / "Latest.sha256").exists()


def test_object_names_are_keyed(enc):
    """The plain SHA-256 of a file does not name its object (no confirming a file's presence)."""
    import hashlib

    src, set_path, _ = enc
    plain = hashlib.sha256(SECRET_CONTENT).hexdigest()
    names = {p.name for p in (set_path / "objects").rglob("*") if p.is_file()}
    assert plain not in names and len(names) == 3


def test_wrong_passphrase_is_clear(enc):
    _, set_path, _ = enc
    for cmd in (("snapshots", set_path), ("verify", set_path), ("restore", set_path, set_path.parent / "x")):
        proc = run_cli(*cmd, env={"PLUGBACK_PASSPHRASE": "wrong"})
        assert proc.returncode == 2 and "Wrong passphrase" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("snapshots", set_path)
    assert proc.returncode == 2 and "no passphrase was found" in proc.stderr


def _objects(set_path):
    return sorted(p for p in (set_path / "objects").rglob("*") if p.is_file())


def _biggest(set_path):
    return max(_objects(set_path), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("where", ["object", "manifest"])
def test_flipped_bit_anywhere_is_damage(enc, tmp_path, where):
    _, set_path, sid = enc
    target = _biggest(set_path) if where == "object" else next((set_path / "snapshots").iterdir())
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    proc = run_cli("verify", set_path, "--read-all", env=PASS)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert ("big.bin" if where == "object" else sid) in proc.stdout
    out = tmp_path / "out"
    proc = run_cli("restore", set_path, out, env=PASS)
    assert proc.returncode == 4
    assert not (out / "Plans" / "big.bin").exists()


def test_truncation_swapped_chunks_and_renamed_objects(enc):
    _, set_path, _ = enc
    obj = _biggest(set_path)
    original = obj.read_bytes()
    head, chunk = crypto.HEADER_LEN, crypto.CHUNK_SIZE + crypto.TAG_LEN

    def damaged_after(data) -> list:
        obj.write_bytes(data)
        result = verify_path(set_path, read_all=True, unlock=make_unlocker(Secret.passphrase(PASS["PLUGBACK_PASSPHRASE"])))
        obj.write_bytes(original)
        return result.damaged

    assert damaged_after(original) == []
    assert damaged_after(original[:-chunk // 2])                           # cut mid-chunk
    assert damaged_after(original[: head + 2 * chunk])                     # last chunk dropped (whole chunks)
    swapped = original[:head] + original[head + chunk: head + 2 * chunk] + original[head: head + chunk] \
        + original[head + 2 * chunk:]
    assert damaged_after(swapped)
    # An object copied under another object's name is caught by its keyed name.
    small = min(_objects(set_path), key=lambda p: p.stat().st_size)
    saved = small.read_bytes()
    shutil.copyfile(obj, small)
    result = verify_path(set_path, read_all=True, unlock=make_unlocker(Secret.passphrase(PASS["PLUGBACK_PASSPHRASE"])))
    small.write_bytes(saved)
    assert result.damaged


def test_incremental_resume_forget_on_encrypted_set(tmp_path):
    unlock = make_unlocker(Secret.passphrase("pw"))
    src = make_tree(tmp_path / "src" / "Data", {f"f{i}.txt": f"file {i}" * 100 for i in range(40)})
    set_path = tmp_path / "set"
    first = backup_path(set_path, [src], passphrase="pw")
    assert first.files_copied == 40
    (src / "f1.txt").write_text("changed")
    second = backup_path(set_path, [src], unlock=unlock)
    assert second.files_copied == 1

    for i in range(40, 80):
        (src / f"f{i}.txt").write_text(f"new {i}" * 100)
    token = CancelToken()
    copied = []

    def stop(p):
        # files_done counts unchanged files too (the run's position): count the copies' reports.
        if p.phase == "copy" and p.current:
            copied.append(p.current)
            if len(copied) >= 20:
                token.cancel()

    with pytest.raises(Cancelled):
        backup_path(set_path, [src], unlock=unlock, cancel=token, progress=stop, workers=1)
    third = backup_path(set_path, [src], unlock=unlock)
    assert third.files_copied <= 20

    out = tmp_path / "out"
    restore_path(set_path, out, snapshot=first.snapshot_id, unlock=unlock)
    assert (out / "Data" / "f1.txt").read_text() == "file 1" * 100
    from core.engine.retention import RetentionPolicy

    result = forget_path(set_path, RetentionPolicy(last=1), unlock=unlock)
    assert result.forgotten and result.objects_removed == 1   # only f1's first version was unique
    assert verify_path(set_path, read_all=True, unlock=unlock).ok
    out2 = tmp_path / "out2"
    restore_path(set_path, out2, unlock=unlock)
    assert read_tree(out2 / "Data") == read_tree(src)


def test_remembered_passphrase_serves_unattended_runs(tmp_path):
    src = make_tree(tmp_path / "src" / "D", {"a.txt": b"a"})
    set_path = tmp_path / "set"
    _ok(run_cli("backup", src, "--to", set_path, "--encrypt", "--remember", env=PASS))
    # No passphrase given now: the (test) keyring has it.
    _ok(run_cli("backup", src, "--to", set_path))
    _ok(run_cli("verify", set_path, "--read-all"))
    set_id = BackupSet.open(set_path, make_unlocker(Secret.passphrase(PASS["PLUGBACK_PASSPHRASE"]))).set_id
    assert set_id
