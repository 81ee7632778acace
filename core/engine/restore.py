"""Restore: any snapshot, any subset, to a folder or to where the files came from.

Every byte is checked against the manifest while it is written to a temporary
file next to its destination; only a file whose hash matches is renamed into
place, so damaged content is never restored silently. Manifest paths that
could write outside the target (``..``, absolute paths, drive letters) are
refused before anything is written, and nothing is written through a symlink.
"""

from __future__ import annotations

import hashlib
import itertools
import ntpath
import os
import secrets
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from core.engine.fs import DEFAULT_FILE_MODE, WORKERS
from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest, sort_key
from core.engine.progress import (
    CancelToken,
    Progress,
    ProgressCallback,
    RunWarning,
    TextEnum,
    WarningCode,
    no_progress,
)
from core.engine.repo import BackupSet
from core.errors import DamagedSet, PlugbackError, UnsafePath, UsageError

_RUN = secrets.token_hex(4)
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_COUNTER = itertools.count()
# Restored files and folders never get setuid/setgid (a manifest is untrusted input, and
# a restored program must not run as whoever owned it); folders keep the sticky bit.
_FILE_BITS = 0o777
_FOLDER_BITS = 0o1777


class OnConflict(TextEnum):
    """What to do when a file to restore is already there."""

    SKIP = "skip"
    OVERWRITE = "overwrite"
    KEEP_BOTH = "keep-both"   # restore next to it, as "name (restored).ext"


CONFLICTS = tuple(c.value for c in OnConflict)   # the spellings the CLI and the agent accept


class RestoreOutcome(TextEnum):
    """What happened to one file (or symlink) of a restore."""

    RESTORED = "restored"          # nothing was in the way
    OVERWRITTEN = "overwritten"    # replaced what was there
    KEPT_BOTH = "kept_both"        # written next to what was there, under a "(restored)" name
    SKIPPED = "skipped"            # something was there and stays
    DAMAGED = "damaged"            # not written: its content on the drive is missing or wrong


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore and how: ``paths`` empty = everything in ``snapshot``."""

    snapshot: str | None = "latest"
    paths: Sequence[str] = ()
    on_conflict: OnConflict = OnConflict.SKIP
    workers: int = WORKERS
    progress: ProgressCallback = no_progress
    cancel: CancelToken = field(default_factory=CancelToken)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(self.paths))
        try:
            object.__setattr__(self, "on_conflict", OnConflict(self.on_conflict))
        except ValueError:
            raise UsageError(f"Unknown conflict choice '{self.on_conflict}'; use skip, overwrite or "
                             "keep-both.") from None


@dataclass
class RestoreResult:
    """What a restore did; ``damaged`` files were not written.

    ``files_restored`` counts every file written (also the overwritten and the
    kept-both ones, which are counted again on their own).
    """

    snapshot_id: str
    target: str
    files_restored: int = 0
    bytes_restored: int = 0
    overwritten: int = 0
    kept_both: int = 0
    skipped: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[RunWarning] = field(default_factory=list)

    def count(self, e: Entry, outcome: RestoreOutcome, detail: str = "") -> None:
        """Add one file's outcome."""
        if outcome is RestoreOutcome.SKIPPED:
            self.skipped += 1
        elif outcome is RestoreOutcome.DAMAGED:
            self.damaged.append((e.path, detail))
        elif e.type == FILE:
            self.files_restored += 1
            self.bytes_restored += e.size
            self.overwritten += outcome is RestoreOutcome.OVERWRITTEN
            self.kept_both += outcome is RestoreOutcome.KEPT_BOTH

    def to_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "target": self.target,
                "files_restored": self.files_restored, "bytes_restored": self.bytes_restored,
                "overwritten": self.overwritten, "kept_both": self.kept_both,
                "skipped": self.skipped, "warnings": [w.to_dict() for w in self.warnings],
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged]}


def check_safe(path: str) -> None:
    """Refuse a manifest path that is not a plain relative path below the target."""
    parts = path.split("/")
    bad = (not path or path.startswith("/") or "\\" in path or "\x00" in path
           or any(p in ("", ".", "..") for p in parts)
           or ntpath.splitdrive(path)[0] or ":" in parts[0]
           or (os.sep != "/" and os.sep in path) or (os.altsep and os.altsep in path))
    if bad:
        raise UnsafePath(path=path)


def select(entries: list[Entry], paths) -> list[Entry]:
    """The entries at or below any of ``paths`` (all entries when ``paths`` is empty)."""
    wanted = [p.strip("/") for p in paths if p.strip("/")]
    if not wanted:
        return list(entries)
    out = [e for e in entries if any(e.path == w or e.path.startswith(w + "/") for w in wanted)]
    missing = [w for w in wanted if not any(e.path == w or e.path.startswith(w + "/") for e in entries)]
    if missing:
        raise UsageError(f"Not in this snapshot: {', '.join(missing)}. 'plugback ls SET SNAPSHOT' shows "
                         "what it holds (paths start with the source folder's name).")
    return out


