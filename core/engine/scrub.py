"""Rolling verification (issue #14): re-read one slice of a set's stored bytes at a time.

A *pass* re-reads everything a set stores, in a stable order, over several
calls of :func:`scrub_slice`, each stopping after a byte budget or when
cancelled and returning a :class:`Cursor` to start from next time:

1. ``objects``: every object in ``objects/``, by name (whole objects: parts
   together). Plain sets: its SHA-256 must be its name; encrypted sets: it must
   decrypt and authenticate, and its keyed hash must be its name. So an object
   is checked without any manifest. A chunk of a format-2 set is such an object;
   a chunk list (``<name>.chunks``) is an item of its own: it must decode, and
   each chunk it names must be there with its size (core/engine/chunks.py).
2. ``latest`` (plain sets): every file of the newest snapshot at its place in
   ``Latest/``, by path, against that manifest's size and SHA-256.
3. ``check``: the quick structural verify (core/engine/verify.py): every
   manifest read to its checked end, every content a snapshot names present
   with the right size. No content is read again; it is done in one go (metadata
   only) and starts over if cancelled.

The slice only reads (no lock, nothing written): a drive pulled mid-slice
loses nothing, and the cursor of the last item done is returned. Damage is
returned, never repaired here (core/engine/mend.py does that, under the
set's lock). Memory is flat: one ``objects/xx/`` folder's names and one
manifest batch at a time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from core.engine import chunks, safeio
from core.engine.fs import blocks, drop_cache, read_buffer
from core.engine.manifest import FILE, Entry, sort_key
from core.engine.pass_cursor import Cursor
from core.engine.progress import CancelToken, Progress, ProgressCallback, no_progress
from core.engine.repo import BackupSet
from core.errors import Cancelled, DamagedSet, PlugbackError

MAX_DAMAGE = 100      # a slice stops after this many damaged items (a dying drive): report them first


@dataclass(frozen=True)
class Damage:
    """One damaged item: where (``objects/ab/...``, ``Latest/...``, ``snapshots/...``), why, and what
    names its content: the object name, or the newest snapshot's entry for a ``Latest/`` copy."""

    where: str
    reason: str
    name: str | None = None
    entry: Entry | None = None
    snapshot: str | None = None


@dataclass
class SliceResult:
    """What one slice did: the cursor to go on from, bytes read, items checked, damage found."""

    cursor: Cursor
    bytes_read: int = 0
    items: int = 0
    damaged: list[Damage] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stopped: bool = False      # cancelled (or the drive went) before the budget was used

    @property
    def finished(self) -> bool:
        """The pass is complete: every stored byte was read since it began."""
        return self.cursor.done


class _Stop(Exception):
    """The slice is cancelled: leave the cursor at the last item finished."""


def stored_bytes(bset: BackupSet, cancel: CancelToken | None = None, boundary: Path | None = None) -> int | None:
    """How many bytes a pass reads: every object file plus (plain sets) the newest snapshot's files.

    One ``lstat`` per object (once per pass); None when cancelled meanwhile. The set's folders
    are proven free of symlinks first (from ``boundary`` down, as for :func:`scrub_slice`).
    """
    bset.layout.check_contained(boundary)
    total = 0
    for _name, path in bset.layout.iter_object_files():
        if cancel is not None and cancel.cancelled:
            return None
        try:
            total += os.lstat(path).st_size
        except OSError:
            continue
    newest = bset.newest_id()
    if newest and not bset.encrypted:
        try:
            total += int(bset.header(newest).totals.get("bytes", 0))
        except PlugbackError:
            pass
    return total


def scrub_slice(bset: BackupSet, cursor: Cursor, budget: int | None, *, cancel: CancelToken | None = None,
                progress: ProgressCallback = no_progress, boundary: Path | None = None,
                confirm: Callable[[], bool] | None = None, cache: Path | None = None) -> SliceResult:
    """Re-read the set from ``cursor`` on until ``budget`` bytes were read (None: to the pass's end)
    or ``cancel`` is set; the new cursor and what was found damaged.

    ``boundary`` (the drive's mount point) is where the proof that nothing in the set's
    folders is a symlink starts (core.engine.layout.SetLayout.check_contained).
    ``confirm`` is asked before a file that could not be read (or was missing) is called
    damaged: False means the drive is going away (a pull shows as read errors first), and
    the slice stops there instead. The caller decides how long to wait; the engine does not.
    ``cache``: this computer's engine folder (``VerifyOptions.cache``), so the ``check`` phase
    reads the newest manifest without decoding it when this computer proved writing it.
    """
    cancel = cancel or CancelToken()
    result = SliceResult(cursor)
    bset.layout.check_contained(boundary)
    reader = _Reader(bset, cancel, confirm, cache)
    phases = {"objects": _objects, "latest": _latest, "check": _check}
    try:
        while not result.cursor.done:
            phase = result.cursor.phase
            phases[phase](bset, reader, result, budget, progress)
            if _spent(result, budget):
                break
            result.cursor = result.cursor.next_phase()
    except _Stop:
        result.stopped = True
    return result


