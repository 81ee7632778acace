"""The parent snapshot of a backup into a remote set: its manifest's stored bytes fetched while
the set unlocks, then read (checked) beside the scan (issue #13).

A backup into an existing set needs the newest snapshot's manifest (the parent: unchanged files
keep their objects). Its stored bytes need no key to download, only to decrypt, so
:class:`ParentAhead` lists ``snapshots/`` and downloads the newest manifest into a local file
(unlinked at once, at most ``MAX_MANIFEST_BYTES``) in a thread while the passphrase's scrypt
runs; it reads the remote only. Under the lock, the run lists ``snapshots/`` again (a backup
or a forget may have come between) and uses the early copy only when the newest id is still
the one fetched; otherwise (or when the early download failed) it reads the parent from the
remote as before. Either copy is decrypted and checked to its end before any entry of it is
trusted (:func:`intact_header`), and checked again as the pass reads it (:class:`ParentEntries`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from typing import IO, Iterator

from core.engine.manifest import DIR, MAX_MANIFEST_BYTES, Entry, Manifest, sort_key
from core.engine.remote.rset import RemoteSet, Unclosed, listed_snapshot_ids, manifest_blob
from core.engine.scan import ScanEntry
from core.engine.storage import Backend
from core.errors import DamagedSet, DriveFileDamaged

log = logging.getLogger(__name__)


class ParentAhead:
    """The newest manifest's stored bytes, downloaded in a thread started at once (no key, reads
    only). :meth:`relist` lists ``snapshots/`` again in a thread (under the lock, beside the
    run's other listings); :meth:`take` says the newest id listed then and, when it is the one
    fetched, the local copy (positioned at its start; the caller closes it)."""

    def __init__(self, backend: Backend):
        self._backend = backend
        self._fetched: str | None = None          # the snapshot id whose bytes ``_copy`` holds
        self._copy: IO[bytes] | None = None
        self._ids: list[str] | None = None
        self._listing: threading.Thread | None = None
        self._thread = threading.Thread(target=self._fetch, name="plugback-parent", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        copy = tempfile.TemporaryFile(prefix="plugback-parent-")
        try:
            ids = listed_snapshot_ids(self._backend)
            if not ids:
                copy.close()
                return
            size = 0
            gen = self._backend.get(manifest_blob(ids[-1]))
            try:
                for chunk in gen:
                    size += len(chunk)
                    if size > MAX_MANIFEST_BYTES:
                        raise DriveFileDamaged(path=manifest_blob(ids[-1]), reason="it is too large")
                    copy.write(chunk)
            finally:
                gen.close()
        except Exception as err:  # noqa: BLE001 - the run reads it again under the lock, and says what fails
            log.info("Could not fetch the parent manifest ahead: %s", err)
            copy.close()
            return
        self._copy, self._fetched = copy, ids[-1]

    def relist(self) -> None:
        """List ``snapshots/`` again (call under the lock), in a thread: :meth:`take` waits for it."""
        def listing() -> None:
            try:
                self._ids = listed_snapshot_ids(self._backend)
            except Exception as err:  # noqa: BLE001 - take() lists again in the run's thread, and raises
                log.info("Could not list the snapshots: %s", err)

        self._listing = threading.Thread(target=listing, name="plugback-snapshots", daemon=True)
        self._listing.start()

    def take(self, rset: RemoteSet) -> tuple[str | None, IO[bytes] | None]:
        """(the newest snapshot id, listed after :meth:`relist`; the early copy of its manifest or
        None). The listing becomes ``rset``'s (its snapshot ids are then known)."""
        if self._listing is not None:
            self._listing.join()
        self._thread.join()
        if self._ids is not None:
            rset._ids = list(self._ids)
        newest = rset.newest_id()
        copy, self._copy = self._copy, None
        if copy is not None and newest is not None and newest == self._fetched:
            copy.seek(0)
            return newest, copy
        if copy is not None:
            copy.close()
        return newest, None

    def close(self) -> None:
        self._thread.join()
        if self._listing is not None:
            self._listing.join()
        if self._copy is not None:
            self._copy.close()
            self._copy = None


def intact_header(rset: RemoteSet, snapshot_id: str | None, copy: IO[bytes], *,
                  fetched: bool = False) -> Manifest | None:
    """The parent's header when its whole manifest reads intact (its entries are then trusted:
    unchanged files keep their objects), its stored bytes in ``copy`` for the pass (read from
    the remote into it, or, ``fetched``, read from it: :class:`ParentAhead`'s); None for a first
    backup or a damaged newest manifest."""
    if snapshot_id is None:
        return None
    try:
        opened = (rset.open_manifest(snapshot_id, local=Unclosed(copy)) if fetched   # type: ignore[arg-type]
                  else rset.open_manifest(snapshot_id, tee=copy))
        with opened as reader:
            for _ in reader:
                pass
            return reader.manifest
    except DamagedSet:
        return None   # everything is hashed again; what the remote has is still skipped


class ParentEntries:
    """The parent snapshot's entries, walked beside the scan (both in manifest order), read from
    the local copy :func:`intact_header` made or checked (checked again as it is read)."""

    def __init__(self, rset: RemoteSet, snapshot_id: str | None, copy: IO[bytes]):
        if snapshot_id:
            copy.seek(0)
        self._reader = rset.open_manifest(snapshot_id, local=copy) if snapshot_id else None
        self._it: Iterator[Entry] = iter(self._reader) if self._reader else iter(())
        self._next = next(self._it, None)

    def match(self, se: ScanEntry) -> Entry | None:
        """The parent's entry at ``se``'s path when it has the same type, else None."""
        key = sort_key(se.path)
        while self._next is not None and sort_key(self._next.path) < key:
            self._next = next(self._it, None)
        if self._next is not None and self._next.path == se.path and self._next.type == se.type:
            return self._next if se.type != DIR else None
        return None

    def __enter__(self) -> "ParentEntries":
        return self

    def __exit__(self, *_) -> None:
        if self._reader is not None:
            self._reader.close()
