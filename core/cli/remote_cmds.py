"""The command line's side of remote sets (``rclone:REMOTE:PATH``, issue #13).

Every command that takes a SET resolves it here when it is a remote spec: the
backend comes from the user's own rclone configuration, the set is always
encrypted (the passphrase comes as for ``--encrypt``: keyring, PLUGBACK_PASSPHRASE,
recovery key or the prompt), and the engine work is core/engine/remote's.
rclone's troubles arrive as core.errors types (missing or too old rclone, unknown
remote, refused login, full remote), which ``plugback`` prints as one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.engine.remote.rset import RemoteSet

#: core.engine.storage.rclone.PREFIX, spelled here so that a command on a folder does not load the
#: storage package (http.client, ssl: ~0.1 s, issue #11); tests/core/cli/test_lazy_imports.py keeps them equal.
REMOTE_PREFIX = "rclone:"


def is_remote(spec: object) -> bool:
    """Whether a SET argument names a remote set."""
    return isinstance(spec, str) and spec.startswith(REMOTE_PREFIX)


def open_remote(spec: str, unlock) -> "RemoteSet":
    """The remote set at ``spec``, opened (NotASet when there is none there)."""
    from core.engine.remote.rset import RemoteSet
    from core.engine.storage import open_backend

    backend = open_backend(spec)
    try:
        return RemoteSet.open(backend, unlock)
    except BaseException:
        backend.close()
        raise


def backup_set(spec: str, sources, unlock, new_passphrase) -> tuple["RemoteSet", str | None]:
    """The remote set a backup goes to: opened, or created (encrypted) when the remote folder is
    empty or new: (the set, the new set's passphrase or None). ``new_passphrase()`` asks for one."""
    from core.engine.progress import Clock
    from core.engine.remote.rset import RemoteSet
    from core.engine.scan import plan_sources
    from core.engine.storage import open_backend

    backend = open_backend(spec)
    try:
        if RemoteSet.exists(backend):
            return RemoteSet.open(backend, unlock), None
        plan_sources(sources)   # a typo in a source leaves no empty set behind
        passphrase = new_passphrase()
        return RemoteSet.create(backend, Clock().now(), passphrase), passphrase
    except BaseException:
        backend.close()
        raise