def _spent(result: SliceResult, budget: int | None) -> bool:
    return (budget is not None and result.bytes_read >= budget) or len(result.damaged) >= MAX_DAMAGE


def _objects(bset: BackupSet, reader: "_Reader", result: SliceResult, budget: int | None,
             progress: ProgressCallback) -> None:
    after = result.cursor.key
    for key, name, paths in _whole_objects(bset, after, reader.cancel):
        if _spent(result, budget):
            return
        if key == name:
            problem, size = reader.check_object(name, paths)
        else:
            problem, size = reader.check_chunk_list(name, paths[0])
        where = f"objects/{name[:2]}/{key}"
        _done(result, Cursor("objects", key), size, progress, where)
        if problem:
            result.damaged.append(Damage(where, problem, name=name))


def _whole_objects(bset: BackupSet, after: str, cancel: CancelToken | None = None) -> Iterator[tuple[str, str, list[Path]]]:
    """(key, name, its files in part order) of every object keyed after ``after``, by key. The key is
    the name; a chunk list (format 2) is an item of its own, keyed ``<name>.chunks``, right after
    the object of the same name (if any)."""
    layout = bset.layout
    cancel = cancel or CancelToken()
    current: str | None = None
    files: list[Path] = []
    lists: list[Path] = []
    for n, (name, path) in enumerate(layout.iter_object_files()):
        if not n % 1024 and cancel.cancelled:
            raise _Stop()
        if name != current:
            if current is not None:
                yield from _items(bset, current, files, lists, after)
            current, files, lists = name, [], []
        (lists if path.name.endswith(chunks.LIST_SUFFIX) else files).append(path)
    if current is not None:
        yield from _items(bset, current, files, lists, after)


def _items(bset: BackupSet, name: str, files: list[Path], lists: list[Path],
           after: str) -> Iterator[tuple[str, str, list[Path]]]:
    if files and name > after:
        yield name, name, _in_order(bset, name, files)
    key = name + chunks.LIST_SUFFIX
    if lists and key > after:
        yield key, name, lists


def _in_order(bset: BackupSet, name: str, files: list[Path]) -> list[Path]:
    """An object's files: the whole file, or its parts ``.001``... in order (sorted names put ``.1000``
    before ``.101``); a gap in the parts is left for the reader to find (a missing part)."""
    whole = bset.layout.object(name)
    if whole in files:
        return [whole]
    return [bset.layout.object_part(name, i) for i in range(1, len(files) + 1)]


def _latest(bset: BackupSet, reader: "_Reader", result: SliceResult, budget: int | None,
            progress: ProgressCallback) -> None:
    sid = bset.newest_id()
    if bset.encrypted or sid is None:
        return
    if bset.layout.journal.exists():
        result.notices.append("A backup was interrupted: Latest/ is checked after the next backup finishes it.")
        return
    after = sort_key(result.cursor.key) if result.cursor.key else None
    try:
        with bset.open_manifest(sid) as entries:
            for n, e in enumerate(entries):
                if not n % 1024 and reader.cancel.cancelled:
                    raise _Stop()    # also while skipping what earlier slices read (a big manifest)
                if e.type != FILE or (after is not None and sort_key(e.path) <= after):
                    continue
                if _spent(result, budget):
                    return
                problem, size = reader.check_latest(e)
                _done(result, Cursor("latest", e.path), size, progress, f"Latest/{e.mirror_path}")
                if problem:
                    result.damaged.append(Damage(f"Latest/{e.mirror_path}", problem, entry=e, snapshot=sid))
    except DamagedSet:
        return   # the newest manifest itself: the check phase names it (once)


def _check(bset: BackupSet, reader: "_Reader", result: SliceResult, budget: int | None,
           progress: ProgressCallback) -> None:
    from core.engine.verify import VerifyOptions, verify

    def watch(p: Progress) -> None:
        progress(Progress("check", p.files_done, p.files_total, result.bytes_read, 0, p.current))

    try:
        found = verify(bset, VerifyOptions(read_all=False, progress=watch, cancel=_Watch(reader.cancel),
                                           cache=reader.cache))
    except Cancelled:
        raise _Stop() from None
    result.notices.extend(found.notices)
    result.damaged.extend(Damage(what, why) for what, why in found.damaged)


def _done(result: SliceResult, cursor: Cursor, size: int, progress: ProgressCallback, current: str) -> None:
    result.cursor = cursor
    result.items += 1
    result.bytes_read += size
    progress(Progress("scrub", result.items, 0, result.bytes_read, 0, current))


