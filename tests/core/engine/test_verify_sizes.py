"""``verify`` checks the size every manifest records for a content, not only the first one seen.

An older manifest may list a content the newest snapshot also holds (an unchanged file, checked
in ``Latest/``) with another size: a restore of that snapshot would fail, so verify must name it,
whether that manifest is decoded, counted as the repeat of another, or read beside the newest's
lines (core/engine/verify_merge.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from core.engine import verify_latest
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree

FILES = {f"d{d}/n{i}.txt": f"file {d} {i} ".encode() * (i + 1) for d in range(3) for i in range(4)}


def _manifests(set_path):
    return sorted((set_path / "snapshots").glob("*.json.gz"))


def _resize(p, name: str, size: int) -> None:
    """The entry of the file ``name`` given another size, the trailer recomputed (a valid manifest)."""
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-2]
    at = next(i for i, line in enumerate(lines) if b'"type":"f"' in line and json.loads(line)["path"].endswith(name))
    entry = json.loads(lines[at])
    entry["size"] = size
    lines[at] = json.dumps(entry, separators=(",", ":")).encode()
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"type": "trailer", "entries": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest()}
    p.write_bytes(gzip.compress(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))


@pytest.fixture(params=["two", "with a repeat"])
def changed(request, tmp_path):
    """(set, cache): a full backup (and a no-change one), then one file changed and backed up."""
    cache = tmp_path / "cache"
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src], cache=cache)
    if request.param == "with a repeat":
        backup_path(set_path, [src], cache=cache)
    (src / "top.txt").write_bytes(b"top v2")
    backup_path(set_path, [src], cache=cache)
    return set_path, cache


@pytest.mark.parametrize("pool_from", [0, 10 ** 6])
@pytest.mark.parametrize("read_all", [False, True])
@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("which", ["the oldest", "the newest"])
def test_a_wrong_size_for_a_content_the_newest_holds_is_named(changed, monkeypatch, which, record, read_all,
                                                              pool_from):
    set_path, cache = changed
    monkeypatch.setattr(verify_latest, "POOL_FROM", pool_from)
    monkeypatch.setattr(verify_latest, "QUICK_POOL_FROM", pool_from)
    target = _manifests(set_path)[0 if which == "the oldest" else -1]
    _resize(target, "d1/n2.txt", 5)
    r = verify_path(set_path, read_all=read_all, **({"cache": cache} if record else {}))
    sid = target.name.split(".")[0]
    assert not r.ok
    named = [what for what, _why in r.damaged]
    if which == "the oldest":
        assert any("d1/n2.txt" in what and sid in what for what in named), r.damaged
    else:
        assert any(what.endswith("d1/n2.txt") for what in named), r.damaged


@pytest.mark.parametrize("read_all", [False, True])
def test_a_wrong_size_in_one_of_two_older_manifests_is_named(tmp_path, read_all):
    """Two older manifests list a content with two sizes (the first right): the second is named too."""
    src = make_tree(tmp_path / "src" / "Data", {**FILES, "top.txt": b"top v1"})
    set_path = tmp_path / "set"
    backup_path(set_path, [src])
    (src / "extra.txt").write_bytes(b"extra")
    backup_path(set_path, [src])
    (src / "top.txt").write_bytes(b"top v2")
    (src / "d1" / "n2.txt").write_bytes(b"changed")
    backup_path(set_path, [src])
    middle = _manifests(set_path)[1]
    _resize(middle, "d1/n2.txt", 5)
    r = verify_path(set_path, read_all=read_all)
    sid = middle.name.split(".")[0]
    assert any("d1/n2.txt" in what and sid in what for what, _ in r.damaged), r.damaged


def test_an_intact_set_is_ok(changed):
    set_path, cache = changed
    for read_all in (False, True):
        assert verify_path(set_path, read_all=read_all, cache=cache).ok
        assert verify_path(set_path, read_all=read_all).ok
