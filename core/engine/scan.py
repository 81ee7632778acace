"""Walking the sources: sorted, with gitignore-style excludes, symlinks recorded not followed."""

from __future__ import annotations

import operator
import os
import re
import stat
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from core.engine import winattrs
from core.engine.fs import long_path
from core.engine.manifest import DIR, FILE, LINK
from core.engine.prefetch import Prefetch
from core.engine.progress import RunWarning, WarningCode
from core.errors import SourceMissing, UsageError

if TYPE_CHECKING:
    import pathspec

# OS junk and caches nobody wants back. Users add their own; these always apply.
DEFAULT_EXCLUDES = (
    ".DS_Store", "._*", ".Spotlight-V100/", ".Trashes/", ".fseventsd/", ".TemporaryItems/",
    "Thumbs.db", "ehthumbs.db", "desktop.ini", "$RECYCLE.BIN/", "System Volume Information/",
    ".Trash-*/", "~$*", ".~lock.*#", "__pycache__/", ".cache/",
)


@dataclass
class Source:
    """A folder being backed up, and the top-level folder name it gets in the set."""

    path: str   # absolute
    name: str

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name}


def plan_sources(paths, previous: Sequence[dict] = ()) -> list[Source]:
    """Absolute sources with unique top-level names, keeping the names earlier snapshots used."""
    known = {d["path"]: d["name"] for d in previous}
    result: list[Source] = []
    taken = set()
    resolved = []
    for p in paths:
        ap = os.path.abspath(os.path.expanduser(str(p)))
        if not os.path.exists(ap):
            raise SourceMissing(path=ap)
        if not os.path.isdir(ap):
            raise UsageError(f"{ap} is a file, not a folder. Give the folder that contains it.")
        if ap in resolved:
            continue
        resolved.append(ap)
    for ap in resolved:
        if ap in known:
            taken.add(known[ap].casefold())
    for ap in resolved:
        name = known.get(ap)
        if name is None:
            # The top-level name is the set's own choice: one that any computer can read back
            # (a ':' or '\\' there would make the set unreadable on Windows: manifest.WINDOWS_PATHS).
            base = (os.path.basename(ap.rstrip(os.sep)) or "root").replace(":", "_").replace("\\", "_")
            name, n = base, 2
            while name.casefold() in taken:
                name = f"{base}-{n}"
                n += 1
            taken.add(name.casefold())
        result.append(Source(ap, name))
    return result


# DEFAULT_EXCLUDES as _one_regex joins pathspec's translation of them (tests/core/engine/test_scan.py
# holds the two equal): a run with no excludes of its own does not load pathspec (~25 modules, read
# from the disk on a cold start).
DEFAULT_REGEX = "^(?:.+/)?(?:" + "|".join([
    r"(?:\.DS_Store(?:(?:/)|$))",
    r"(?:\._[^/]*(?:(?:/)|$))",
    r"(?:\.Spotlight\-V100(?:/))",
    r"(?:\.Trashes(?:/))",
    r"(?:\.fseventsd(?:/))",
    r"(?:\.TemporaryItems(?:/))",
    r"(?:Thumbs\.db(?:(?:/)|$))",
    r"(?:ehthumbs\.db(?:(?:/)|$))",
    r"(?:desktop\.ini(?:(?:/)|$))",
    r"(?:\$RECYCLE\.BIN(?:/))",
    r"(?:System\ Volume\ Information(?:/))",
    r"(?:\.Trash\-[^/]*(?:/))",
    r"(?:\~\$[^/]*(?:(?:/)|$))",
    r"(?:\.\~lock\.[^/]*\#(?:(?:/)|$))",
    r"(?:__pycache__(?:/))",
    r"(?:\.cache(?:/))",
]) + ")"


class Excluder:
    """gitignore-style patterns, matched against paths relative to each source folder."""

    def __init__(self, patterns=(), defaults: bool = True, skip_dirs=()):
        own = [p for p in patterns if p.strip()]
        self.spec: pathspec.GitIgnoreSpec | None = None
        # The built-in patterns alone each match one name (one path component): a scan that never
        # enters an excluded folder can match the name alone (name_match), a shorter walk for the regex.
        self.name_match: Callable[[str], object] | None = None
        if defaults and not own:
            self._any: re.Pattern | None = re.compile(DEFAULT_REGEX)
            self.name_match = self._any.match
        else:
            import pathspec

            try:
                self.spec = pathspec.GitIgnoreSpec.from_lines(list(DEFAULT_EXCLUDES if defaults else ()) + own)
            except Exception as err:  # noqa: BLE001 - pathspec raises several types for a malformed pattern
                raise UsageError(f"An exclude pattern is not valid ({err}). Use gitignore-style patterns "
                                 "such as '*.tmp', 'node_modules/' or '/Photos/raw'.") from None
            self._any = _one_regex(self.spec)
        # By (device, inode), not by path: a realpath per folder was a tenth of a no-change run.
        self.skip_dirs = set()
        for d in skip_dirs:
            try:
                st = os.stat(d)
            except OSError:
                continue   # not there (yet): nothing to skip
            self.skip_dirs.add((st.st_dev, st.st_ino))

    def excluded(self, rel: str, is_dir: bool) -> bool:
        if self._any is not None:
            return self._any.match(rel + "/" if is_dir else rel) is not None
        assert self.spec is not None   # (no joined regex: a pattern re-includes)
        return self.spec.match_file(rel + "/" if is_dir else rel)


