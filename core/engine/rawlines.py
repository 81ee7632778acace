"""Which snapshots list exactly the newest snapshot's entries, found without decoding them (issue #11).

``verify`` streams every manifest into a table of distinct contents; decoding a manifest
(JSON, the checks of every field, an ``Entry`` per line) is most of that work, ~0.7 s per
100,000 entries. A no-change backup writes a manifest whose entry lines are byte for byte
the parent's (only its header differs), so a set backed up daily holds many manifests with
the same lines. Here each one whose header totals equal the newest's is read as text
(``ManifestReader.raw_blocks``: gunzipped, the hash and count of every byte before the
trailer checked against the trailer, nothing parsed) and the SHA-256 of its entry lines
compared with the newest's.

Lines equal to the newest's are as valid as the newest's: the caller decodes one member
of the group in full (every entry checked as always) and counts the others as holders of
the same contents. Reading raw lines is safe on a hostile drive: the text is bounded
(``MAX_MANIFEST_TEXT``, the line length) and only hashed. A manifest that cannot be read
this way is simply not in the group: decoding it in full names its damage as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Callable, Iterator

from core.engine.layout import LATEST_DIR, check_relative
from core.engine.manifest import FILE, MAX_PARTS
from core.engine.progress import CancelToken
from core.engine.readpool import Item
from core.errors import Cancelled, ManifestDamaged, PlugbackError

if TYPE_CHECKING:
    from core.engine.repo import BackupSet


def lines_digest(bset: "BackupSet", sid: str, seen: dict[str, str] | None = None) -> str:
    """The SHA-256 of snapshot ``sid``'s entry lines (header and trailer excluded), read as text;
    ManifestDamaged (a PlugbackError) if its trailer does not match them. ``seen`` gets both
    hashes: ``lines`` (this one) and ``all`` (of every byte before the trailer, as checked)."""
    digest = hashlib.sha256()
    with bset.open_manifest(sid) as reader:
        for block in reader.raw_blocks():
            digest.update(block)
        if seen is not None:
            seen.update(lines=digest.hexdigest(), all=reader.digest)
    return digest.hexdigest()


def same_as_newest(bset: "BackupSet", ids: list[str], cancel: CancelToken | None = None,
                   seen: dict[str, str] | None = None) -> set[int]:
    """The indexes in ``ids`` of the snapshots whose entry lines equal the last one's, the last
    one included; empty when no other snapshot does (or the last one cannot be read as text).
    ``seen``: the hashes of the last one's bytes as read (:func:`lines_digest`), when it was read:
    only when another snapshot's header totals are its own (else no snapshot can hold its lines:
    ``seen`` then gets ``unread``)."""
    if len(ids) < 2:
        return set()
    try:
        totals = bset.header(ids[-1]).totals
    except (PlugbackError, OSError):
        return set()   # damaged or unreadable: decoding it names why
    alike = []   # the snapshots whose header totals are the newest's: only they may hold its lines
    for index, sid in enumerate(ids[:-1]):
        if cancel is not None:
            cancel.check()
        try:
            if bset.header(sid).totals == totals:
                alike.append(index)
        except Cancelled:
            raise
        except (PlugbackError, OSError):
            continue   # not in the group: decoding it names its damage
    if not alike:
        if seen is not None:
            seen["unread"] = "1"
        return set()   # (the newest's text not read for nothing: ~0.05 s of CPU at 100,000 files)
    try:
        newest = lines_digest(bset, ids[-1], seen)
    except (PlugbackError, OSError):
        return set()
    same = {len(ids) - 1}
    for index in alike:
        if cancel is not None:
            cancel.check()
        try:
            if lines_digest(bset, ids[index]) == newest:
                same.add(index)
        except Cancelled:
            raise
        except (PlugbackError, OSError):
            continue
    return same if len(same) > 1 else set()


def file_items(bset: "BackupSet", sid: str, seen: dict[str, str] | None = None) -> Iterator[Item]:
    """Snapshot ``sid``'s files as ``Latest/`` checks (mirror path, parts, size, SHA-256), read from
    its lines with only the checks the reads need (a path inside ``Latest/``, bounded parts).

    For the ``Latest/`` checks that start before the manifest is known intact (verify_latest):
    what they find is used only once ``sid`` has been decoded in full, or shown to hold the
    lines of a snapshot that was. Anything else wrong with a line ends the iteration
    (ManifestDamaged), and so does a trailer that does not match. ``seen`` then gets the hash of
    every byte before the trailer (``all``, as :func:`lines_digest` names it): verify compares it
    with the recorded one when the newest's rows were taken from another read of it."""
    with bset.open_manifest(sid) as reader:
        for block in reader.raw_blocks():
            try:
                objs = json.loads(b"[" + block[:-1].replace(b"\n", b",") + b"]")
            except (ValueError, RecursionError):
                raise ManifestDamaged(path=reader.name, reason="a line is not valid JSON") from None
            for d in objs:
                if type(d) is not dict or d.get("type") != FILE:
                    continue
                mirror, parts, size, sha = d.get("mirror") or d.get("path"), d.get("parts") or 0, \
                    d.get("size") or 0, d.get("sha256")
                if type(mirror) is not str or type(parts) is not int or not 0 <= parts <= MAX_PARTS \
                        or type(size) is not int or type(sha) is not str:
                    raise ManifestDamaged(path=reader.name, reason="a file's entry is invalid")
                check_relative(mirror, LATEST_DIR)   # (as layout.latest_file does)
                yield mirror, parts, size, sha
        if seen is not None:
            seen["all"] = reader.digest


