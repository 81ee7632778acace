"""Key commands for encrypted sets: ``plugback key export`` and ``plugback key passwd``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.cli import remote_cmds
from core.cli.backup_cmds import add_unlock_options, unlocker_from
from core.cli.render import ask_new_passphrase, warn
from core.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from core.engine.crypto import SetKeys
    from core.engine.repo import BackupSet


def register(sub) -> None:
    key = sub.add_parser("key", help="recovery key and passphrase of an encrypted set")
    ksub = key.add_subparsers(dest="key_command", metavar="ACTION")
    ksub.required = True

    p = ksub.add_parser("export", help="print the recovery key (opens the set without the passphrase)",
                        description="Print the set's recovery key. Keep it on paper, away from the drive: "
                                    "anyone with it can read the backups.")
    p.add_argument("set", metavar="SET")
    add_unlock_options(p)
    p.set_defaults(func=cmd_export)

    p = ksub.add_parser("passwd", help="change the passphrase (data is not re-encrypted)",
                        description="Change the passphrase. The new one comes from "
                                    "PLUGBACK_NEW_PASSPHRASE or a prompt. The recovery key stays valid.")
    p.add_argument("set", metavar="SET")
    p.add_argument("--remember", action="store_true", help="store the new passphrase in the system keyring")
    add_unlock_options(p)
    p.set_defaults(func=cmd_passwd)


def _open_encrypted(args) -> tuple[BackupSet, SetKeys]:
    from core.engine.repo import BackupSet  # (the engine loads only when a command runs)

    if remote_cmds.is_remote(args.set):   # a remote set is always encrypted
        rset = remote_cmds.open_remote(args.set, unlocker_from(args))
        return rset, rset.keys   # type: ignore[return-value]  # reads and writes its meta like a BackupSet
    bset = BackupSet.open(args.set, unlocker_from(args))
    if bset.keys is None:
        raise UsageError(f"{args.set} is not encrypted: it has no passphrase or recovery key.")
    return bset, bset.keys


def cmd_export(args) -> int:
    from core.engine import crypto

    _, set_keys = _open_encrypted(args)
    print(crypto.recovery_key(set_keys))
    return EXIT_OK


def cmd_passwd(args) -> int:
    from core.agent import keys
    from core.engine import crypto

    bset, set_keys = _open_encrypted(args)
    new = ask_new_passphrase("this backup set", env_var="PLUGBACK_NEW_PASSPHRASE")
    with _writer_lock(args, bset):
        bset.meta["encryption"] = crypto.rewrap(bset.meta["encryption"], set_keys, new)
        bset.write_meta()   # one atomic write: the old passphrase works until the new one does
    try:
        if args.remember:
            keys.store_passphrase(bset.set_id, new)
        elif keys.stored_passphrase(bset.set_id) is not None:
            keys.store_passphrase(bset.set_id, new)   # keep the keyring's copy in step
    except Exception as err:  # noqa: BLE001 - no keyring: the change itself succeeded
        warn(str(err))
    print("Passphrase changed. The recovery key is unchanged.")
    return EXIT_OK


def _writer_lock(args, bset):
    """The set's lock for rewriting plugback.json: its lock file, or a remote set's lock blob."""
    from core.engine.lock import SetLock
    from core.engine.progress import Clock

    if remote_cmds.is_remote(args.set):
        from core.engine.storage.lock import RemoteLock

        return RemoteLock(bset.backend, Clock(), purpose="change passphrase")
    return SetLock(bset.layout.lock, Clock(), purpose="change passphrase")