def _one_regex(spec: pathspec.GitIgnoreSpec) -> re.Pattern | None:
    """All of ``spec``'s patterns as one regex, when none re-includes (``!pattern``): then a path is
    excluded exactly when any pattern matches it, and one match replaces a loop over 16+ patterns
    in Python for every entry a scan sees. None when a pattern re-includes (order matters then)."""
    parts = []
    for pattern in spec.patterns:
        include, regex = getattr(pattern, "include", None), getattr(pattern, "regex", None)
        if include is None:
            continue   # a blank line or a comment
        if include is not True or not isinstance(regex, re.Pattern) or regex.flags & ~re.UNICODE:
            return None   # (a flag such as IGNORECASE would be lost in the joined text)
        parts.append("(?:" + _NAMED_GROUP.sub("(?:", regex.pattern) + ")")
    # Patterns that match at any depth share their prefix: one walk back over the path for all of
    # them, not one each (a third of the match's time on a no-change backup).
    deep = [p[len(_ANY_DEPTH) + 3:-1] for p in parts if p.startswith("(?:" + _ANY_DEPTH)]
    if len(deep) > 1:
        parts = [p for p in parts if not p.startswith("(?:" + _ANY_DEPTH)] + \
            [_ANY_DEPTH + "(?:" + "|".join(f"(?:{d})" for d in deep) + ")"]
    try:
        return re.compile("|".join(parts)) if parts else re.compile(r"(?!)")
    except re.error:
        return None


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
_ANY_DEPTH = "^(?:.+/)?"   # how pathspec starts a pattern without a slash (it matches in any folder)


@dataclass
class ScanEntry:
    """What the scan found: the set path, where it is on disk, and its lstat."""

    path: str          # in the set: "<source name>/rel/path"
    abspath: str
    type: str
    size: int
    mtime_ns: int
    mode: int
    ino: int
    ctime_ns: int
    target: str | None = None
    attrs: int = 0     # Windows: hidden and system (winattrs.recorded); 0 elsewhere
    dev: int = 0       # POSIX: st_dev (with ino: the file a reader must find, lean_child.check_same); 0: unknown


def _entry(path: str, abspath: str, st: os.stat_result, kind: str, target=None) -> ScanEntry:
    # On Windows st_ctime is the creation time, which says nothing about changes: use mtime only.
    # (An attribute change does not show in mtime either: the attributes are read here each scan.)
    # The identity (st_ino, st_dev) is the listing's: on Windows winscan's file ID and volume serial
    # number where it could check them, else 0 (unknown: lean_child.check_same checks nothing).
    posix = sys.platform != "win32"
    return ScanEntry(path, abspath, kind, st.st_size if kind == FILE else 0, st.st_mtime_ns,
                     stat.S_IMODE(st.st_mode), st.st_ino,
                     st.st_ctime_ns if posix else 0, target, winattrs.recorded(st) if kind != LINK else 0,
                     st.st_dev)


def scan(sources: list[Source], excluder: Excluder, warnings: list[RunWarning],
         ahead: Prefetch | None = None) -> Iterator[ScanEntry]:
    """Every entry under every source, sorted component by component (the manifest's order).

    The folders are read ahead in threads (core/engine/prefetch.py): by ``ahead``, already
    started on these sources, else by one started here; stopped when the scan ends."""
    ordered = sorted(sources, key=lambda s: s.name)
    if ahead is None:
        ahead = Prefetch([s.path for s in ordered])
    ahead.exclude(excluder.excluded, excluder.skip_dirs)
    try:
        for src in ordered:
            root = root_entry(src)
            yield root
            yield from _walk(src.path, src.name, "", excluder, warnings, root)
    finally:
        ahead.stop()


