"""Verification: is every snapshot intact and every byte it names where it should be?

The quick check reads every manifest (their checksums catch truncation and
edits) and checks that each content exists with the right size. ``read_all``
also reads every content once, from the drive rather than the cache, and
compares its SHA-256 (encrypted sets: decrypts and authenticates it).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.engine.manifest import FILE, Entry
from core.engine.progress import Progress, no_progress
from core.engine.repo import BackupSet, Unlocker
from core.errors import DamagedSet, PlugbackError


@dataclass
class VerifyResult:
    """``damaged``: (what, why) pairs naming the file and the snapshots that hold it."""

    snapshots: int = 0
    contents: int = 0
    bytes_read: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict:
        return {"ok": self.ok, "snapshots": self.snapshots, "contents": self.contents,
                "bytes_read": self.bytes_read, "notices": self.notices,
                "damaged": [{"path": p, "reason": r} for p, r in self.damaged]}


def stored_size(bset: BackupSet, entry: Entry) -> int:
    """How many bytes ``entry``'s content takes where it is stored."""
    if bset.encrypted:
        from core.engine import crypto

        return crypto.encrypted_size(entry.size)
    return entry.size


def check_entry(bset: BackupSet, entry: Entry, paths: list[Path] | None = None) -> str | None:
    """Read ``entry``'s content from the drive and compare it with the manifest; a reason or None."""
    paths = paths if paths is not None else bset.content_paths(entry)
    if not paths:
        return "its content is missing from the drive"
    digest = hashlib.sha256()
    size = 0
    try:
        for block in bset.read_content(entry, paths, drop_cache=True):
            digest.update(block)
            size += len(block)
    except DamagedSet as err:
        return str(err)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if size != entry.size:
        return f"it has {size} bytes instead of {entry.size}"
    if digest.hexdigest() != entry.sha256:
        return "its content does not match its checksum (changed or damaged on the drive)"
    return None


def _structure_problem(bset: BackupSet, entry: Entry, paths: list[Path] | None) -> str | None:
    if not paths:
        return "its content is missing from the drive"
    try:
        size = sum(os.stat(p).st_size for p in paths)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if size != stored_size(bset, entry):
        return f"its stored copy has {size} bytes instead of {stored_size(bset, entry)}"
    return None


def verify(set_path, *, read_all: bool = False, unlock: Unlocker | None = None, progress=None,
           workers: int = 4) -> VerifyResult:
    """Check the set at ``set_path``; every damaged file is named in ``result.damaged``."""
    progress = progress or no_progress
    bset = BackupSet.open(Path(set_path), unlock)
    result = VerifyResult()
    if bset.layout.journal.exists():
        result.notices.append("A backup was interrupted: Latest/ may be partly updated. Earlier snapshots "
                              "are intact; the next backup finishes the work.")
    ids = bset.snapshot_ids()
    # content key -> (an entry with it, [paths in snapshots])
    contents: dict[tuple[str, int], tuple[Entry, list[str]]] = {}
    newest_entries: list[Entry] = []
    for sid in ids:
        try:
            m = bset.manifest(sid)
        except PlugbackError as err:
            result.damaged.append((f"snapshots/{sid}", str(err)))
            continue
        result.snapshots += 1
        for e in m.entries:
            if e.type != FILE:
                continue
            key = (bset.object_name(e), e.parts)
            if key not in contents:
                contents[key] = (e, [])
            contents[key][1].append(f"{e.path} ({sid})")
        if not bset.encrypted:   # the newest intact snapshot is what Latest/ shows
            newest_entries = [e for e in m.entries if e.type == FILE]
    checks: list[tuple[str, Entry, list[Path] | None]] = []
    for e, where in contents.values():
        label = where[0] + (f" and {len(where) - 1} more" if len(where) > 1 else "")
        checks.append((label, e, bset.content_paths(e)))
    # What a person sees in Latest/ must be right too, not only the copy Plugback would use.
    latest_checks = []
    for e in newest_entries:
        paths = [bset.layout.latest_part(e.mirror_path, i) for i in range(1, e.parts + 1)] if e.parts \
            else [bset.layout.latest_file(e.mirror_path)]
        latest_checks.append((f"Latest/{e.mirror_path}", e, paths if all(p.exists() for p in paths) else None))
    if result.notices:
        latest_checks = []   # an interrupted run: Latest/ is between two snapshots until the next run
    seen = {tuple(paths) for _, _, paths in checks if paths}
    all_checks = checks + [c for c in latest_checks if not c[2] or tuple(c[2]) not in seen]
    total = sum(e.size for _, e, _ in all_checks)
    done = {"n": 0, "bytes": 0}

    def run(check):
        label, e, paths = check
        problem = _structure_problem(bset, e, paths)
        if problem is None and read_all:
            problem = check_entry(bset, e, paths)
        return label, e, problem

    with ThreadPoolExecutor(max_workers=workers if read_all else 1) as pool:
        for label, e, problem in pool.map(run, all_checks):
            result.contents += 1
            if read_all:
                result.bytes_read += e.size
            if problem:
                result.damaged.append((label, problem))
            done["n"] += 1
            done["bytes"] += e.size
            progress(Progress("verify", done["n"], len(all_checks), done["bytes"], total, label))
    return result
