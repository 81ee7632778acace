"""The manifest format: one snapshot's list of entries (docs/format.md, "Manifests").

gzip'd JSON lines: a header line, one line per entry sorted by path (component
by component), and a trailer with the entry count and the SHA-256 of every
byte before the trailer line, so truncation and edits are detected.

This module defines the records and checks every untrusted value (a manifest
is read from a drive); ``core/engine/manifest_io.py`` reads and writes the
bytes as streams.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime

from core.engine.safeio import GIB, MIB
from core.engine.winattrs import RECORDED
from core.errors import ManifestDamaged, UnsafeManifestPath

MANIFEST_FORMAT = "plugback-manifest"
MANIFEST_VERSION = 1

FILE, DIR, LINK = "f", "d", "l"

# Limits on what a manifest read from a drive may hold (docs/format.md, "Limits").
MAX_MANIFEST_BYTES = 512 * MIB      # the file on the drive (gzip, or encrypted gzip)
MAX_MANIFEST_TEXT = 1 * GIB         # after gunzip: about 4 million entries
MAX_PARTS = 4096                    # a split file: 4096 parts of 4 GiB are 16 TiB
MAX_PATH_CHARS = 16384              # a path, mirror path, symlink target or source folder
MAX_NAME_CHARS = 4096               # host and job names
MAX_SOURCES = 10000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4,64}$")   # layout's id pattern, with a length cap


@dataclass
class Entry:
    """One file, folder or symlink in a snapshot.

    ``path`` is relative, '/'-separated, its first component the source's
    top-level name. ``mirror`` is set only where the copy in ``Latest/`` has a
    different (escaped) path; ``parts`` only where content is stored split;
    ``obj`` only in encrypted sets (the keyed object name); ``attrs`` only where a
    file or folder on Windows had the hidden or system attribute (``ATTRS``);
    ``stored`` only where the object's bytes on the drive are not what ``size``
    gives (a compressed object of a format-2 encrypted set: docs/format.md).
    """

    path: str
    type: str
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    sha256: str | None = None
    target: str | None = None
    ino: int = 0
    ctime_ns: int = 0
    mirror: str | None = None
    parts: int = 0
    obj: str | None = None
    attrs: int = 0
    stored: int = 0

    @property
    def mirror_path(self) -> str:
        return self.mirror or self.path

    def to_dict(self) -> dict:
        d = {"path": self.path, "type": self.type, "mtime_ns": self.mtime_ns, "mode": self.mode}
        if self.type == FILE:
            d["size"] = self.size
            d["sha256"] = self.sha256
        if self.type == LINK:
            d["target"] = self.target
        if self.ino:
            d["ino"] = self.ino
            d["ctime_ns"] = self.ctime_ns
        if self.mirror:
            d["mirror"] = self.mirror
        if self.parts:
            d["parts"] = self.parts
        if self.obj:
            d["obj"] = self.obj
        if self.attrs:
            d["attrs"] = self.attrs
        if self.stored:
            d["stored"] = self.stored
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(path=d["path"], type=d["type"], size=d.get("size", 0), mtime_ns=d.get("mtime_ns", 0),
                   mode=d.get("mode", 0), sha256=d.get("sha256"), target=d.get("target"),
                   ino=d.get("ino", 0), ctime_ns=d.get("ctime_ns", 0), mirror=d.get("mirror"),
                   parts=d.get("parts", 0), obj=d.get("obj"), attrs=d.get("attrs", 0),
                   stored=d.get("stored", 0))


def sort_key(path: str) -> list[str]:
    """Entries sort by path component by component, so a folder comes right before its contents."""
    return path.split("/")


@dataclass
class Manifest:
    """A snapshot: its header fields and its entries, in sort_key order."""

    snapshot_id: str
    time: str
    host: str = ""
    job: str = ""
    sources: list[dict] = field(default_factory=list)   # [{"path": abs source, "name": top folder}]
    parent: str | None = None
    entries: list[Entry] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    scan: dict | None = None   # how it was scanned (issue #12): decode_scan's

    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}


# --- checking untrusted values (a manifest is read from a drive) --------------------------

class _Bad(ValueError):
    """A field that is not what the format says (internal: becomes ManifestDamaged)."""


def _is_int(v, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _text_problem(v, limit: int = MAX_PATH_CHARS) -> str | None:
    """Why ``v`` is not a string Plugback can use as a name on any OS, or None."""
    if not isinstance(v, str):
        return "it is not text"
    if len(v) > limit:
        return f"it is longer than {limit} characters"
    if "\x00" in v:
        return "it contains a NUL character"
    try:
        # Names that were not UTF-8 on POSIX come as \udc80-\udcff; any other lone surrogate
        # cannot be turned back into a file name.
        v.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "it is not a valid file name"
    return None


#: Where a backslash separates folders (Windows), a manifest path with one, or with a drive letter,
#: could lead outside; elsewhere both are ordinary characters of a file name (``a\\b``, ``x:y``
#: are legal names on Linux and macOS, and refusing them made every later backup of such a folder
#: fail). A set holding such names is refused as damaged by a reader on Windows.
WINDOWS_PATHS = os.sep == "\\" or os.altsep is not None


def path_problem(path) -> str | None:
    """Why ``path`` is not a plain relative '/'-separated path below a folder, or None.

    The restore rules, for every path read from a drive: no empty, ``.`` or ``..``
    component, not absolute, no NUL; on Windows also no drive letter (``C:``) and no backslash.
    """
    problem = _text_problem(path)
    if problem:
        return problem
    parts = path.split("/")
    # A drive letter ("C:", "C:x") has ':' in the first component; UNC paths start with '/' or '\\'.
    if (not path or path[0] == "/" or (WINDOWS_PATHS and ("\\" in path or ":" in parts[0]))
            or "" in parts or "." in parts or ".." in parts):
        return "it is not a relative path inside the set"
    return None


def _field(d: dict, key: str, check, default=None, required: bool = False):
    if d.get(key) is None:
        if required:
            raise _Bad(f"'{key}' is missing")
        return default
    v = d[key]
    if not check(v):
        raise _Bad(f"'{key}' has an invalid value")
    return v


def is_hex64(v) -> bool:
    """A SHA-256 (or keyed object name) as the format writes it: 64 lowercase hex digits."""
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def is_snapshot_id(v) -> bool:
    return isinstance(v, str) and _SNAPSHOT_ID.match(v) is not None


_I63 = 1 << 63
_ENTRY_INTS = {"size": (0, _I63 - 1), "mtime_ns": (-_I63, _I63 - 1), "mode": (0, 0xFFFFFFFF),
               "ino": (0, (1 << 64) - 1), "ctime_ns": (-_I63, _I63 - 1), "parts": (0, MAX_PARTS),
               "attrs": (0, 0xFFFFFFFF), "stored": (0, _I63 - 1)}
#: The Windows attributes an entry's ``attrs`` may carry: FILE_ATTRIBUTE_HIDDEN and _SYSTEM.
#: Other bits of a valid value are ignored, and so is ``attrs`` on a symlink: a later writer
#: may record more without this reader refusing the set.
ATTRS = RECORDED


def parse_entry(d: dict, name: str, *, encrypted: bool | None = None, line: int = 0) -> Entry:
    """One entry line (already parsed as JSON) checked and made an Entry; usable line by line.

    Raises ManifestDamaged naming ``name`` (and the line), or UnsafeManifestPath
    for a path or mirror name that would reach outside the set. (Written out, not
    table-driven: it runs once per file of every manifest read.)
    """
    if type(d) is not dict:
        raise ManifestDamaged(path=name, reason=f"line {line}: an entry is not an object")
    for key in ("path", "mirror"):
        v = d.get(key)
        if v is not None and path_problem(v):
            raise UnsafeManifestPath(path=name, entry=v if isinstance(v, str) else repr(v))
    path, kind, sha, obj, target = d.get("path"), d.get("type"), d.get("sha256"), d.get("obj"), d.get("target")
    ints = []
    for key, (lo, hi) in _ENTRY_INTS.items():
        v = d.get(key)
        if v is None:
            v = 0
        elif type(v) is not int or not lo <= v <= hi:
            return _bad_entry(name, line, f"'{key}' has an invalid value")
        ints.append(v)
    if path is None or kind not in (FILE, DIR, LINK):
        return _bad_entry(name, line, "'path' or 'type' is missing or invalid")
    if (sha is not None or kind == FILE) and not is_hex64(sha):
        return _bad_entry(name, line, "'sha256' is missing or invalid")
    if (obj is not None or (encrypted and kind == FILE)) and not is_hex64(obj):
        return _bad_entry(name, line, "'obj' is missing or invalid")
    if (target is not None or kind == LINK) and (target == "" or _text_problem(target)):
        return _bad_entry(name, line, "'target' is missing or invalid")
    size, mtime_ns, mode, ino, ctime_ns, parts, attrs, stored = ints
    if kind != FILE and (parts or obj or stored):
        return _bad_entry(name, line, "only files have parts, an object or a stored size")
    if stored and obj is None:
        return _bad_entry(name, line, "'stored' belongs to objects of encrypted sets")
    return Entry(path, kind, size, mtime_ns, mode, sha, target, ino, ctime_ns, d.get("mirror"), parts, obj,
                 attrs & ATTRS if kind != LINK else 0, stored)


def _bad_entry(name: str, line: int, why: str):
    where = f"line {line}: " if line else ""
    raise ManifestDamaged(path=name, reason=f"{where}an entry is missing a field or has an invalid one ({why})")


class EntryOrder:
    """Checks entries as they come, one at a time: strictly sorted (no duplicates), and none
    below a file or a symlink (which a restore or a backup would write through).

    Entries sort component by component, so everything below an entry comes right
    after it: remembering the last file or symlink is enough.
    """

    def __init__(self, name: str):
        self.name = name
        self._last: list[str] | None = None
        self._leaf: str | None = None   # the last file or symlink seen

    def check(self, e: Entry) -> Entry:
        key = sort_key(e.path)
        if self._last is not None and key <= self._last:
            raise ManifestDamaged(path=self.name, reason=f"the entries are out of order or repeated at {e.path!r}")
        if self._leaf is not None and e.path.startswith(self._leaf + "/"):
            raise UnsafeManifestPath(path=self.name, entry=e.path)
        self._last = key
        self._leaf = e.path if e.type != DIR else self._leaf
        return e


def _source(s) -> dict:
    if not isinstance(s, dict) or _text_problem(s.get("path")) or path_problem(s.get("name")) \
            or "/" in s["name"]:
        raise _Bad("a source is invalid")
    return {"path": s["path"], "name": s["name"]}


def decode_header(h: dict, name: str) -> Manifest:
    """The header line's fields, checked; an empty Manifest to add entries to."""
    try:
        sid = _field(h, "snapshot", is_snapshot_id, required=True)
        time = _field(h, "time", lambda v: isinstance(v, str) and len(v) <= 64 and _iso(v), required=True)
        host = _field(h, "host", lambda v: _text_problem(v, MAX_NAME_CHARS) is None, required=True)
        job = _field(h, "job", lambda v: _text_problem(v, MAX_NAME_CHARS) is None, required=True)
        sources = [_source(s) for s in _field(h, "sources", lambda v: isinstance(v, list) and len(v) <= MAX_SOURCES,
                                              required=True)]
        if len({s["name"] for s in sources}) != len(sources):
            raise _Bad("two sources have the same name")
        if "parent" not in h:
            raise _Bad("'parent' is missing")
        parent = _field(h, "parent", is_snapshot_id)
        totals = _field(h, "totals", lambda v: isinstance(v, dict), required=True)
        totals = {k: totals.get(k, 0) for k in ("files", "dirs", "links", "bytes")}
        if not all(_is_int(v, 0) for v in totals.values()):
            raise _Bad("'totals' has an invalid value")
    except _Bad as bad:
        raise ManifestDamaged(path=name, reason=f"its header is invalid ({bad})") from None
    return Manifest(snapshot_id=sid, time=time, host=host, job=job, sources=sources, parent=parent,
                    totals=totals, scan=decode_scan(h.get("scan")))


SCAN_KINDS = ("full", "journal")
MAX_RETRY = 1000   # folders a snapshot asks the next journal scan to read again


def decode_scan(v) -> dict | None:
    """The header's optional ``scan`` field (issue #12), checked; None when absent or unusable.

    ``{"by": "full"|"journal", "rules": HEX64 (the scan rules' key; absent: no journal scan
    may build on this snapshot), "retry": [absolute paths on the computer backed up]}``. Only
    an optimisation rests on it, so a bad value is ignored (a full scan), never damage.
    """
    if not isinstance(v, dict) or v.get("by") not in SCAN_KINDS:
        return None
    rules, retry = v.get("rules"), v.get("retry", [])
    if rules is not None and not is_hex64(rules):
        return None
    if not isinstance(retry, list) or len(retry) > MAX_RETRY or any(_text_problem(p) for p in retry):
        return None
    return {"by": v["by"], "rules": rules, "retry": list(retry)}


def _iso(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True