def _walk(root: str, top: str, rel: str, excluder: Excluder, warnings,
          folder: ScanEntry | None = None) -> Iterator[ScanEntry]:
    """Everything below the folder ``rel`` of a source, sorted (the folder itself is the caller's:
    ``folder``, its record, when the caller has it: see :func:`children`).

    Depth first with a stack of listings, not nested generators (each entry passed up through
    one generator per level was a tenth of the scan's time)."""
    cut = len(top) + 1
    stack = [children(root, top, rel, excluder, warnings, folder)]
    while stack:
        for se in stack[-1]:
            yield se
            if se.type == DIR:
                stack.append(children(root, top, se.path[cut:], excluder, warnings, se))
                break
        else:
            stack.pop()


_NAME = operator.attrgetter("name")


def children(root: str, top: str, rel: str, excluder: Excluder, warnings,
             folder: ScanEntry | None = None) -> Iterator[ScanEntry]:
    """The direct entries of the folder ``rel`` ("" for the source folder ``root``), sorted by name.

    Where folders are read through their descriptors (:data:`BY_DESCRIPTOR`), each entry's
    ``lstat`` is made through the folder's, and the folder opened must be ``folder`` (the record
    the scan made of it, when given): its inode and device, so a folder above it swapped for a
    link since is not listed through the link (:func:`lstat_listing`). On Windows
    (:data:`BY_HANDLE`) it is listed through its handle and checked the same way, by file ID
    (core/engine/winscan.py). Elsewhere it is listed by its path (``os.scandir``)."""
    path = os.path.join(root, rel) if rel else root
    if BY_HANDLE:
        yield from _children_by_handle(long_path(path), top, rel, excluder, warnings, folder)
        return
    if BY_DESCRIPTOR:
        path = long_path(path)   # (as ``listing``'s: Windows' form where that applies; the entries inherit it)
        expect = (folder.dev, folder.ino) if folder is not None and folder.ino and folder.dev else None
        inside = path if path.endswith(os.sep) else path + os.sep   # (once a folder: no os.path.join an entry)
        above = rel + "/" if rel else ""
        for name, st in lstat_listing(path, warnings, top=not rel, expect=expect):
            se = entry_for(top, above + name, inside + name, st, excluder, warnings)
            if se is not None:
                yield se
        return
    for child in listing(path, warnings):
        crel = f"{rel}/{child.name}" if rel else child.name
        try:
            st = child.stat(follow_symlinks=False)
        except OSError as err:
            unreadable(child.path, err, warnings)
            continue
        se = entry_for(top, crel, child.path, st, excluder, warnings)
        if se is not None:
            yield se


def _children_by_handle(path: str, top: str, rel: str, excluder: Excluder, warnings,
                        folder: ScanEntry | None) -> Iterator[ScanEntry]:
    """:func:`children` on Windows: the folder listed through its handle, only if it is ``folder``
    (its file ID), each entry with the identity its readers check (core/engine/winscan.py)."""
    from core.engine import winscan

    expect = (folder.dev, folder.ino) if folder is not None and folder.ino else None
    try:
        found = winscan.listing(path, top=not rel, expect=expect)
    except OSError as err:
        warnings.append(RunWarning(WarningCode.UNREADABLE, path, f"folder could not be read, skipped ({err.strerror})"))
        return
    if found is None:
        warnings.append(RunWarning(WarningCode.UNREADABLE, path, REPLACED_FOLDER))
        return
    for name, st in found:
        se = entry_for(top, f"{rel}/{name}" if rel else name, os.path.join(path, name), st, excluder, warnings)
        if se is not None:
            yield se


