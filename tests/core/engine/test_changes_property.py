"""Issue #12: a backup driven by a change hint gives exactly the snapshot a full scan gives.

Random sequences of real file-system operations (create, edit, append, rename and move of files
and folders, delete, chmod, utime, symlink create and retarget, a file replacing a folder and
back) on a real tree; after each round the hint is built from the operations' events by the
rules in ``core/engine/changes.py`` (what the agent does), one set is backed up with the hint and
another with a full scan, and the two newest manifests must be equal entry by entry (and in
their totals).

Three times: with the scan's inodes and ctimes (POSIX), without (as on Windows, where the
engine's checks of listed folders have only mtimes), and with both sets given a cache folder
("spliced": every parent is one this computer wrote, so the journal set's runs splice its lines
and ``Latest.sha256``, core/engine/splice.py, and the full-scan set merges with the proven local
copy), there with tiny text blocks so that runs of lines cross block boundaries; then the two
sets' ``Latest.sha256`` must be equal too (most examples splice; where the operations touched
every folder nothing is left to splice, so test_splice.py checks that runs do). CI runs
PLUGBACK_CHANGES_EXAMPLES examples of each (default 20, about 3 s each on a quiet machine); raise it for a long run:
``PLUGBACK_CHANGES_EXAMPLES=1000 pytest --timeout 0 tests/core/engine/test_changes_property.py``
(about 0.13 s an example; the suite's 300 s per-test timeout would end a long run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.engine import manifest_io, pieces, sums, sums_base
from core.engine import scan as scan_mod
from core.engine.changes import ChangeHint
from tests.support.engine import backup_path, open_set

EXAMPLES = int(os.environ.get("PLUGBACK_CHANGES_EXAMPLES", "20"))
EXCLUDES = ("*.tmp", "skip/")
NAMES = ["a", "b", "c", "skip", "x.tmp", "Z", "a b", "é"]

ops = st.lists(st.tuples(st.sampled_from(["create", "edit", "append", "rename", "move", "delete", "chmod",
                                          "utime", "symlink", "mkdir", "replace", "swap"]),
                         st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(NAMES)),
               min_size=1, max_size=8)


class Agent:
    """The events the operations cause, turned into a hint by the rules of changes.py."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.dirs: set[str] = set()
        self.trees: set[str] = set()

    def event(self, p: Path, *, folder_in: bool = False) -> None:
        p = str(p)
        self.dirs.add(p if p == self.root else os.path.dirname(p))   # rules 1 and 2
        if folder_in:
            self.trees.add(p)                                          # rule 3

    def deleted_tree(self, p: Path) -> None:
        """inotify reports every path below a deleted folder, deepest first, then the folder."""
        for dirpath, dirnames, filenames in os.walk(p, topdown=False):
            for name in filenames + dirnames:
                self.event(Path(dirpath) / name)
        self.event(p)

    def hint(self, since: str) -> ChangeHint:
        hint = ChangeHint(since, frozenset(self.dirs), frozenset(self.trees))
        self.dirs, self.trees = set(), set()
        return hint


def _entries(root: Path) -> tuple[list[Path], list[Path]]:
    """(folders including the root, everything else), sorted."""
    folders, others = [root], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            (folders if not (Path(dirpath) / name).is_symlink() else others).append(Path(dirpath) / name)
        others += [Path(dirpath) / n for n in sorted(filenames)]
    return folders, others


def _free(folder: Path, name: str) -> Path:
    p, n = folder / name, 2
    while os.path.lexists(p):
        p, n = folder / f"{name}{n}", n + 1
    return p


