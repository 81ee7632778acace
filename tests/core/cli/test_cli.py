"""The `plugback` command line, run as a real subprocess, as a new user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.cli import run_cli
from tests.support.trees import File, Symlink, make_tree, read_tree

T0 = 1_700_000_000_000_000_000


def _tree():
    return {
        "report.txt": File(b"first draft", 0o640, T0),
        "Ünïcødé – naïve.txt": File("grüße".encode(), 0o644, T0 + 1_000_000_000),
        "empty folder/": None,
        "link-to-report": Symlink("report.txt"),
        "run.sh": File(b"#!/bin/sh\necho hi\n", 0o755, T0 + 5),
        "deep/er/still.txt": File(b"x" * 10000, 0o600, T0),
    }


@pytest.fixture
def user(tmp_path):
    """Two source folders and a set on 'another disk' (another folder)."""
    a = make_tree(tmp_path / "home" / "Documents", _tree())
    b = make_tree(tmp_path / "home" / "Photos", {"cat.jpg": File(os.urandom(300_000), 0o644, T0),
                                                "2024/dog.jpg": File(os.urandom(50_000), 0o644, T0)})
    (tmp_path / "disk").mkdir()
    return a, b, tmp_path / "disk" / "backups"


def _ok(proc, code=0):
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def test_new_user_story(user, tmp_path):
    docs, photos, set_path = user
    first_tree = {"Documents": read_tree(docs, modes=True, mtimes=True),
                  "Photos": read_tree(photos, modes=True, mtimes=True)}
    first = json.loads(_ok(run_cli("backup", docs, photos, "--to", set_path, "--json")).stdout)
    assert first["files_copied"] == 6 and first["status"] == "ok"

    # A day of changes: edit, add, rename, delete.
    (docs / "report.txt").write_bytes(b"second draft, longer")
    (docs / "new.txt").write_bytes(b"added")
    (docs / "deep").rename(docs / "deeper")
    (photos / "cat.jpg").unlink()
    second = json.loads(_ok(run_cli("backup", docs, photos, "--to", set_path, "--json")).stdout)
    assert second["files_copied"] == 3   # report, new, the renamed file; nothing else re-copied

    snaps = json.loads(_ok(run_cli("snapshots", set_path, "--json")).stdout)
    assert [s["id"] for s in snaps] == [first["snapshot_id"], second["snapshot_id"]]

    newest = tmp_path / "restore-newest"
    _ok(run_cli("restore", set_path, newest))
    assert read_tree(newest / "Documents", modes=True, mtimes=True) == read_tree(docs, modes=True, mtimes=True)
    assert read_tree(newest / "Photos", modes=True, mtimes=True) == read_tree(photos, modes=True, mtimes=True)

    oldest = tmp_path / "restore-first"
    _ok(run_cli("restore", set_path, oldest, "--snapshot", first["snapshot_id"]))
    assert {"Documents": read_tree(oldest / "Documents", modes=True, mtimes=True),
            "Photos": read_tree(oldest / "Photos", modes=True, mtimes=True)} == first_tree

    # The newest backup is plain files, checkable with standard tools.
    check = subprocess.run(["sha256sum", "-c", "../Latest.sha256"], cwd=set_path / "Latest",
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (set_path / "Latest" / "Documents" / "report.txt").read_bytes() == b"second draft, longer"


def test_ls_diff_and_paths(user, tmp_path):
    docs, photos, set_path = user
    _ok(run_cli("backup", docs, photos, "--to", set_path))
    (docs / "report.txt").write_bytes(b"changed")
    (docs / "run.sh").unlink()
    _ok(run_cli("backup", docs, photos, "--to", set_path))
    ids = [s["id"] for s in json.loads(run_cli("snapshots", set_path, "--json").stdout)]

    listing = json.loads(_ok(run_cli("ls", set_path, ids[0], "Documents", "--json")).stdout)
    paths = {e["path"]: e["type"] for e in listing}
    assert paths["Documents/link-to-report"] == "l"
    assert paths["Documents/empty folder"] == "d"
    assert "Photos/cat.jpg" not in paths
    human = _ok(run_cli("ls", set_path)).stdout
    assert "Documents/report.txt" in human and "Documents/run.sh" not in human

    diff = _ok(run_cli("diff", set_path, ids[0], ids[1])).stdout
    assert "M Documents/report.txt" in diff and "- Documents/run.sh" in diff
    assert "Photos" not in diff

    # Restore a subset, with each conflict choice.
    out = tmp_path / "out"
    _ok(run_cli("restore", set_path, out, "--snapshot", ids[0], "--path", "Documents/report.txt"))
    assert read_tree(out) == {"Documents/report.txt": b"first draft"}
    (out / "Documents/report.txt").write_bytes(b"mine")
    _ok(run_cli("restore", set_path, out, "--snapshot", ids[0], "--path", "Documents/report.txt",
                "--on-conflict", "skip"))
    assert (out / "Documents/report.txt").read_bytes() == b"mine"
    kept = _ok(run_cli("restore", set_path, out, "--snapshot", ids[0], "--path", "Documents/report.txt")).stdout
    assert f"  {out / 'Documents/report (restored).txt'}  (next to report.txt)" in kept   # named
    assert (out / "Documents/report.txt").read_bytes() == b"mine"           # keep-both (default)
    assert (out / "Documents/report (restored).txt").read_bytes() == b"first draft"
    _ok(run_cli("restore", set_path, out, "--snapshot", ids[0], "--path", "Documents/report.txt",
                "--on-conflict", "overwrite"))
    assert (out / "Documents/report.txt").read_bytes() == b"first draft"


def test_verify_and_forget(user, tmp_path):
    docs, photos, set_path = user
    for i in range(3):
        (docs / "report.txt").write_bytes(f"version {i}".encode())
        _ok(run_cli("backup", docs, "--to", set_path))
    v = json.loads(_ok(run_cli("verify", set_path, "--read-all", "--json")).stdout)
    assert v["ok"] and v["snapshots"] == 3
    out = _ok(run_cli("forget", set_path, "--keep-last", "1", "--prune")).stdout
    assert "Forgot 2 snapshot(s)" in out and "Pruned 2" in out
    assert len(json.loads(run_cli("snapshots", set_path, "--json").stdout)) == 1
    _ok(run_cli("verify", set_path, "--read-all"))
    assert [p for p in (set_path / "objects").rglob("*") if p.is_file()] == []
    restored = tmp_path / "r"
    _ok(run_cli("restore", set_path, restored))
    assert (restored / "Documents/report.txt").read_bytes() == b"version 2"


def test_exit_codes_and_messages(user, tmp_path):
    docs, photos, set_path = user
    assert _ok(run_cli("--version")).stdout.startswith("plugback ")
    for cmd in ("backup", "snapshots", "ls", "diff", "restore", "verify", "forget"):
        assert "usage" in _ok(run_cli(cmd, "--help")).stdout.lower()
    bad = run_cli("backup", tmp_path / "nope", "--to", set_path)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("snapshots", tmp_path)
    assert bad.returncode == 2 and "not a Plugback backup set" in bad.stderr
    bad = run_cli("frobnicate")
    assert bad.returncode == 2
    bad = run_cli("forget", set_path)
    assert bad.returncode == 2
    _ok(run_cli("backup", docs, "--to", set_path))
    bad = run_cli("forget", set_path)
    assert bad.returncode == 2 and "what to keep" in bad.stderr
    bad = run_cli("restore", set_path, tmp_path / "o", "--snapshot", "20990101T000000Z-0000")
    assert bad.returncode == 2 and "no snapshot" in bad.stderr.lower()
    bad = run_cli("backup", set_path / "Latest", "--to", set_path)  # a source inside the set
    assert bad.returncode == 2 and "inside the backup set" in bad.stderr
    inner = docs / "my-backups"                                     # a set inside its source: left out
    _ok(run_cli("backup", docs, "--to", inner))
    listing = json.loads(_ok(run_cli("ls", inner, "--json")).stdout)
    assert not any("my-backups" in e["path"] for e in listing)
    shutil.rmtree(inner)
    not_empty = make_tree(tmp_path / "occupied", {"mine.txt": b"x"})
    bad = run_cli("backup", docs, "--to", not_empty)
    assert bad.returncode == 2 and "not empty" in bad.stderr
    assert read_tree(not_empty) == {"mine.txt": b"x"}


def test_newer_format_refused(user, tmp_path):
    docs, _, set_path = user
    _ok(run_cli("backup", docs, "--to", set_path))
    meta = json.loads((set_path / "plugback.json").read_text())
    meta["version"] = 99
    (set_path / "plugback.json").write_text(json.dumps(meta))
    for args in (("snapshots", set_path), ("backup", docs, "--to", set_path), ("verify", set_path)):
        bad = run_cli(*args)
        assert bad.returncode == 1 and "newer" in bad.stderr and "Update Plugback" in bad.stderr


def test_warnings_exit_code_lists_skipped_files(user, tmp_path):
    """A file that cannot be read is skipped, listed, and the run ends with exit 3."""
    docs, _, set_path = user
    fifo = docs / "a-pipe"
    os.mkfifo(fifo)
    proc = run_cli("backup", docs, "--to", set_path)
    assert proc.returncode == 3, proc.stderr
    assert "a-pipe" in proc.stderr and "skipped" in proc.stderr
    data = json.loads(run_cli("backup", docs, "--to", set_path, "--json").stdout)
    assert data["status"] == "warnings" and data["warnings"][0]["path"].endswith("a-pipe")


def test_progress_bar_only_on_terminal(user, tmp_path):
    docs, _, set_path = user
    proc = _ok(run_cli("backup", docs, "--to", set_path))
    assert "\r" not in proc.stderr   # not a terminal: no bar
    if shutil.which("script") is None:
        pytest.skip("util-linux 'script' is needed to give the CLI a terminal")
    from tests.support.cli import plugback_executable
    from tests.support.env import subprocess_env

    (docs / "report.txt").write_bytes(b"changed for the bar")
    cmd = f"{plugback_executable()} backup {docs} --to {set_path}"
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                         env=subprocess_env(), timeout=120)
    assert tty.returncode == 0, tty.stdout
    assert "Copying [" in tty.stdout and "100%" in tty.stdout


def test_set_on_a_drive_that_is_not_plugged_in(user, tmp_path):
    """A missing parent folder is a missing drive, not a folder to create on the internal disk."""
    docs, _, _ = user
    absent = tmp_path / "media" / "ann" / "Backup" / "mine"
    proc = run_cli("backup", docs, "--to", absent)
    assert proc.returncode == 2 and "plug the drive in" in proc.stderr
    assert not (tmp_path / "media").exists()
