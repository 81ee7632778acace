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

    return RemoteSet.open_closing(open_backend(spec), unlock)


def backup_set(spec: str, sources, unlock, new_passphrase, backend=None,
               guess: str | None = None) -> tuple["RemoteSet", str | None]:
    """The remote set a backup goes to: opened, or created (encrypted) when the remote folder is
    empty or new: (the set, the new set's passphrase or None). ``new_passphrase()`` asks for one.
    A new set is finished in the background (RemoteSet.create_started; the backup waits for it
    before its first write); an existing one is unlocked by the backup, its scan beside the scrypt
    (RemoteSet.open_started; ``guess``: the passphrase the unlocker will likely try, whose scrypt
    starts at once). ``backend``: the set's backend, opened already."""
    from core.engine.progress import Clock
    from core.engine.remote.rset import RemoteSet
    from core.engine.scan import plan_sources
    from core.engine.storage import open_backend

    backend = backend or open_backend(spec)
    try:
        if RemoteSet.exists(backend):
            # Unlocked by the backup, with its scan and reads beside the scrypt (core/engine/remote/ahead.py).
            rset = RemoteSet.open_started(backend, unlock, guess)
            if guess:
                _load_keyring()
            return rset, None
        plan_sources(sources)   # a typo in a source leaves no empty set behind
        passphrase = new_passphrase()
        return RemoteSet.create_started(backend, Clock().now(), passphrase), passphrase
    except BaseException:
        backend.close()
        raise


def cmd_backup(args, unlock, report) -> int:
    """``plugback backup SRC... --to rclone:REMOTE:PATH``; ``report(args, rset, result, None,
    passphrase)`` prints the outcome. rclone starts (in a thread) before the engine is imported,
    so its start-up and the imports overlap (docs/performance.md, "Remote sets, third pass")."""
    from concurrent.futures import ThreadPoolExecutor

    from core.cli.render import ProgressBar, ask_new_passphrase
    from core.engine.storage import open_backend
    from core.errors import UsageError

    if args.make_room:
        raise UsageError("--make-room is for sets on a drive; a remote set is thinned with "
                         "'plugback forget SET --keep-last N --prune'.")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugback-open") as pool:
        opening = pool.submit(open_backend, args.to)
        from core.engine.backup_options import BackupOptions
        from core.engine.remote.backup import backup

        rset, passphrase = backup_set(args.to, args.sources, unlock, lambda: ask_new_passphrase("this backup set"),
                                      backend=opening.result(), guess=_likely_passphrase(args))
    try:
        bar = ProgressBar(enabled=None if not args.json else False)
        options = BackupOptions(excludes=args.exclude, rehash=args.rehash, verify=not args.no_verify,
                                progress=bar)
        try:
            result = backup(rset, args.sources, options)
        finally:
            bar.done()
        return report(args, rset, result, None, passphrase)
    finally:
        rset.close()


#: core.agent.keys.ENV_PASSPHRASE / ENV_RECOVERY_KEY, spelled here so that the passphrase's scrypt can
#: start before the keyring is loaded (tests/core/engine/remote/test_unlock_overlap.py keeps them equal).
ENV_PASSPHRASE = "PLUGBACK_PASSPHRASE"
ENV_RECOVERY_KEY = "PLUGBACK_RECOVERY_KEY"


def _likely_passphrase(args) -> str | None:
    """The passphrase the unlocker tries unless the keyring has one (core.agent.keys.candidate_secrets):
    ``PLUGBACK_PASSPHRASE``, when no recovery key is given (that would be tried instead)."""
    import os

    if getattr(args, "recovery_key_file", None) or os.environ.get(ENV_RECOVERY_KEY):
        return None
    return os.environ.get(ENV_PASSPHRASE) or None


def _load_keyring() -> None:
    """Load the keyring and its backend now, while the guessed passphrase's scrypt runs, rather than in
    the unlock beside the backup's read-ahead thread, which starves those imports of the GIL (the
    unlock started 0.05-0.5 s later with it: docs/performance.md, "#13: a backup into an existing set")."""
    import keyring

    try:
        keyring.get_keyring()
    except Exception:  # noqa: BLE001 - a broken backend is the unlock's to report (core.agent.keys._backend)
        pass