def _within(path: str, root: str) -> bool:
    rp, rr = os.path.realpath(path), os.path.realpath(root)
    return rp == rr or rp.startswith(rr.rstrip(os.sep) + os.sep)


def _kept_name(dest: str) -> str:
    folder, name = os.path.split(dest)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 1
    while True:
        suffix = " (restored)" if n == 1 else f" (restored {n})"
        candidate = os.path.join(folder, f"{stem}{suffix}{'.' + ext if ext else ''}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def restore(bset: BackupSet, target, options: RestoreOptions | None = None) -> RestoreResult:
    """Restore ``options.paths`` (all when empty) of a snapshot in ``bset`` into ``target``/<source name>/...

    ``target`` may also map each top-level folder to the folder it is restored as
    (``{"Documents": "/home/me/Documents"}``: how the agent restores to "the original
    place", this computer's configured sources); a top folder missing from it is refused.
    ``target=None`` restores to the original source folders recorded in the snapshot.
    Order: folders, then files (in parallel), then symlinks, then folder times.
    """
    options = options or RestoreOptions()
    sid = bset.resolve_id(options.snapshot)
    m = bset.manifest(sid)
    chosen = _chosen(m, options.paths)
    roots = _roots(m, target, {e.path.partition("/")[0] for e in chosen})
    result = RestoreResult(sid, "(original folders)" if target is None else
                           ", ".join(roots.values()) if isinstance(target, Mapping) else str(target))
    run = _Restorer(bset, roots, options, result)
    dirs = [e for e in chosen if e.type == DIR]
    for root in roots.values():
        os.makedirs(root, exist_ok=True)
    for e in dirs:
        root, dest = run.dest_of(e)
        run.folders.ensure(dest, root)
    run.files([e for e in chosen if e.type == FILE])
    for e in chosen:
        if e.type == LINK:
            run.link(e)
    run.folder_times(dirs)
    return result


def _chosen(m: Manifest, paths) -> list[Entry]:
    """The entries to restore, each proven safe to write below its root."""
    chosen = select(m.entries, paths)
    for e in chosen:
        check_safe(e.path)
    by_path = m.by_path()
    for e in chosen:   # a path below a symlink or a file would be written through it
        parent = e.path.rpartition("/")[0]
        while parent:
            pe = by_path.get(parent)
            if pe is not None and pe.type != DIR:
                raise UnsafePath(path=e.path)
            parent = parent.rpartition("/")[0]
    return chosen


class _Restorer:
    """One restore's places and counts: where each entry goes, and writing it there."""

    def __init__(self, bset: BackupSet, roots: dict[str, str], options: RestoreOptions, result: RestoreResult):
        self.bset, self.roots, self.options, self.result = bset, roots, options, result
        self.folders = _Folders()

    def dest_of(self, e: Entry) -> tuple[str, str]:
        """(the root it goes below, its destination path)."""
        top, _, rest = e.path.partition("/")
        root = self.roots[top]
        return root, os.path.join(root, *rest.split("/")) if rest else root

    def files(self, files: list[Entry]) -> None:
        total = sum(e.size for e in files)
        done = {"files": 0, "bytes": 0}
        counting = threading.Lock()
        progress, cancel = self.options.progress, self.options.cancel

        def one(e: Entry):
            cancel.check()
            root, dest = self.dest_of(e)
            outcome = _restore_file(self.bset, e, root, dest, self.options.on_conflict, self.folders)
            with counting:
                done["files"] += 1
                done["bytes"] += e.size
                report = Progress("restore", done["files"], len(files), done["bytes"], total, e.path)
            progress(report)
            return e, outcome

        with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
            for e, (outcome, detail) in pool.map(one, files):
                self.result.count(e, outcome, detail)

    def link(self, e: Entry) -> None:
        root, dest = self.dest_of(e)
        self.folders.ensure(os.path.dirname(dest), root)
        dest, outcome = _make_room(dest, self.options.on_conflict)
        if outcome is RestoreOutcome.SKIPPED:
            self.result.count(e, outcome)
            return
        if outcome is RestoreOutcome.DAMAGED:
            self.result.warnings.append(RunWarning(WarningCode.SYMLINK_NOT_RESTORED, e.path,
                                                   "a folder is in the way of this symlink; skipped"))
            return
        try:
            if outcome is RestoreOutcome.OVERWRITTEN:
                os.unlink(dest)
            os.symlink(e.target, dest)
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        except (OSError, NotImplementedError) as err:
            self.result.warnings.append(RunWarning(WarningCode.SYMLINK_NOT_RESTORED, e.path,
                                                   f"symlink could not be made ({err})"))

    def folder_times(self, dirs: list[Entry]) -> None:
        """Folder modes and times last, deepest first: writing into a folder changes its mtime."""
        for e in sorted(dirs, key=lambda d: sort_key(d.path), reverse=True):
            _, dest = self.dest_of(e)
            try:
                os.chmod(dest, e.mode & _FOLDER_BITS or 0o755)
                os.utime(dest, ns=(e.mtime_ns, e.mtime_ns))
            except OSError:
                pass


def _make_room(dest: str, on_conflict: OnConflict) -> tuple[str, RestoreOutcome]:
    """Where to write, and how that ends, given what is at ``dest`` now.

    DAMAGED here means a real folder is in the way (nothing is written).
    """
    if not os.path.lexists(dest):
        return dest, RestoreOutcome.RESTORED
    if on_conflict is OnConflict.SKIP:
        return dest, RestoreOutcome.SKIPPED
    if on_conflict is OnConflict.KEEP_BOTH:
        return _kept_name(dest), RestoreOutcome.KEPT_BOTH
    if os.path.isdir(dest) and not os.path.islink(dest):
        return dest, RestoreOutcome.DAMAGED
    return dest, RestoreOutcome.OVERWRITTEN


def _roots(m, target, tops) -> dict[str, str]:
    """Where each top-level folder in ``tops`` goes: into ``target``, or (None) back to its source."""
    sources = {s["name"]: s["path"] for s in m.sources}
    if isinstance(target, Mapping):
        sources, target = dict(target), None   # the caller's places, never the recorded ones
    base = None if target is None else os.path.abspath(os.path.expanduser(str(target)))
    out = {}
    for top in tops:
        check_safe(top)
        if base is not None:
            out[top] = os.path.join(base, top)
            continue
        path = sources.get(top)
        if path is None or not os.path.isabs(path):
            raise UnsafePath(path=top if path is None else path)   # no recorded original place
        out[top] = path
    return out


class _Folders:
    """Makes restore folders, checking each once (not once per file) that it is a real folder
    inside its root: ``realpath`` per file was a quarter of a restore's time.

    Folders are made one level at a time below the root, each existing one checked
    with ``lstat`` first: a symlink in the target is never walked through, not even
    to make a folder (``makedirs`` would, before any containment check).
    """

    def __init__(self):
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, dest: str, root: str) -> None:
        if dest in self._checked:
            return
        rel = os.path.relpath(dest, root)
        folder = root
        for name in ([] if rel == "." else rel.split(os.sep)):
            folder = os.path.join(folder, name)
            if folder not in self._checked:
                _make_real_folder(folder)
        if not _within(dest, root):
            raise UnsafePath(path=dest)
        with self._lock:
            self._checked.add(dest)