class _Watch(CancelToken):
    """A token whose ``check`` asks another's ``cancelled`` (which may be computed, not only set)."""

    def __init__(self, outer: CancelToken):
        super().__init__()
        self.outer = outer

    def check(self) -> None:
        if self.outer.cancelled:
            raise Cancelled()


class _Reader:
    """Reads stored copies from the drive (page cache dropped), a block at a time, watching ``cancel``."""

    def __init__(self, bset: BackupSet, cancel: CancelToken, confirm: Callable[[], bool] | None = None,
                 cache: Path | None = None):
        self.bset = bset
        self.cancel = cancel
        self.confirm = confirm
        self.cache = cache   # (for the check phase's verify)

    def _gone(self) -> bool:
        """The slice must stop rather than call anything damaged: cancelled, or the set is gone."""
        return self.cancel.cancelled or not os.path.isfile(self.bset.layout.meta)

    def _blocks(self, paths: list[Path]) -> Iterator[memoryview]:
        buf = read_buffer()
        for p in paths:
            fd = safeio.open_regular(p, error=_damaged, root=self.bset.root)
            try:
                drop_cache(fd)
                for block in blocks(fd, buf):
                    if self.cancel.cancelled:
                        raise _Stop()
                    yield block
            finally:
                os.close(fd)

    def _read(self, blocks, hasher) -> tuple[str | None, int]:
        """Feed ``blocks`` to ``hasher``: (a reason it failed, or None; bytes read)."""
        size = 0
        try:
            for block in blocks:
                hasher.update(block)
                size += len(block)
                if self.cancel.cancelled:
                    raise _Stop()
        except FileNotFoundError:
            problem, unreadable = "it is missing from the drive", True
        except PlugbackError as err:   # damaged encrypted data, a symlink or FIFO in its place...
            problem, unreadable = err.message, False
        except OSError as err:
            problem, unreadable = f"it cannot be read ({err.strerror or err})", True
        else:
            return None, size
        finally:
            blocks.close()   # the files are closed now, not when the generator is collected
        if self._gone() or (unreadable and self.confirm is not None and not self.confirm()) or self._gone():
            raise _Stop()
        return problem, size

    def check_object(self, name: str, paths: list[Path]) -> tuple[str | None, int]:
        """Read the object ``name`` whole: (what is wrong with it or None, bytes read)."""
        bset = self.bset
        if bset.keys is None:
            hasher = hashlib.sha256()
            problem, size = self._read(self._blocks(paths), hasher)
            if problem is None and hasher.hexdigest() != name:
                problem = "its content does not match its name (changed or damaged on the drive)"
            return problem, size
        keyed = bset.keys.object_hasher()
        stored = 0
        for p in paths:
            try:
                stored += os.lstat(p).st_size
            except OSError:
                pass
        entry = Entry(f"objects/{name}", FILE, obj=name, parts=len(paths) if len(paths) > 1 else 0)
        problem, _ = self._read(bset.read_content(entry, paths, drop_cache=True), keyed)
        if problem is None and keyed.hexdigest() != name:
            problem = "its content does not match its name (changed or damaged on the drive)"
        return problem, stored

    def check_chunk_list(self, name: str, path: Path) -> tuple[str | None, int]:
        """A chunk list (format 2): valid, and each chunk it names in ``objects/`` with its size (or in
        its ``latest`` file, which the ``latest`` phase reads); the chunks' bytes are read as objects."""
        try:
            size = os.lstat(path).st_size
        except OSError:
            size = 0
        try:
            cl = chunks.load(self.bset, name, path)
        except FileNotFoundError:
            cl = None
        except PlugbackError as err:
            if self._gone():
                raise _Stop() from None
            return err.message, size
        if cl is None:
            return None, size   # gone meanwhile (a prune)
        return chunks.ChunkPaths(self.bset, cl).structure_problem(), size

    def check_latest(self, e: Entry) -> tuple[str | None, int]:
        """Read ``e``'s copy in ``Latest/`` (folders on the way proven real): (problem or None, bytes)."""
        layout = self.bset.layout
        try:
            paths = [layout.latest_part(e.mirror_path, i, writing=True) for i in range(1, e.parts + 1)] \
                if e.parts else [layout.latest_file(e.mirror_path, writing=True)]
        except PlugbackError as err:
            return err.message, 0
        hasher = hashlib.sha256()
        problem, size = self._read(self._blocks(paths), hasher)
        if problem is None and size != e.size:
            problem = f"it has {size} bytes instead of {e.size}"
        elif problem is None and hasher.hexdigest() != e.sha256:
            problem = "its content does not match its checksum (changed or damaged on the drive)"
        return problem, size


def _damaged(path: str = "", reason: str = "", **_) -> DamagedSet:
    return DamagedSet(what=f"{path}: {reason}")
