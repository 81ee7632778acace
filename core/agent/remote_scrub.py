"""A slice of a rolling check of a remote set (issue #13): the remote counterpart of
core/engine/scrub.py, built on the engine's remote readers and core/engine/remote/check.py.

A pass has two phases, kept in the same :class:`~core.engine.pass_cursor.Cursor` as a drive's:

* ``objects`` (only when the user chose to read cloud backups back, the ``read_back_remote``
  preference: it downloads the whole set once a pass): every stored blob in name order,
  ``objects/…`` then ``packs/…``, read whole. A standalone object is decrypted (every chunk
  authenticated) and checked against its keyed name; a pack is checked against its name (its
  SHA-256) and each object its index lists is decrypted and checked the same way; a pack no
  index names (a cut run's, maybe torn) is skipped, not called damage. The listing
  is the storage's, sorted by name, so a slice skips to its cursor without holding the names.
* ``check``: the remote quick verify (``core.engine.remote.check.verify``): the listing and
  every manifest, read to its checked end; every content a snapshot names is there with the
  size its encrypted copy must have. It costs a listing and the manifests, not the content.

Nothing is changed here: the caller decides what to do with the damage (core/agent/remote_rolling.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from core.engine import crypto
from core.engine.pass_cursor import Cursor
from core.engine.progress import CancelToken, Progress, ProgressCallback, no_progress
from core.engine.scrub import MAX_DAMAGE, Damage, SliceResult
from core.errors import BlobNotFound, Cancelled, DamagedSet

if TYPE_CHECKING:
    from core.engine.remote.rset import RemoteSet

OBJECTS, PACKS = "objects", "packs"
_HEX2 = [f"{i:02x}" for i in range(256)]   # the subfolders of objects/ and packs/ (docs/format.md)


def stored_bytes(rset: "RemoteSet", cancel: CancelToken | None = None) -> int | None:
    """What an ``objects`` phase reads: the size of every object and pack blob (None: cancelled)."""
    total = 0
    for _blob, size in _blobs(rset, ""):
        if cancel is not None and cancel.cancelled:
            return None
        total += size
    return total


def scrub_slice(rset: "RemoteSet", cursor: Cursor, budget: int | None, *, read_back: bool,
                cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> SliceResult:
    """Go on from ``cursor`` until ``budget`` bytes were read (None: to the pass's end) or ``cancel``
    is set. Without ``read_back`` the pass is the ``check`` phase only. A remote that fails raises its
    StorageError (the caller tries again after the next backup)."""
    cancel = cancel or CancelToken()
    result = SliceResult(cursor)
    if result.cursor.phase not in (OBJECTS, "check"):   # a drive's "latest" phase: none here
        result.cursor = Cursor("check")
    try:
        if result.cursor.phase == OBJECTS:
            if read_back:
                _objects(rset, result, budget, cancel, progress)
            if len(result.damaged) >= MAX_DAMAGE or (budget is not None and result.bytes_read >= budget):
                return result
            result.cursor = Cursor("check")
        _check(rset, result, cancel, progress)
        result.cursor = Cursor("done")
    except Cancelled:
        result.stopped = True
    return result


def _blobs(rset: "RemoteSet", after: str) -> Iterator[tuple[str, int]]:
    """Object and pack blobs named after ``after``, in name order (the storage lists sorted).

    A folder the cursor has not reached is listed whole (the storage walks the subfolders that
    exist); the folder the cursor is in is listed a subfolder (``objects/ab``) at a time from the
    cursor's on, so a slice in the middle of a big set's pass asks only for the part it reads."""
    for folder in (OBJECTS, PACKS):
        if after < folder:
            yield from _valid(folder, rset.backend.list(folder), after)
        elif after.startswith(folder + "/"):
            for prefix in _HEX2:
                sub = f"{folder}/{prefix}"
                if f"{sub}/g" > after:   # not every name there ("sub/<64 hex>") sorts before the cursor
                    yield from _valid(folder, rset.backend.list(sub), after)


def _valid(folder: str, listing, after: str) -> Iterator[tuple[str, int]]:
    """The object or pack blobs of ``listing`` named after ``after`` (anything else is skipped)."""
    from core.engine.manifest import is_hex64
    from core.engine.remote.packs import pack_blob
    from core.engine.remote.rset import object_blob

    for info in listing:
        name = info.name.rpartition("/")[2]
        if info.name > after and is_hex64(name) and \
                (object_blob(name) if folder == OBJECTS else pack_blob(name)) == info.name:
            yield info.name, info.size


def _objects(rset: "RemoteSet", result: SliceResult, budget: int | None, cancel: CancelToken,
             progress: ProgressCallback) -> None:
    for blob, size in _blobs(rset, result.cursor.key):
        cancel.check()
        try:
            if blob.startswith(PACKS):
                _check_pack(rset, blob, size)
            else:
                _check_object(rset, blob, cancel)
        except BlobNotFound:
            pass   # deleted since the listing (a prune): nothing to check
        except DamagedSet as err:
            result.damaged.append(Damage(blob, err.message, name=blob.rpartition("/")[2]))
        result.cursor = Cursor(OBJECTS, blob)
        result.items += 1
        result.bytes_read += size
        progress(Progress("scrub", result.items, 0, result.bytes_read, 0, ""))
        if len(result.damaged) >= MAX_DAMAGE or (budget is not None and result.bytes_read >= budget):
            return


class _Stream:
    """A blob as a readable stream for the decrypting reader; cancel is looked at for every chunk."""

    def __init__(self, rset: "RemoteSet", blob: str, cancel: CancelToken):
        self._chunks = rset.backend.get(blob)
        self._buf = bytearray()
        self._cancel = cancel

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            self._cancel.check()
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        cut = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:cut])
        del self._buf[:cut]
        return out

    def close(self) -> None:
        self._chunks.close()


def _check_object(rset: "RemoteSet", blob: str, cancel: CancelToken) -> None:
    """Decrypt a standalone object (each chunk authenticated) and check its keyed name."""
    stream = _Stream(rset, blob, cancel)
    try:
        reader = crypto.DecryptingReader(stream, rset.keys, name=blob, expected_name=blob.rpartition("/")[2])
        while reader.read(1 << 20):
            pass
    finally:
        stream.close()


def _check_pack(rset: "RemoteSet", blob: str, size: int) -> None:
    """A pack read whole: its SHA-256 is its name, and every object its index lists decrypts to its name."""
    from core.engine.remote.packs import read_pack
    from core.engine.remote.rset import decrypt_small

    pack = blob.rpartition("/")[2]
    if rset.packs.size_of(pack) is None:
        # No index names it: what a cut run left (written in place, so maybe torn). Garbage by the
        # format's rules, not damage: nothing can name its objects, and the next backup deletes it.
        return
    data = read_pack(rset, pack, size)
    for name in rset.packs.names_in(pack):
        found = rset.packs.find(name)
        if found is not None and found[0] == pack:
            _, offset, length = found
            decrypt_small(rset.keys, data[offset:offset + length], name=blob, expected_name=name)


def _check(rset: "RemoteSet", result: SliceResult, cancel: CancelToken, progress: ProgressCallback) -> None:
    from core.engine.remote.check import verify
    from core.engine.verify import VerifyOptions

    def watch(p: Progress) -> None:
        progress(Progress("check", p.files_done, p.files_total, result.bytes_read, 0, p.current))

    found = verify(rset, VerifyOptions(read_all=False, progress=watch, cancel=cancel))
    result.notices.extend(found.notices)
    result.damaged.extend(Damage(what, why) for what, why in found.damaged)