def apply(op, root: Path, agent: Agent, clock: list[int]) -> None:
    """One operation on the real tree, reporting its events to ``agent``."""
    kind, i, j, name = op
    folders, others = _entries(root)
    files = [p for p in others if p.is_file() and not p.is_symlink()]
    folder = folders[i % len(folders)]
    clock[0] += 1
    data = (f"{kind}{clock[0]}" * (1 + j % 50)).encode()
    if kind == "create" or (kind in ("edit", "append") and not files):
        p = _free(folder, name)
        p.write_bytes(data)
        agent.event(p)
    elif kind == "edit":
        p = files[i % len(files)]
        p.write_bytes(data[: p.stat().st_size] if j % 2 else data)   # sometimes the same size
        agent.event(p)
    elif kind == "append":
        p = files[i % len(files)]
        with open(p, "ab") as f:
            f.write(data)
        agent.event(p)
    elif kind in ("rename", "move"):
        movable = folders[1:] + others
        if not movable:
            return
        p = movable[i % len(movable)]
        to = p.parent if kind == "rename" else folders[j % len(folders)]
        if to == p or p in to.parents:
            return
        q = _free(to, name)
        os.rename(p, q)
        agent.event(p)
        agent.event(q, folder_in=q.is_dir() and not q.is_symlink())
    elif kind == "delete":
        movable = folders[1:] + others
        if not movable:
            return
        p = movable[i % len(movable)]
        if p.is_dir() and not p.is_symlink():
            agent.deleted_tree(p)
            shutil.rmtree(p)
        else:
            p.unlink()
            agent.event(p)
    elif kind == "chmod":
        targets = folders + files
        p = targets[i % len(targets)]
        os.chmod(p, (0o700, 0o755, 0o750)[j % 3] if p.is_dir() else (0o600, 0o644, 0o755, 0o400)[j % 4])
        agent.event(p)
    elif kind == "utime":
        targets = folders + others
        p = targets[i % len(targets)]
        os.utime(p, ns=(j * 10**9, j * 10**9), follow_symlinks=False)
        agent.event(p)
    elif kind == "symlink":
        links = [p for p in others if p.is_symlink()]
        if links and j % 2:
            p = links[i % len(links)]      # retarget: remove and make again
            p.unlink()
            agent.event(p)
        else:
            p = _free(folder, name)
        os.symlink(f"../{name}{j}", p)
        agent.event(p)
    elif kind == "mkdir":
        p = _free(folder, name)
        p.mkdir()
        agent.event(p, folder_in=True)
        for n in range(j % 3):
            (p / f"f{n}").write_bytes(data)
            agent.event(p / f"f{n}")
    elif kind == "swap":   # another folder moved into a folder's place, keeping its time (as tar or rsync -a)
        if len(folders) < 3:
            return
        x, y = folders[1 + i % (len(folders) - 1)], folders[j % len(folders)]
        if y in (x, root) or x in y.parents or y in x.parents:
            return
        st = x.stat()
        agent.deleted_tree(x)
        shutil.rmtree(x)
        os.rename(y, x)
        agent.event(y)
        agent.event(x, folder_in=True)
        os.utime(x, ns=(st.st_atime_ns, st.st_mtime_ns))
        agent.event(x)
    elif kind == "replace":   # a file becomes a folder of the same name, or a folder a file
        targets = folders[1:] + files
        if not targets:
            return
        p = targets[i % len(targets)]
        if p.is_dir():
            agent.deleted_tree(p)
            shutil.rmtree(p)
            p.write_bytes(data)
            agent.event(p)
        else:
            p.unlink()
            agent.event(p)
            p.mkdir()
            (p / "inner").write_bytes(data)
            agent.event(p, folder_in=True)
            agent.event(p / "inner")


def newest_entries(set_path: Path) -> list[dict]:
    bset = open_set(set_path)
    return [e.to_dict() for e in bset.manifest(bset.newest_id()).entries]


def newest_totals(set_path: Path) -> dict:
    bset = open_set(set_path)
    return bset.header(bset.newest_id()).totals


def _start_tree(root: Path) -> None:
    for d in ("", "one", "one/deep", "two", "skip", "empty"):
        (root / d).mkdir(exist_ok=True)
    for f in ("top.txt", "one/a.txt", "one/deep/b.txt", "two/c.txt", "skip/s.txt", "two/x.tmp"):
        (root / f).write_bytes(f.encode() * 3)
    os.symlink("one/a.txt", root / "ln")


def _without_inodes(path, abspath, st, kind, target=None):
    """A scan record as on Windows: no inode, no ctime (change detection and the engine's
    checks of listed folders have only size and mtime)."""
    e = real_entry(path, abspath, st, kind, target)
    e.ino = e.ctime_ns = 0
    return e


real_entry = scan_mod._entry


def _tiny_blocks():
    """Text blocks of a few lines: runs of spliced lines cross their boundaries."""
    return [mock.patch.object(manifest_io, "TEXT_BLOCK", 200), mock.patch.object(sums, "READ_BLOCK", 100),
            mock.patch.object(pieces, "PIECE_TEXT", 300), mock.patch.object(sums_base, "STRIDE", 3)]


@pytest.mark.parametrize("inodes, spliced", [(True, False), (False, False), (True, True)],
                         ids=["posix", "no-inodes", "spliced"])
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rounds=st.lists(ops, min_size=1, max_size=3))
def test_journal_snapshot_equals_full_scan(inodes, spliced, rounds):
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as patches:
        patches.enter_context(mock.patch.object(scan_mod, "_entry", real_entry if inodes else _without_inodes))
        for patch in _tiny_blocks() if spliced else ():
            patches.enter_context(patch)
        base = Path(tmp)
        src, journal_set, full_set = base / "src", base / "journal", base / "full"
        opts = {"excludes": EXCLUDES, "workers": 1, "verify": False, "cache": base / "cache" if spliced else None}
        src.mkdir()
        _start_tree(src)
        agent = Agent(src)
        first = backup_path(journal_set, [src], **opts)
        backup_path(full_set, [src], **opts)
        since, clock = first.snapshot_id, [0]
        for round_ops in rounds:
            for op in round_ops:
                apply(op, src, agent, clock)
            hinted = backup_path(journal_set, [src], changes=agent.hint(since), **opts)
            full = backup_path(full_set, [src], **opts)
            assert hinted.scan == "journal" and full.scan == "full"
            assert newest_entries(journal_set) == newest_entries(full_set)
            assert newest_totals(journal_set) == newest_totals(full_set)
            assert (hinted.files_scanned, hinted.bytes_scanned) == (full.files_scanned, full.bytes_scanned)
            assert (journal_set / "Latest.sha256").read_bytes() == (full_set / "Latest.sha256").read_bytes()
            since = hinted.snapshot_id
