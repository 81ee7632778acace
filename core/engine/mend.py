"""Mending what a rolling check found damaged (issue #14): which snapshots hold it, and a fresh
copy from the source when the source still has the same content.

Repairs go through the backup's own write path: the source is read once into
``tmp/`` (hashed, and encrypted in encrypted sets, in the same pass) by the
set's store, renamed over the damaged copy only when its SHA-256 (and keyed
name) equals the manifest's, and then read back from the drive with the page
cache dropped. All of it under the set's lock, after checking once more that
the copy is still damaged (a backup may have replaced it meanwhile).

Sources come from this computer's configuration only (``allowed``): a manifest
header names folders, but the drive is untrusted, and a header pointing at
another folder must not make Plugback read it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from core.engine import chunks, mend_chunks
from core.engine.chunkstore import ChunkWriter
from core.engine.fs import probe_volume
from core.engine.lock import SetLock
from core.engine.manifest import FILE, Entry
from core.engine.progress import Clock
from core.engine.repo import BackupSet
from core.engine.scan import ScanEntry
from core.engine.scrub import Damage
from core.engine.store import EncryptedStore, PlainStore
from core.errors import PlugbackError

EXAMPLES = 5      # file paths named per damaged item (the snapshots are all counted)


@dataclass
class Holders:
    """Who holds one damaged content: snapshot ids (oldest first), a few paths, and an entry with
    its source folder (from that snapshot's header) to repair from."""

    snapshots: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    entry: Entry | None = None   # an entry with a source folder this computer backs up (to repair from)
    source: str | None = None    # that folder (the entry's first path component stands for it)
    any_entry: Entry | None = None   # any entry naming the content (what the stored copy should hold)


@dataclass
class Mended:
    """What became of one damaged item: repaired, or why not, and who holds it. ``moot``: nothing is
    lost after all (no snapshot needs the content, or a backup replaced the copy meanwhile)."""

    damage: Damage
    repaired: bool
    note: str
    holders: Holders
    moot: bool = False


def locate(bset: BackupSet, names: set[str], allowed: list[str]) -> dict[str, Holders]:
    """The holders of each object name (or SHA-256, for ``Latest/`` copies) in ``names``, streaming
    every manifest once; a damaged manifest is skipped (the check names it)."""
    found = {n: Holders() for n in names}
    keyed = bset.keys is not None
    for sid in bset.snapshot_ids():
        try:
            with bset.open_manifest(sid) as reader:
                sources = {s.get("name"): s.get("path") for s in reader.manifest.sources if isinstance(s, dict)}
                for e in reader:
                    if e.type != FILE:
                        continue
                    h = found.get((e.obj if keyed else e.sha256) or "")
                    if h is None:
                        continue
                    if not h.snapshots or h.snapshots[-1] != sid:
                        h.snapshots.append(sid)
                    h.any_entry = h.any_entry or e
                    if len(h.paths) < EXAMPLES and e.path not in h.paths:
                        h.paths.append(e.path)
                    source = _allowed_source(sources.get(e.path.split("/", 1)[0]), allowed)
                    if source is not None:
                        h.entry, h.source = e, source   # the newest snapshot's wins: the likeliest still there
        except PlugbackError:
            continue
    return found


def _allowed_source(path, allowed: list[str]) -> str | None:
    """``path`` (from a manifest header) if it is one of this computer's configured sources."""
    if not isinstance(path, str):
        return None
    norm = {os.path.normcase(os.path.abspath(a)) for a in allowed}
    return path if os.path.normcase(os.path.abspath(path)) in norm else None


def mend(bset: BackupSet, damaged: list[Damage], allowed: list[str], *, clock: Clock | None = None) -> list[Mended]:
    """Repair what can be repaired of ``damaged`` from the sources in ``allowed``; one Mended per item.

    Not cancellable: only damaged files are copied (a slice reports at most
    scrub.MAX_DAMAGE), and damage found must be repaired or reported, not dropped.
    Damaged manifests cannot be repaired (an old snapshot's list exists nowhere else) and
    are reported with the snapshot they are. Raises SetLocked when a backup holds the set.
    """
    clock = clock or Clock()
    keys = {_content_key(bset, d) for d in damaged} - {None}
    holders = locate(bset, {k for k in keys if k}, allowed) if keys else {}
    pieces = _chunk_owners(bset, damaged, holders)
    if pieces:
        holders.update(locate(bset, set(pieces.values()), allowed))
    out: list[Mended] = []
    with SetLock(bset.layout.lock, clock, purpose="repair"):
        store = (EncryptedStore if bset.encrypted else PlainStore)(bset, probe_volume(bset.layout.tmp), [])
        for d in damaged:
            key = _content_key(bset, d)
            if d.name in pieces:
                out.append(_mend_chunk(bset, store, d, holders[pieces[d.name]]))
                continue
            h = holders.get(key or "", Holders(snapshots=[d.snapshot] if d.snapshot else []))
            out.append(_mend_one(bset, store, d, h))
            if out[-1].repaired and d.where.endswith(chunks.LIST_SUFFIX):
                bset.fs.unlink(chunks.list_path(bset, d.name or ""))   # the whole object stands in for it
        if any(m.repaired for m in out):
            bset.fs.flush_volume(bset.layout.root)
    return out


def _chunk_owners(bset: BackupSet, damaged: list[Damage], holders: dict[str, Holders]) -> dict[str, str]:
    """Damaged objects no snapshot names that are chunks (format 2): chunk -> a content whose list names it."""
    orphans = {d.name for d in damaged if d.name and not d.where.endswith(chunks.LIST_SUFFIX)
               and not holders.get(d.name, Holders()).snapshots}
    return mend_chunks.owners(bset, orphans) if orphans and bset.chunked else {}


def _mend_chunk(bset: BackupSet, store, d: Damage, h: Holders) -> Mended:
    """A damaged chunk: cut from the file on this computer again (core/engine/mend_chunks.py)."""
    writer = ChunkWriter(bset, store.object_dir)
    if writer.reads_back(d.name or ""):
        return Mended(d, False, "it reads correctly now", h, moot=True)
    if h.entry is None or h.source is None:
        return Mended(d, False, "a piece of older versions of a file whose source folder is not one of this "
                      "computer's backed-up folders", h)
    problem = mend_chunks.rewrite_chunk(bset, writer, d.name or "", _source_path(h))
    if problem:
        return Mended(d, False, problem, h)
    return Mended(d, True, "copied again from this computer and read back correctly", h)


def _source_path(h: Holders) -> str:
    """The file on this computer that ``h.entry`` was backed up from."""
    assert h.entry is not None and h.source is not None
    rel = h.entry.path.split("/", 1)
    return os.path.join(h.source, *rel[1].split("/")) if len(rel) == 2 else h.source


def _content_key(bset: BackupSet, d: Damage) -> str | None:
    """What names ``d``'s content in manifests: the object name, or a Latest/ copy's SHA-256 / obj."""
    if d.name:
        return d.name
    if d.entry is not None:
        return bset.object_name(d.entry)
    return None


def _mend_one(bset: BackupSet, store, d: Damage, h: Holders) -> Mended:
    from core.engine.verify import check_entry

    if d.entry is None and d.name is None:
        if d.where.startswith("snapshots/"):
            return Mended(d, False, "a snapshot list cannot be copied again: that snapshot is affected", h)
        return Mended(d, False, "its stored copy is missing or has the wrong size: the snapshots named are "
                      "affected", h)
    # ``entry`` is what the damaged copy should hold; ``h.entry`` (same content, maybe another path)
    # says where the source is.
    entry = d.entry or h.entry or h.any_entry
    if entry is None:
        return Mended(d, False, "no snapshot names this content; the next clean-up removes it", h, moot=True)
    if d.entry is not None and d.snapshot != bset.newest_id():
        return Mended(d, False, "a backup has replaced Latest/ since; the next pass reads it again", h, moot=True)
    dests = _destinations(bset, d, entry)
    if check_entry(bset, entry, dests) is None:
        return Mended(d, False, "it reads correctly now (a backup replaced it meanwhile)", h, moot=True)
    if h.entry is None or h.source is None:
        return Mended(d, False, "its source folder is not one of this computer's backed-up folders", h)
    abspath = _source_path(h)
    try:
        st = os.lstat(abspath)
    except OSError:
        return Mended(d, False, "the file is no longer on this computer", h)
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        return Mended(d, False, "the file on this computer has changed since", h)
    se = ScanEntry(h.entry.path, abspath, FILE, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), 0, 0)
    try:
        copied = store.copy_in(se)
    except OSError as err:
        return Mended(d, False, f"the file on this computer cannot be read ({err.strerror or err})", h)
    if copied.changed or copied.sha256 != entry.sha256 or len(copied.tmp_paths) != len(dests) \
            or (bset.encrypted and copied.obj != entry.obj):
        store.discard(copied)
        return Mended(d, False, "the file on this computer has changed since", h)
    # Last part first, as the store writes them: the first part's presence means the content is whole.
    for tmp, dest in reversed(list(zip(copied.tmp_paths, dests, strict=True))):
        bset.fs.replace(tmp, dest)
    problem = check_entry(bset, entry, dests)
    if problem:
        return Mended(d, False, f"copied again from this computer, but it still reads back wrong: {problem}", h)
    return Mended(d, True, "copied again from this computer and read back correctly", h)


def _destinations(bset: BackupSet, d: Damage, entry: Entry) -> list[Path]:
    """Where the damaged copy is: the object's files, or the copy in ``Latest/`` (proven inside it)."""
    layout = bset.layout
    if d.name:
        if entry.parts:
            return [layout.object_part(d.name, i) for i in range(1, entry.parts + 1)]
        return [layout.object(d.name)]
    if entry.parts:
        return [layout.latest_part(entry.mirror_path, i, writing=True) for i in range(1, entry.parts + 1)]
    return [layout.latest_file(entry.mirror_path, writing=True)]
