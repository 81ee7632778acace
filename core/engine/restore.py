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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.engine.fs import DEFAULT_FILE_MODE, WORKERS
from core.engine.manifest import DIR, FILE, LINK, Entry, sort_key
from core.engine.progress import CancelToken, Progress, RunWarning, no_progress
from core.engine.repo import BackupSet, Unlocker
from core.errors import DamagedSet, PlugbackError, UnsafePath, UsageError

CONFLICTS = ("skip", "overwrite", "keep-both")
_RUN = secrets.token_hex(4)
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_COUNTER = itertools.count()


@dataclass
class RestoreResult:
    """What a restore did; ``damaged`` files were not written."""

    snapshot_id: str
    target: str
    files_restored: int = 0
    bytes_restored: int = 0
    skipped: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[RunWarning] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "target": self.target,
                "files_restored": self.files_restored, "bytes_restored": self.bytes_restored,
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


def restore(set_path, target=None, *, snapshot: str | None = "latest", paths=(), on_conflict: str = "skip",
            unlock: Unlocker | None = None, progress=None, cancel: CancelToken | None = None,
            workers: int = WORKERS) -> RestoreResult:
    """Restore ``paths`` (all when empty) of ``snapshot`` into ``target``/<source name>/...

    ``target=None`` restores to the original source folders recorded in the snapshot.
    """
    if on_conflict not in CONFLICTS:
        raise UsageError(f"Unknown conflict choice '{on_conflict}'; use skip, overwrite or keep-both.")
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    bset = BackupSet.open(Path(set_path), unlock)
    sid = bset.resolve_id(snapshot)
    m = bset.manifest(sid)
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
    roots = _roots(m, target, {e.path.partition("/")[0] for e in chosen})
    result = RestoreResult(sid, str(target) if target is not None else "(original folders)")

    def dest_of(e: Entry) -> tuple[str, str]:
        top, _, rest = e.path.partition("/")
        root = roots[top]
        return root, os.path.join(root, *rest.split("/")) if rest else root

    for root in roots.values():
        os.makedirs(root, exist_ok=True)
    dirs = [e for e in chosen if e.type == DIR]
    files = [e for e in chosen if e.type == FILE]
    links = [e for e in chosen if e.type == LINK]
    folders = _Folders()
    for e in dirs:
        root, dest = dest_of(e)
        folders.ensure(dest, root)
    total = sum(e.size for e in files)
    done = {"files": 0, "bytes": 0}
    counting = threading.Lock()

    def one(e: Entry):
        cancel.check()
        root, dest = dest_of(e)
        outcome = _restore_file(bset, e, root, dest, on_conflict, folders)
        with counting:
            done["files"] += 1
            done["bytes"] += e.size
            report = Progress("restore", done["files"], len(files), done["bytes"], total, e.path)
        progress(report)
        return e, outcome

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for e, outcome in pool.map(one, files):
            kind, detail = outcome
            if kind == "ok":
                result.files_restored += 1
                result.bytes_restored += e.size
                result.restored.append(e.path)
            elif kind == "skipped":
                result.skipped += 1
            else:
                result.damaged.append((e.path, detail))
    for e in links:
        root, dest = dest_of(e)
        folders.ensure(os.path.dirname(dest), root)
        if os.path.lexists(dest):
            if on_conflict == "skip":
                result.skipped += 1
                continue
            if on_conflict == "keep-both":
                dest = _kept_name(dest)
            elif os.path.isdir(dest) and not os.path.islink(dest):
                result.warnings.append(RunWarning(e.path, "a folder is in the way of this symlink; skipped"))
                continue
            else:
                os.unlink(dest)
        try:
            os.symlink(e.target, dest)
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        except (OSError, NotImplementedError) as err:
            result.warnings.append(RunWarning(e.path, f"symlink could not be made ({err})"))
    # Folder modes and times last, deepest first: writing into a folder changes its mtime.
    for e in sorted(dirs, key=lambda d: sort_key(d.path), reverse=True):
        _, dest = dest_of(e)
        try:
            os.chmod(dest, e.mode & 0o7777 or 0o755)
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns))
        except OSError:
            pass
    return result


def _roots(m, target, tops) -> dict[str, str]:
    """Where each top-level folder in ``tops`` goes: into ``target``, or (None) back to its source."""
    sources = {s["name"]: s["path"] for s in m.sources}
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
    inside its root: ``realpath`` per file was a quarter of a restore's time."""

    def __init__(self):
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, dest: str, root: str) -> None:
        if dest in self._checked:
            return
        if os.path.islink(dest) or (os.path.lexists(dest) and not os.path.isdir(dest)):
            raise UsageError(f"{dest} is in the way (a file or a symlink where a folder belongs). Move it "
                             "away, or restore to another folder.")
        os.makedirs(dest, exist_ok=True)
        if not _within(dest, root):
            raise UnsafePath(path=dest)
        with self._lock:
            self._checked.add(dest)


def _restore_file(bset: BackupSet, e: Entry, root: str, dest: str, on_conflict: str,
                  folders: _Folders) -> tuple[str, str]:
    folder = os.path.dirname(dest)
    folders.ensure(folder, root)
    if os.path.lexists(dest):
        if on_conflict == "skip":
            return "skipped", ""
        if on_conflict == "keep-both":
            dest = _kept_name(dest)
        elif os.path.isdir(dest) and not os.path.islink(dest):
            return "damaged", "a folder is in the way; not restored"
    paths = bset.content_paths(e)
    if not paths:
        return "damaged", "its content is missing from the drive; not restored"
    tmp = os.path.join(folder, f".plugback-restore-{_RUN}-{next(_COUNTER)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o666)
        try:
            for block in bset.read_content(e, paths):
                digest.update(block)
                size += len(block)
                while block:
                    block = block[os.write(fd, block):]
            if size == e.size and digest.hexdigest() == e.sha256:
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
                if e.mode & 0o7777 != DEFAULT_FILE_MODE and hasattr(os, "fchmod"):
                    os.fchmod(fd, e.mode & 0o7777 or 0o644)
        finally:
            os.close(fd)
        if size != e.size or digest.hexdigest() != e.sha256:
            os.unlink(tmp)
            return "damaged", "its content on the drive does not match its checksum; not restored"
        os.replace(tmp, dest)
    except DamagedSet as err:
        _drop(tmp)
        return "damaged", f"{err}; not restored"
    except PlugbackError:
        _drop(tmp)
        raise
    except OSError as err:
        _drop(tmp)
        if os.path.exists(paths[0]):
            raise UsageError(f"Cannot write {dest}: {err.strerror or err}. Check the restore folder.") from None
        return "damaged", f"it cannot be read from the drive ({err.strerror or err}); not restored"
    return "ok", ""


def _drop(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
