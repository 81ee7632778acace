"""The engine by path, for tests: open (or create) the set, then call the engine's own API.

The engine takes an opened ``BackupSet`` and an options object; these helpers keep
engine tests short, the way the CLI's wrappers do for users::

    backup_path(set_path, [src], workers=1)            # creates the set if new
    backup_path(set_path, [src], passphrase="pw")      # ... encrypted
    restore_path(set_path, out, snapshot=first, unlock=unlock)
    verify_path(set_path, read_all=True)

Keyword options are the fields of BackupOptions / RestoreOptions / VerifyOptions.
"""

from __future__ import annotations

from pathlib import Path

from core.engine.backup import BackupOptions, BackupResult, backup, check_sources
from core.engine.fs import FileSystem
from core.engine.progress import Clock
from core.engine.repo import BackupSet, Unlocker
from core.engine.restore import RestoreOptions, RestoreResult, restore
from core.engine.retention import ForgetResult, RetentionPolicy, forget
from core.engine.verify import VerifyOptions, VerifyResult, verify


def open_set(set_path, unlock: Unlocker | None = None, fs: FileSystem | None = None) -> BackupSet:
    return BackupSet.open(Path(set_path), unlock, fs)


def backup_path(set_path, sources, *, unlock: Unlocker | None = None, passphrase: str | None = None,
                fs: FileSystem | None = None, parents: bool = False, **options) -> BackupResult:
    """Back up into the set at ``set_path``, creating it first if new (encrypted with ``passphrase``)."""
    root = Path(set_path)
    opts = BackupOptions(**options)
    if BackupSet.exists(root):
        bset = BackupSet.open(root, unlock, fs)
    else:
        check_sources(sources, root)
        bset = BackupSet.create(root, opts.clock.now(), job=opts.job, host=opts.host, passphrase=passphrase,
                                fs=fs, parents=parents)
    return backup(bset, sources, opts)


def backed_up_tree(tmp_path: Path, tree: dict, job: str = "Docs") -> tuple[Path, Path]:
    """``tree`` (tests.support.trees.make_tree) made in ``tmp_path/Docs`` and backed up once to
    ``tmp_path/set``: (the source, the set)."""
    from tests.support.trees import make_tree

    src = make_tree(tmp_path / "Docs", tree)
    set_path = tmp_path / "set"
    backup_path(set_path, [src], job=job)
    return src, set_path


def restore_path(set_path, target=None, *, unlock: Unlocker | None = None, **options) -> RestoreResult:
    return restore(open_set(set_path, unlock), target, RestoreOptions(**options))


def verify_path(set_path, *, unlock: Unlocker | None = None, **options) -> VerifyResult:
    return verify(open_set(set_path, unlock), VerifyOptions(**options))


def forget_path(set_path, policy: RetentionPolicy, *, unlock: Unlocker | None = None,
                clock: Clock | None = None, **options) -> ForgetResult:
    return forget(open_set(set_path, unlock), policy, clock=clock, **options)


def sealed_object(worker, folder: Path, name: str, data: bytes) -> tuple[str, str, str, int]:
    """``data`` written to ``folder/name``, sealed by the seal worker ``worker``
    (core.engine.sealpool.Worker) and renamed to ``folder/objects/<its name>``:
    (path, object name, SHA-256, size)."""
    import os

    src = Path(folder) / name
    src.write_bytes(data)
    st = src.stat()
    tmp, sha, obj, size, _, _ = worker.batch([(str(src), st.st_size, st.st_mtime_ns)])[0]
    dest = Path(folder) / "objects" / obj
    dest.parent.mkdir(exist_ok=True)
    os.rename(tmp, dest)
    return str(dest), obj, sha, size
