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
from core.engine.progress import Progress, ProgressCallback, no_progress
from core.engine.repo import BackupSet
from core.errors import DamagedSet, PlugbackError

# (what to call it in a report, the entry, where its bytes are or None if nowhere)
_Check = tuple[str, Entry, "list[Path] | None"]


@dataclass(frozen=True)
class VerifyOptions:
    """``read_all`` reads every content back (a scrub); otherwise sizes are checked."""

    read_all: bool = False
    workers: int = 4
    progress: ProgressCallback = no_progress


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


def verify(bset: BackupSet, options: VerifyOptions | None = None) -> VerifyResult:
    """Check the opened set ``bset``; every damaged file is named in ``result.damaged``."""
    options = options or VerifyOptions()
    result = VerifyResult()
    if bset.layout.journal.exists():
        result.notices.append("A backup was interrupted: Latest/ may be partly updated. Earlier snapshots "
                              "are intact; the next backup finishes the work.")
    checks, newest_entries = _content_checks(bset, result)
    # What a person sees in Latest/ must be right too, not only the copy Plugback would use;
    # after an interrupted run Latest/ is between two snapshots until the next run.
    if not result.notices:
        seen = {tuple(paths) for _, _, paths in checks if paths}
        checks += [c for c in _latest_checks(bset, newest_entries) if not c[2] or tuple(c[2]) not in seen]
    _run_checks(bset, checks, options, result)
    return result


def _content_checks(bset: BackupSet, result: VerifyResult) -> tuple[list[_Check], list[Entry]]:
    """One check per distinct content in any snapshot, and the newest intact snapshot's files
    (plain sets: what ``Latest/`` shows). Damaged manifests are added to ``result``."""
    # content key -> (an entry with it, [paths in snapshots])
    contents: dict[tuple[str, int], tuple[Entry, list[str]]] = {}
    newest_entries: list[Entry] = []
    for sid in bset.snapshot_ids():
        try:
            m = bset.manifest(sid)
        except PlugbackError as err:
            result.damaged.append((f"snapshots/{sid}", str(err)))
            continue
        result.snapshots += 1
        for e in m.entries:
            if e.type == FILE:
                contents.setdefault((bset.object_name(e), e.parts), (e, []))[1].append(f"{e.path} ({sid})")
        if not bset.encrypted:
            newest_entries = [e for e in m.entries if e.type == FILE]
    checks = []
    for e, where in contents.values():
        label = where[0] + (f" and {len(where) - 1} more" if len(where) > 1 else "")
        checks.append((label, e, bset.content_paths(e)))
    return checks, newest_entries


def _latest_checks(bset: BackupSet, entries: list[Entry]) -> list[_Check]:
    out = []
    for e in entries:
        paths = [bset.layout.latest_part(e.mirror_path, i) for i in range(1, e.parts + 1)] if e.parts \
            else [bset.layout.latest_file(e.mirror_path)]
        out.append((f"Latest/{e.mirror_path}", e, paths if all(p.exists() for p in paths) else None))
    return out


def _run_checks(bset: BackupSet, checks: list[_Check], options: VerifyOptions, result: VerifyResult) -> None:
    total = sum(e.size for _, e, _ in checks)
    done_bytes = 0

    def run(check: _Check):
        label, e, paths = check
        problem = _structure_problem(bset, e, paths)
        if problem is None and options.read_all:
            problem = check_entry(bset, e, paths)
        return label, e, problem

    with ThreadPoolExecutor(max_workers=options.workers if options.read_all else 1) as pool:
        for n, (label, e, problem) in enumerate(pool.map(run, checks), start=1):
            result.contents += 1
            if options.read_all:
                result.bytes_read += e.size
            if problem:
                result.damaged.append((label, problem))
            done_bytes += e.size
            options.progress(Progress("verify", n, len(checks), done_bytes, total, label))
