"""Small source files opened ahead of their copy (core/engine/source_ahead.py): the copy reads the
descriptor the read-ahead opened; a source swapped for a symlink after the scan is never followed,
whether the swap came before the file was opened ahead or after; every descriptor opened ahead
is closed, taken by a copy or not; and a plain set's read-back, which reads a copy to the size
its ``fstat`` found, still tells a copy that grew or shrank (tests/core/engine/test_copy_path.py
swaps copies after the commit)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import sys

import pytest

from core.engine import source_ahead, store
from core.engine.fs import READS_AHEAD
from core.engine.progress import WarningCode
from core.engine.scan import ScanEntry
from tests.support.engine import backup_path, verify_path
from tests.support.trees import make_tree, read_tree

posix = pytest.mark.skipif(sys.platform == "win32", reason="O_NOFOLLOW and /proc/self/fd")
SECRET = b"a secret of 19 byte"   # (the same size as the file it stands in for)


def _open_fds() -> set[str]:
    """The files this process holds open (Linux: /proc/self/fd)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


@posix
@pytest.mark.parametrize("reader", ["read_source", "read_whole"])
def test_the_copy_never_opens_a_source_through_a_symlink(tmp_path, reader):
    """The old code opened a source without O_NOFOLLOW: a symlink swapped in after the scan (to a
    file of the same size and time) was read as the file's content."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    link = tmp_path / "was-a-file"
    link.symlink_to(secret)
    mtime = os.stat(secret).st_mtime_ns
    with pytest.raises(OSError) as err:
        if reader == "read_source":
            store.read_source(str(link), io.BytesIO(), hashlib.sha256(), len(SECRET), mtime)
        else:
            store.read_whole(str(link), len(SECRET), mtime)
    assert err.value.errno in (errno.ELOOP, getattr(errno, "EMLINK", -1))


@posix
@pytest.mark.parametrize("when", ["before its read-ahead", "after its read-ahead"])
def test_a_source_swapped_for_a_symlink_after_the_scan_is_never_followed(tmp_path, monkeypatch, when):
    """Swapped before the file was opened ahead: the copy's own open refuses the symlink (a
    warning; the old code stored the secret's bytes as the file's). Swapped after: the copy reads
    the file it opened ahead, the one the scan saw."""
    spec = {f"f{i:03}.txt": b"content %03d 19 byte" % i for i in range(100)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    victim = src / "f050.txt"
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    st = os.stat(victim)
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))   # (the scan's size and time: only the type differs)

    def swap():
        if not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(secret)

    name = "prefetch_source" if when == "before its read-ahead" else "read_source"
    real = getattr(store, name)

    def swapping(path, *args, **kwargs):
        if path == str(victim):
            swap()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store, name, swapping)
    r = backup_path(tmp_path / "set", [src.parent / "Data"])
    copy = tmp_path / "set" / "Latest" / "Data" / "f050.txt"
    assert not (copy.exists() and copy.read_bytes() == SECRET), "the symlink was followed"
    if when == "before its read-ahead":
        assert [(w.code, w.path) for w in r.warnings] == [(WarningCode.UNREADABLE, str(victim))]
        assert "symbolic link" in r.warnings[0].message and not copy.exists()
    elif READS_AHEAD:
        assert r.status == "ok" and copy.read_bytes() == spec["f050.txt"]   # (the file opened ahead)
    assert verify_path(tmp_path / "set", read_all=True).ok


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd; the read-ahead is Linux's")
def test_descriptors_opened_ahead_are_closed_taken_or_not(tmp_path):
    """The copy takes some (and closes them); the rest close as the pass passes their entry, and
    close() closes what a pass that stopped early left."""
    files = [tmp_path / f"f{i:03}.txt" for i in range(200)]
    for p in files:
        p.write_bytes(b"x" * 10)
    items = [(ScanEntry(p.name, str(p), "f", 10, 0, 0o644, 0, 0), None) for p in files]
    before = _open_fds()
    ahead = source_ahead.OpenAhead(lambda item: item[0].abspath)
    taken = []
    for i, (se, _) in enumerate(ahead.scanning(items)):
        held = _open_fds() - before - {str(files[j]) for j in range(0, i, 3)}   # (less those taken)
        assert str(files[i]) in held and len(held) <= source_ahead.PREFETCH + 1
        if i % 3 == 0:
            fd = ahead.take(se.abspath)
            assert os.read(fd, 100) == b"x" * 10   # (the descriptor the copy reads)
            taken.append(fd)
    assert _open_fds() - before == {str(files[i]) for i in range(0, 200, 3)}   # only those taken
    for fd in taken:
        os.close(fd)
    stopped = source_ahead.OpenAhead(lambda item: item[0].abspath)
    for i, _ in enumerate(stopped.scanning(items)):
        if i == 10:
            break
    assert len(_open_fds() - before) > 10   # (the look-ahead's, still open)
    stopped.close()
    assert _open_fds() - before == set()


@pytest.mark.skipif(not READS_AHEAD, reason="the one-thread read-back with reads started ahead is Linux's")
@pytest.mark.parametrize("change", ["grown", "shrunk"])
def test_read_back_finds_a_copy_that_grew_or_shrank_after_the_commit(tmp_path, monkeypatch, change):
    """The read-back reads a copy to its fstat size, never past it: a copy that grew (its first
    bytes the right ones) must be told by that size, and is copied again."""
    from core.engine import backup as backup_mod

    spec = {f"f{i:03}.txt": b"content %d" % i for i in range(150)}
    src = make_tree(tmp_path / "src" / "Data", spec)
    commit = backup_mod._Run._commit

    def commit_then_change(run, header):
        commit(run, header)
        copy = run.layout.latest / "Data" / "f100.txt"
        copy.write_bytes(spec["f100.txt"] + b" and more" if change == "grown" else spec["f100.txt"][:-1])

    monkeypatch.setattr(backup_mod._Run, "_commit", commit_then_change)
    r = backup_path(tmp_path / "set", [src])
    assert r.status == "ok" and not r.damaged, r.damaged   # (copied again: the repair read it back clean)
    assert read_tree(tmp_path / "set" / "Latest" / "Data") == read_tree(src)
    monkeypatch.undo()
    assert verify_path(tmp_path / "set", read_all=True).ok


@posix
def test_the_seal_workers_and_the_remote_reader_never_open_a_source_through_a_symlink(tmp_path):
    """The other two readers of source files (an encrypted set's seal worker processes, a remote
    set's read-ahead) refuse a symlink swapped in for a file as the plain copy does; the old code
    opened the link's target (its bytes stored under the file's name)."""
    from core.engine.remote.ahead import read_content
    from core.engine.sealpool import Worker

    (tmp_path / "secret").write_bytes(SECRET)
    link = tmp_path / "notes.txt"
    link.symlink_to(tmp_path / "secret")
    assert Worker._open(str(link)) is None   # (the run reads it itself, and refuses it: a warning)
    with pytest.raises(OSError) as refused:
        read_content(str(link), len(SECRET), lambda _: None)
    assert refused.value.errno in (errno.ELOOP, getattr(errno, "EMLINK", -1))
