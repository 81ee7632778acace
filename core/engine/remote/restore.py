"""Restoring from a remote set: core/engine/restore.py's restore, reading objects from the remote.

The local restore does everything that matters (two passes over the manifest, path
safety, conflicts, temporary names renamed into place only when the SHA-256 matches);
:class:`RemoteSet` answers its questions about snapshots and content the way a local
encrypted set does, with content streamed from the remote and decrypted as it comes.
The remote's lock keeps a prune from deleting objects while they are read.
"""

from __future__ import annotations

from typing import cast

from core.engine import restore as local_restore
from core.engine.remote.rset import RemoteSet
from core.engine.repo import BackupSet
from core.engine.restore import RestoreOptions, RestoreResult
from core.engine.storage.lock import RemoteLock
from core.errors import SetLocked

LOCK_POLL = 2.0     # seconds between tries while another run holds the set


def restore(rset: RemoteSet, target, options: RestoreOptions | None = None) -> RestoreResult:
    """Restore from ``rset`` into ``target`` (see core.engine.restore.restore)."""
    options = options or RestoreOptions()
    with _locked(rset, options):
        # The local restore's body without its file lock (a remote set has no lock file).
        return local_restore._restore(cast(BackupSet, rset), target, options)


def _locked(rset: RemoteSet, options: RestoreOptions) -> RemoteLock:
    """The set's lock, waited for up to ``options.lock_wait`` seconds (telling ``on_lock_wait`` once)."""
    lock = RemoteLock(rset.backend, options.clock, purpose="restore")
    deadline = options.clock.monotonic() + options.lock_wait
    told = False
    while True:
        try:
            return lock.acquire()
        except SetLocked:
            if options.clock.monotonic() >= deadline:
                raise
            if not told and options.on_lock_wait is not None:
                options.on_lock_wait(lock.blocked_by or {})
                told = True
        options.cancel.check()
        options.clock.sleep(LOCK_POLL)
