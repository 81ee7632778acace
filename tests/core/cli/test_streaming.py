"""Listing, diff and restore as streams (issue #11): what they print and write, on real sets."""

from __future__ import annotations

import json
import os

from core.cli.backup_cmds import diff_entries
from core.engine.manifest import DIR, FILE, LINK, Entry
from tests.support.cli import run_cli
from tests.support.trees import File, make_tree, read_tree

T0 = 1_700_000_000_000_000_000
SHA_A, SHA_B = "a" * 64, "b" * 64


def _ok(proc, code=0):
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def test_diff_is_a_merge_of_two_sorted_streams():
    a = [Entry("D", DIR), Entry("D/a", FILE, sha256=SHA_A), Entry("D/b", FILE, sha256=SHA_A),
         Entry("D/c", FILE, sha256=SHA_A, mode=0o644), Entry("D/d", LINK, target="x"), Entry("D/gone", DIR),
         Entry("D/gone/f", FILE, sha256=SHA_A)]
    b = [Entry("D", DIR), Entry("D/a", FILE, sha256=SHA_A), Entry("D/b", FILE, sha256=SHA_B),
         Entry("D/c", FILE, sha256=SHA_A, mode=0o600), Entry("D/d", FILE, sha256=SHA_A),
         Entry("D/new", FILE, sha256=SHA_B), Entry("E", DIR)]
    assert list(diff_entries(a, b)) == [("M", "D/b"), ("U", "D/c"), ("T", "D/d"), ("-", "D/gone"),
                                        ("-", "D/gone/f"), ("+", "D/new"), ("+", "E")]
    assert list(diff_entries([], b[:1])) == [("+", "D")] and list(diff_entries(a[:1], [])) == [("-", "D")]
    # Manifest order is component by component ("D/a/x" before "D/a b"), not string order.
    x = [Entry("D/a", DIR), Entry("D/a/x", FILE, sha256=SHA_A)]
    assert list(diff_entries(x, [Entry("D/a b", FILE, sha256=SHA_A)])) == [
        ("-", "D/a"), ("-", "D/a/x"), ("+", "D/a b")]


def test_json_listings_stay_arrays(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo"})
    set_path = tmp_path / "set"
    _ok(run_cli("backup", src, "--to", set_path))
    (src / "a.txt").write_bytes(b"alpha 2")
    _ok(run_cli("backup", src, "--to", set_path))
    ids = [s["id"] for s in json.loads(_ok(run_cli("snapshots", set_path, "--json")).stdout)]
    assert len(ids) == 2
    listing = json.loads(_ok(run_cli("ls", set_path, "latest", "Docs/sub", "--json")).stdout)
    assert [e["path"] for e in listing] == ["Docs/sub", "Docs/sub/b.txt"]
    diff = json.loads(_ok(run_cli("diff", set_path, ids[0], ids[1], "--json")).stdout)
    assert diff == [{"change": "M", "path": "Docs/a.txt"}]
    assert json.loads(_ok(run_cli("diff", set_path, ids[1], ids[1], "--json")).stdout) == []
    proc = _ok(run_cli("ls", set_path, "latest", "Docs/nothing"), 2)
    assert "Nothing at 'Docs/nothing'" in proc.stderr and not proc.stdout


def test_restore_sets_folder_modes_and_times_after_their_contents(tmp_path):
    src = make_tree(tmp_path / "Docs", {"locked/inner/f.txt": File(b"x", 0o644, T0),
                                        "locked/g.txt": File(b"y", 0o644, T0), "open/h.txt": b"z"})
    times = {"locked": T0 + 7, "locked/inner": T0 + 8, "open": T0 + 9}
    modes = {"locked": 0o555, "locked/inner": 0o700, "open": 0o750}
    for rel in sorted(times, reverse=True):
        os.utime(src / rel, ns=(times[rel], times[rel]))
        os.chmod(src / rel, modes[rel])
    set_path, out = tmp_path / "set", tmp_path / "out"
    try:
        _ok(run_cli("backup", src, "--to", set_path))
        _ok(run_cli("restore", set_path, out))
        for rel in times:
            st = os.stat(out / "Docs" / rel)
            assert (st.st_mode & 0o7777, st.st_mtime_ns) == (modes[rel], times[rel]), rel
        assert (out / "Docs" / "locked" / "inner" / "f.txt").read_bytes() == b"x"
    finally:
        for root in (src, out / "Docs"):
            if (root / "locked").exists():
                os.chmod(root / "locked", 0o755)


def test_restore_of_a_path_the_snapshot_lacks_writes_nothing(tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo"})
    set_path, out = tmp_path / "set", tmp_path / "out"
    _ok(run_cli("backup", src, "--to", set_path))
    proc = _ok(run_cli("restore", set_path, out, "--path", "Docs/sub", "--path", "Docs/nope"), 2)
    assert "Not in this snapshot: Docs/nope" in proc.stderr and not out.exists()
    _ok(run_cli("restore", set_path, out, "--path", "Docs/sub", "--path", "Docs/sub/b.txt"))
    assert read_tree(out) == {"Docs/sub/b.txt": b"bravo"}


def test_names_that_are_not_utf8_go_through_the_scratch_tables(tmp_path):
    """An older snapshot's content in Latest/ is found through the scratch index, by names that
    POSIX allows and UTF-8 does not (they travel as lone surrogates)."""
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    odd = os.fsencode(src) + b"/caf\xe9 \xff.txt"
    with open(odd, "wb") as f:
        f.write(b"latin-1 name")
    set_path, out = tmp_path / "set", tmp_path / "out"
    _ok(run_cli("backup", src, "--to", set_path))
    first = json.loads(_ok(run_cli("snapshots", set_path, "--json")).stdout)[0]["id"]
    (src / "a.txt").write_bytes(b"alpha 2")
    _ok(run_cli("backup", src, "--to", set_path))
    _ok(run_cli("restore", set_path, out, "--snapshot", first))
    with open(os.fsencode(out) + b"/Docs/caf\xe9 \xff.txt", "rb") as f:
        assert f.read() == b"latin-1 name"
    assert (out / "Docs" / "a.txt").read_bytes() == b"alpha"
    _ok(run_cli("verify", set_path, "--read-all"))