def proven_files(reader, expected: str | None, lines: str | None = None, held: Callable[[str], bool] | None = None,
                 others: list[int] | None = None) -> Iterator[tuple[str, int, str, int, str | None, str, int]]:
    """The files of a plain set's manifest whose bytes this computer wrote (``expected``: the hash
    its record of them keeps, core/engine/trust.py), straight from the lines: (object name, parts,
    SHA-256, size, obj, path, stored), as ``verify._Contents.add_manifest`` takes them from an
    ``Entry``. Or (``lines``) whose entry lines hash as those of a manifest proven so.

    Lines this computer's writer wrote are valid entries: decoding them would check nothing
    more. That is known only at the end: NotProven if the bytes read (all of them, header
    included, hashed as the trailer's hash is; or the entry lines) are not the recorded ones;
    anything else odd in them (no JSON, a field missing or of another type) raises too, as
    early as it is met. The caller takes nothing from an iteration that raised (it decodes
    the manifest in full). ``held``: only files whose content it may hold (``ObjectIndex.may_hold``)
    are yielded; the others are only counted in ``others`` (files, bytes)."""
    if expected is None and lines is None:
        raise NotProven(reader.name)
    digest = hashlib.sha256() if lines is not None else None
    for block in reader.raw_blocks():
        if digest is not None:
            digest.update(block)
        for d in json.loads(b"[" + block[:-1].replace(b"\n", b",") + b"]"):
            if d["type"] == FILE:
                sha = d["sha256"]
                if held is not None and others is not None and not held(sha):
                    others[0] += 1
                    others[1] += d.get("size") or 0
                    continue
                yield sha, d.get("parts") or 0, sha, d.get("size") or 0, d.get("obj"), d["path"], d.get("stored") or 0
    if (expected is not None and reader.digest != expected) or (digest is not None and digest.hexdigest() != lines):
        raise NotProven(reader.name)


class Repeats:
    """Snapshots whose entry lines are byte for byte those of the manifest added just before them
    (no-change backups of a snapshot other than the newest's lines; the newest's group is
    :func:`same_as_newest`'s): counted as holders of its contents (``verify._Contents.add_holders``)
    instead of decoded. As with the newest's group, identical lines of a manifest that was just
    decoded in full (every entry checked), or proven this computer's, are as valid as it; the repeat's own header is read
    and its trailer checked against its lines (``lines_digest``). A repeat whose
    header totals differ is not read twice; one that cannot be read as text is decoded (which
    names its damage)."""

    def __init__(self, bset: "BackupSet"):
        self.bset = bset
        self.last: tuple[int, str, tuple[int, int]] | None = None   # (index, id, (files, bytes))
        self.digests: dict[str, str] = {}

    def added(self, index: int, sid: str, counted: tuple[int, int], whole: bool = True) -> None:
        """Manifest ``sid`` (number ``index``) is the last whose rows went in: all of them (``whole``;
        then every row with ``last = index`` is one of its contents, and no other), or not."""
        self.last = (index, sid, counted) if whole else None
        self.digests = {k: v for k, v in self.digests.items() if k == sid}

    def same_as_last(self, sid: str) -> tuple[int, int, int] | None:
        """(the last manifest's number, files, bytes) when ``sid``'s entry lines are its lines."""
        if self.last is None:
            return None
        index, last_sid, (files, size) = self.last
        try:
            if self.bset.header(sid).totals != self.bset.header(last_sid).totals \
                    or self._digest(sid) != self._digest(last_sid):
                return None
        except Cancelled:
            raise
        except (PlugbackError, OSError):
            return None   # decoding it names its damage
        return index, files, size

    def _digest(self, sid: str) -> str:
        if sid not in self.digests:
            self.digests[sid] = lines_digest(self.bset, sid)
        return self.digests[sid]


class NotProven(Exception):
    """A manifest's bytes are not the ones this computer recorded writing (rawlines.proven_files)."""