def listing(folder: str, warnings) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name (none, and a warning, when it cannot be read)."""
    try:
        with os.scandir(long_path(folder)) as it:   # (Windows: \\?\ when long; children inherit it)
            return sorted(it, key=_NAME)
    except OSError as err:
        warnings.append(RunWarning(WarningCode.UNREADABLE, folder,
                                   f"folder could not be read, skipped ({err.strerror})"))
        return []


def unreadable(path: str, err: OSError, warnings) -> None:
    """The warning for an entry whose ``lstat`` failed (it is left out)."""
    warnings.append(RunWarning(WarningCode.UNREADABLE, path, f"could not be read, skipped ({err.strerror})"))


REPLACED_FOLDER = ("folder was replaced after it was scanned (a folder on its way became a link?): "
                   "not followed, skipped")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Where a folder's entries can be listed and ``lstat``-ed through its descriptor (POSIX).
BY_DESCRIPTOR = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd and bool(_NOFOLLOW)
#: Where folders are listed through a handle instead (Windows: core/engine/winscan.py).
BY_HANDLE = sys.platform == "win32"


def lstat_listing(folder: str, warnings, top: bool = False,
                  expect: tuple[int, int] | None = None) -> list[tuple[str, os.stat_result]]:
    """``(name, lstat)`` of every entry of ``folder``, sorted by name, all read now (what the scan's
    ``listing`` and ``DirEntry.stat`` read, in one go): through the folder's descriptor, so each
    ``lstat`` looks up one name instead of the whole path (:data:`BY_DESCRIPTOR` only). The folder
    is opened without following a symlink, except a source's own folder (``top``: the scan follows
    it, ``root_entry``); one swapped for a symlink since its ``lstat`` is not read (a warning).

    ``expect``: the folder's (``st_dev``, ``st_ino``) as its parent's listing found it. ``O_NOFOLLOW``
    guards the last name only: a folder *above* it swapped for a symlink since would lead the path
    elsewhere, and what is listed there would be recorded (its files' own inodes: the readers'
    check, ``lean_child.check_same``, would pass). Another folder than the one expected is not
    read (a warning; one ``fstat`` per folder)."""
    try:
        fd = os.open(folder, _DIR_FLAGS if top else _DIR_FLAGS | _NOFOLLOW)
        try:
            if expect is not None:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != expect:
                    warnings.append(RunWarning(WarningCode.UNREADABLE, folder, REPLACED_FOLDER))
                    return []
            # os.scandir of the descriptor: each DirEntry.stat is an fstatat of one name through it
            # (as os.stat(name, dir_fd=fd) is, without parsing its arguments for every entry).
            with os.scandir(fd) as it:
                entries = sorted(it, key=_NAME)
            out = []
            for d in entries:
                try:
                    out.append((d.name, d.stat(follow_symlinks=False)))
                except OSError as err:
                    unreadable(os.path.join(folder, d.name), err, warnings)
            return out
        finally:
            os.close(fd)
    except OSError as err:
        warnings.append(RunWarning(WarningCode.UNREADABLE, folder,
                                   f"folder could not be read, skipped ({err.strerror})"))
        return []


def lstat_beneath(root: str, rel: str, abspath: str) -> os.stat_result:
    """``os.lstat(abspath)``, ``abspath`` being the source folder ``root``'s ``rel`` ('/'-separated),
    reached without following a link anywhere below ``root`` where folders can be opened through
    their descriptors (:data:`BY_DESCRIPTOR`): each folder on the way is opened ``O_NOFOLLOW``
    relative to the one above (ELOOP where one is a link now). For a path found without listing
    its folders (a journal scan's named folder, core/engine/reuse.py): the record it makes is then
    that of the folder really there, which its listing checks (:func:`lstat_listing`). On Windows
    (:data:`BY_HANDLE`) each folder on the way is listed through its handle and checked as the scan
    checks it (``winscan.stat_beneath``)."""
    if BY_HANDLE and rel:
        from core.engine import winscan

        return winscan.stat_beneath(long_path(root), rel)   # (Windows: each folder listed by handle, checked)
    if not BY_DESCRIPTOR or not rel:
        return os.lstat(abspath)
    *folders, name = rel.split("/")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in folders:
            fd, above = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd), fd
            os.close(above)
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def entry_for(top: str, rel: str, abspath: str, st: os.stat_result, excluder: Excluder,
              warnings) -> ScanEntry | None:
    """What a scan records for ``abspath`` (the source's ``rel``) given its lstat, or None when it
    is left out: excluded, the set itself, a socket, a special file or an unreadable symlink."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if excluder.excluded(rel, True) or (st.st_dev, st.st_ino) in excluder.skip_dirs:
            return None
        return _entry(f"{top}/{rel}", abspath, st, DIR)
    if excluder.excluded(rel, False):
        return None
    if stat.S_ISREG(mode):
        return _entry(f"{top}/{rel}", abspath, st, FILE)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(abspath)
        except OSError as err:
            warnings.append(RunWarning(WarningCode.UNREADABLE, abspath,
                                       f"symlink could not be read, skipped ({err.strerror})"))
            return None
        return _entry(f"{top}/{rel}", abspath, st, LINK, target)
    if not stat.S_ISSOCK(mode):   # sockets are endpoints of running programs: nothing to back up
        warnings.append(RunWarning(WarningCode.SPECIAL_FILE, abspath, "special file (device or pipe), skipped"))
    return None


def root_entry(src: Source) -> ScanEntry:
    """A source folder's own record (followed if it is a symlink: the folder is what is backed up)."""
    return _entry(src.name, src.path, os.stat(src.path), DIR)


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (both made real first)."""
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)
