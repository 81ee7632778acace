"""make_tree / read_tree: trees as data, compared in one assert."""

import os

import pytest

from tests.support import File, Symlink, make_tree, read_tree


def test_round_trip_of_files_empty_dirs_and_symlinks(tmp_path):
    spec = {
        "a/b.txt": b"hello",
        "a/c/d.bin": bytes(range(256)),
        "empty/": None,
        "link": Symlink("a/b.txt"),
        "dangling": Symlink("../nowhere"),
        "text.txt": "caf\u00e9",
    }
    make_tree(tmp_path / "src", spec)
    got = read_tree(tmp_path / "src")
    assert got == {**spec, "text.txt": "caf\u00e9".encode()}
    assert list(got) == sorted(got)
    assert os.readlink(tmp_path / "src" / "link") == "a/b.txt"


def test_a_one_byte_difference_is_seen(tmp_path):
    make_tree(tmp_path / "x", {"f": b"abc", "d/": None})
    make_tree(tmp_path / "y", {"f": b"abd", "d/": None})
    make_tree(tmp_path / "z", {"f": b"abc", "d/e": b""})
    assert read_tree(tmp_path / "x") != read_tree(tmp_path / "y")
    assert read_tree(tmp_path / "x") != read_tree(tmp_path / "z")


def test_modes_and_mtimes_on_request(tmp_path):
    mtime = 1_700_000_000_123_456_789
    make_tree(tmp_path, {"run.sh": File(b"#!/bin/sh\n", mode=0o755, mtime_ns=mtime), "plain": b"x"})
    os.chmod(tmp_path / "plain", 0o600)
    got = read_tree(tmp_path, modes=True, mtimes=True)
    assert got["run.sh"] == File(b"#!/bin/sh\n", 0o755, mtime)
    assert got["plain"].mode == 0o600
    assert read_tree(tmp_path, modes=True)["run.sh"] == File(b"#!/bin/sh\n", 0o755, None)


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../b", "a//b", ""])
def test_paths_must_be_plain_relative(tmp_path, bad):
    with pytest.raises(ValueError):
        make_tree(tmp_path, {bad: b"x"})


def test_directory_keys_take_none(tmp_path):
    with pytest.raises(ValueError):
        make_tree(tmp_path, {"d/": b"x"})
