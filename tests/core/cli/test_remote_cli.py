"""``plugback ... rclone:REMOTE:PATH``: remote sets from the real command line (issue #13).

Debian's rclone against ``rclone serve webdav`` on 127.0.0.1, started here over a temp
folder, with the remote in a temp rclone config given as RCLONE_CONFIG (as a user's own).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support.cli import run_cli
from tests.support.rclone import RcloneWorld
from tests.support.tools import need
from tests.support.trees import File, Symlink, make_tree, read_tree

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def remote(tmp_path):
    """(environment for the CLI, the served folder) with a ``cloud`` WebDAV remote."""
    need("rclone")
    world = RcloneWorld(tmp_path / "rclone")
    server = world.serve_webdav(tmp_path / "served")
    world.add_webdav("cloud", server)
    yield {"RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": "a long passphrase"}, tmp_path / "served"
    world.close()


def _ok(proc, code=0):
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def test_a_remote_set_from_backup_to_prune(remote, tmp_path):
    env, served = remote
    docs = make_tree(tmp_path / "home" / "Documents", {
        "report.txt": File(b"first draft " * 100_000, 0o640, T0),     # big enough for an object of its own
        "deep/er/still.txt": File(os.urandom(200_000), 0o600, T0),
        "link": Symlink("report.txt"), "empty/": None})
    spec = "rclone:cloud:backups/laptop"
    first = json.loads(_ok(run_cli("backup", docs, "--to", spec, "--json", env=env)).stdout)
    assert first["status"] == "ok" and first["files_copied"] == 2
    (docs / "report.txt").write_bytes(b"second draft " * 100_000)
    second = json.loads(_ok(run_cli("backup", docs, "--to", spec, "--json", env=env)).stdout)
    assert second["files_copied"] == 1

    snaps = json.loads(_ok(run_cli("snapshots", spec, "--json", env=env)).stdout)
    assert [s["id"] for s in snaps] == [first["snapshot_id"], second["snapshot_id"]]
    listing = _ok(run_cli("ls", spec, first["snapshot_id"][:17], env=env)).stdout
    assert "Documents/report.txt" in listing and "Documents/link -> report.txt" in listing
    assert "M Documents/report.txt" in _ok(run_cli("diff", spec, first["snapshot_id"], "latest", env=env)).stdout
    found = json.loads(_ok(run_cli("versions", spec, "Documents/report.txt", "--json", env=env)).stdout)
    assert [v["snapshot"] for v in found] == [first["snapshot_id"], second["snapshot_id"]]

    _ok(run_cli("restore", spec, tmp_path / "out", "--snapshot", first["snapshot_id"], env=env))
    assert (tmp_path / "out" / "Documents" / "report.txt").read_bytes() == b"first draft " * 100_000
    assert "No damage found: 2 snapshots, 3 files" in _ok(run_cli("verify", spec, "--read-all", env=env)).stdout

    forgot = json.loads(_ok(run_cli("forget", spec, "--keep-last", "1", "--prune", "--json", env=env)).stdout)
    assert forgot["forgotten"] == [first["snapshot_id"]] and forgot["objects_removed"] == 1
    _ok(run_cli("restore", spec, tmp_path / "now", env=env))
    assert read_tree(tmp_path / "now" / "Documents", modes=True, mtimes=True) == \
        read_tree(docs, modes=True, mtimes=True)
    root = served / "backups" / "laptop"
    assert {str(p.relative_to(root)).split("/")[0] for p in root.rglob("*") if p.is_file()} == \
        {"index", "objects", "packs", "plugback.json", "snapshots"}     # no lock or part left behind


def test_key_commands_on_a_remote_set(remote, tmp_path):
    env, _ = remote
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    spec = "rclone:cloud:keys"
    _ok(run_cli("backup", src, "--to", spec, env=env))
    recovery = _ok(run_cli("key", "export", spec, env=env)).stdout.strip()
    _ok(run_cli("key", "passwd", spec, env={**env, "PLUGBACK_NEW_PASSPHRASE": "the new one"}))
    assert _ok(run_cli("snapshots", spec, env=env), 2).stderr.count("passphrase") >= 1
    _ok(run_cli("snapshots", spec, env={**env, "PLUGBACK_PASSPHRASE": "the new one"}))
    (tmp_path / "rk").write_text(recovery)
    _ok(run_cli("verify", spec, "--recovery-key-file", tmp_path / "rk", env={**env, "PLUGBACK_PASSPHRASE": ""}))


def test_bad_remote_input_is_one_clear_line_and_its_exit_code(remote, tmp_path):
    env, served = remote
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    # First: rclone's WebDAV server caches the listings it has given (not the remote's rule).
    (served / "photos").mkdir()
    (served / "photos" / "cat.jpg").write_bytes(b"jpeg")
    taken = _ok(run_cli("backup", src, "--to", "rclone:cloud:photos", env=env), 2)
    assert "not empty" in taken.stderr and sorted(os.listdir(served / "photos")) == ["cat.jpg"]
    _ok(run_cli("backup", src, "--to", "rclone:cloud:set", env=env))
    wrong = _ok(run_cli("restore", "rclone:cloud:set", tmp_path / "out", env={**env, "PLUGBACK_PASSPHRASE": "no"}), 2)
    assert "passphrase" in wrong.stderr and not (tmp_path / "out").exists()
    unknown = _ok(run_cli("snapshots", "rclone:nowhere:set", env=env), 2)
    assert "no rclone remote called 'nowhere'" in unknown.stderr
    assert "connection strings" in _ok(run_cli("snapshots", "rclone::webdav,url=x:", env=env), 2).stderr
    assert "not a Plugback backup set" in _ok(run_cli("verify", "rclone:cloud:elsewhere", env=env), 2).stderr \
        or "No backup set" in run_cli("verify", "rclone:cloud:elsewhere", env=env).stderr
    refused = _ok(run_cli("backup", src, "--to", "rclone:cloud:set", "--make-room", env=env), 2)
    assert "forget" in refused.stderr
    missing = _ok(run_cli("snapshots", "rclone:cloud:set", env={**env, "PATH": str(tmp_path / "nothing")}), 1)
    assert "need rclone" in missing.stderr


def test_wrong_credentials_for_the_remote_are_said_and_nothing_is_made(tmp_path):
    need("rclone")
    world = RcloneWorld(tmp_path / "rclone")
    try:
        server = world.serve_webdav(tmp_path / "served", user="ann", password="right")
        world.add_webdav("locked", server, user="ann", password="wrong")
        src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
        env = {"RCLONE_CONFIG": str(world.config), "PLUGBACK_PASSPHRASE": "pw",
               "RCLONE_LOW_LEVEL_RETRIES": "1"}     # (rclone would try the login 10 times)
        refused = _ok(run_cli("backup", src, "--to", "rclone:locked:set", env=env), 1)
        assert "rclone:locked:set" in refused.stderr and "password" in refused.stderr.lower()
        assert not list((tmp_path / "served").rglob("*"))
    finally:
        world.close()