def _make_real_folder(path: str) -> None:
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        pass   # there already (or made by another worker a moment ago): check what it is
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise UsageError(f"{path} is in the way (a file or a symlink where a folder belongs). Move it "
                         "away, or restore to another folder.")


def _restore_file(bset: BackupSet, e: Entry, root: str, dest: str, on_conflict: OnConflict,
                  folders: _Folders) -> tuple[RestoreOutcome, str]:
    """Write one file through a temporary name, renamed into place only when its hash matches."""
    folder = os.path.dirname(dest)
    folders.ensure(folder, root)
    dest, outcome = _make_room(dest, on_conflict)
    if outcome is RestoreOutcome.SKIPPED:
        return outcome, ""
    if outcome is RestoreOutcome.DAMAGED:
        return outcome, "a folder is in the way; not restored"
    paths = bset.content_paths(e)
    if not paths:
        return RestoreOutcome.DAMAGED, "its content is missing from the drive; not restored"
    tmp = os.path.join(folder, f".plugback-restore-{_RUN}-{next(_COUNTER)}.part")
    try:
        if not _write_checked(bset, e, paths, tmp):
            os.unlink(tmp)
            return RestoreOutcome.DAMAGED, "its content on the drive does not match its checksum; not restored"
        os.replace(tmp, dest)
    except DamagedSet as err:
        _drop(tmp)
        return RestoreOutcome.DAMAGED, f"{err}; not restored"
    except PlugbackError:
        _drop(tmp)
        raise
    except OSError as err:
        _drop(tmp)
        if os.path.exists(paths[0]):
            raise UsageError(f"Cannot write {dest}: {err.strerror or err}. Check the restore folder.") from None
        return RestoreOutcome.DAMAGED, f"it cannot be read from the drive ({err.strerror or err}); not restored"
    return outcome, ""


def _write_checked(bset: BackupSet, e: Entry, paths, tmp: str) -> bool:
    """Write ``e``'s content to ``tmp`` (a new file); whether size and SHA-256 match the manifest."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o666)
    try:
        for block in bset.read_content(e, paths):
            digest.update(block)
            size += len(block)
            while block:
                block = block[os.write(fd, block):]
        ok = size == e.size and digest.hexdigest() == e.sha256
        if ok:
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            mode = e.mode & _FILE_BITS
            if mode != DEFAULT_FILE_MODE and hasattr(os, "fchmod"):
                os.fchmod(fd, mode or 0o644)
    finally:
        os.close(fd)
    return ok


def _drop(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
