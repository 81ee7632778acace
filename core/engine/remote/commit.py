"""A backup's manifest: encrypted, checked and uploaded while the last pack is stored, named after
it (issue #13).

The manifest is a backup's last write: the snapshot exists once it is under its name, so it may
appear there only when every object it names is stored and was read back (the last pack and its
index too). Its bytes need none of that: :class:`StagedManifest` encrypts them into a local file
(unlinked at once), checks them there as a read-back would (decrypted, every entry parsed, the
trailer checked) and, where the backend stages (``storage.base.Stages``), uploads them to ``tmp/``
and reads them back there while the last pack is still being put and read back: they must be the
very bytes checked (length and SHA-256), so the read-back proves what the name will hold as
decrypting it again would. :meth:`StagedManifest.commit`, called only once the packer has stored
everything, moves them onto the name (the server's rename: no bytes written, so nothing more to
read back), or, where the backend does not stage, puts them then and reads them back the same way.
What a cut run left in ``tmp/`` is no snapshot (nothing lists ``tmp/``); the next run clears it
under the lock.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import Generator, Iterator

from core.engine import manifest as mf
from core.engine import manifest_io as mio
from core.engine.remote.rset import RemoteSet, Unclosed, encrypted_chunks, manifest_blob
from core.engine.storage.base import Staged, can_stage
from core.errors import DamagedSet, UsageError

log = logging.getLogger(__name__)
READ_BLOCK = 1 << 20


class StagedManifest:
    """The manifest ``writer`` collected (header fields from ``m``), encrypted into a local file,
    checked, and staged in ``tmp/`` where the backend stages; :meth:`commit` names it, :meth:`close`
    (or ``with``) drops what was not committed."""

    def __init__(self, rset: RemoteSet, writer: mio.ManifestWriter, m: mf.Manifest):
        self._rset = rset
        self.snapshot_id = m.snapshot_id
        self.blob = manifest_blob(m.snapshot_id)
        self._spool = tempfile.TemporaryFile(prefix="plugback-manifest-")
        self._staged: Staged | None = None
        self._sha = hashlib.sha256()
        try:
            self._size = mio.write_chunks(self._hashed(encrypted_chunks(rset.keys, writer.chunks(m))), self._spool)
            if self._size > mf.MAX_MANIFEST_BYTES:
                raise UsageError(f"This snapshot's list of files is larger than {mf.MAX_MANIFEST_BYTES} bytes.")
            self._check()
            if can_stage(rset.backend):
                self._staged = rset.backend.stage(self.blob, self._chunks)   # type: ignore[attr-defined]
                self._read_back(rset.backend.read_staged(self._staged))      # type: ignore[attr-defined]
        except BaseException:
            self.close()
            raise

    def _hashed(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._sha.update(chunk)
            yield chunk

    def _chunks(self) -> Iterator[bytes]:
        """The stored bytes from the start (a retried put or stage sends them again)."""
        self._spool.seek(0)
        while block := self._spool.read(READ_BLOCK):
            yield block

    def _check(self) -> None:
        """Read the local copy as a restore reads the stored one: decrypted, every entry, the trailer."""
        self._spool.seek(0)
        with self._rset.open_manifest(self.snapshot_id, local=Unclosed(self._spool)) as reader:   # type: ignore[arg-type]
            for _ in reader:
                pass

    def commit(self) -> None:
        """Name the manifest (only once everything it names is stored and read back; its staged
        bytes were read back already, else they are read back once put): the snapshot exists from
        here on."""
        backend = self._rset.backend
        if self._staged is not None:
            staged, self._staged = self._staged, None
            backend.commit(staged)      # type: ignore[attr-defined]
            self._rset.forget_cached()
        else:
            backend.put(self.blob, self._chunks)
            self._rset.forget_cached()
            self._read_back(backend.get(self.blob))

    def _read_back(self, gen: Generator[bytes, None, None]) -> None:
        """The stored bytes (``gen``, closed here) must be the very bytes checked."""
        sha, size = hashlib.sha256(), 0
        try:
            for chunk in gen:
                size += len(chunk)
                if size > self._size:
                    break
                sha.update(chunk)
        finally:
            gen.close()
        if size != self._size or sha.digest() != self._sha.digest():
            raise DamagedSet(what=f"{self.blob}: the remote does not hold what was stored for this name "
                                  "(read back different)")

    def close(self) -> None:
        """Remove the upload from ``tmp/`` when it was not committed (best effort: the next run
        clears ``tmp/`` under the lock anyway), and the local copy."""
        staged, self._staged = self._staged, None
        if staged is not None:
            try:
                self._rset.backend.discard(staged)    # type: ignore[attr-defined]
            except Exception as err:  # noqa: BLE001 - the run's own failure is the one to report
                log.info("Could not remove the upload of %s from tmp/: %s", staged.name, err)
        self._spool.close()

    def __enter__(self) -> "StagedManifest":
        return self

    def __exit__(self, *_) -> None:
        self.close()
