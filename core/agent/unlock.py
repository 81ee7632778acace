"""Encrypted sets in the window: the agent's unlocked keys for this session, and the Unlock command.

Opening an encrypted set runs scrypt (128 MiB, a good fraction of a second);
before this every browse request of the window did it again (issue #11). The
agent keeps the keys of each set it has opened in memory, by set id, for as
long as it runs: never written anywhere, gone when the agent quits.

Unlock (IPC ``unlock``, issue #15): the window sends a passphrase or a
recovery key for a set that could not be opened. What works is kept in this
cache; with ``remember`` a passphrase is also stored in the OS keyring under
the set's id (so unattended backups open the set). Without a keyring the
passphrase is stored nowhere: the set stays open until the agent quits, and
the window asks again after that (docs/settings-window.md, Decisions, says why).
A remote job's set (issue #13) is unlocked, and its recovery key shown, the same way: the
agent opens it through rclone (:func:`unlock_remote`, :func:`remote_recovery_key`).
"""

from __future__ import annotations

import hmac
import threading

from core.agent import keys
from core.errors import KeyringUnavailable, UsageError


class KeyCache:
    """Unlocked set keys by set id, in memory only (thread-safe)."""

    def __init__(self):
        self._keys: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, set_id: str):
        with self._lock:
            return self._keys.get(set_id.lower())

    def put(self, set_id: str, set_keys) -> None:
        with self._lock:
            self._keys[set_id.lower()] = set_keys

    def __contains__(self, set_id: str) -> bool:
        return self.get(set_id) is not None

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


def cache_of(agent) -> KeyCache:
    """The agent's cache (one per agent object, made when first needed)."""
    cache = getattr(agent, "unlocked_keys", None)
    if cache is None:
        cache = agent.unlocked_keys = KeyCache()
    return cache


def cached_unlocker(cache: KeyCache, **options):
    """An engine unlocker that answers from ``cache`` first, and keeps what the usual sources
    (``core.agent.keys``: keyring, PLUGBACK_PASSPHRASE...) opened."""

    def unlock(enc: dict, set_id: str):
        found = cache.get(set_id)
        # A set id is only a name on a drive: the cached keys must also be this set's keys.
        if found is not None and not hmac.compare_digest(found.key_check, str(enc.get("key_check", ""))):
            found = None
        if found is None:
            found = keys.unlock_set(enc, set_id, **options)[0]
            cache.put(set_id, found)
        return found

    return unlock


def keyring_available() -> bool:
    """Whether an OS keyring can hold passphrases here."""
    try:
        keys._backend()
    except KeyringUnavailable:
        return False
    return True


def _chosen(kind: str, secret: str) -> keys.Secret:
    """What the window sent, as a :class:`~core.agent.keys.Secret` (a recovery key's spaces trimmed)."""
    if kind not in (keys.PASSPHRASE, keys.RECOVERY_KEY):
        raise UsageError("Say whether this is a passphrase or a recovery key.")
    return keys.Secret(kind, secret.strip() if kind == keys.RECOVERY_KEY else secret, "window")


def _unlocked(cache: KeyCache, set_id: str, set_keys, kind: str, remember: bool, warnings: list[str]) -> dict:
    """Keep ``set_keys`` for the session; the reply of ``unlock``."""
    cache.put(set_id, set_keys)
    remembered = remember and kind == keys.PASSPHRASE and not warnings
    return {"set_id": set_id, "remembered": remembered, "keyring": keyring_available(),
            "warning": warnings[0] if warnings else None}


def unlock(cache: KeyCache, root, kind: str, secret: str, remember: bool) -> dict:
    """Open the encrypted set at ``root`` with ``secret``; keep its keys for the session.

    ``kind``: ``passphrase`` or ``recovery_key``. Raises WrongPassphrase,
    WrongRecoveryKey, BadRecoveryKey (the window shows the message and asks again).
    Returns ``{set_id, remembered, keyring}``.
    """
    from core.agent.adopt import open_locked

    chosen = _chosen(kind, secret)
    bset = open_locked(root)
    enc = bset.meta.get("encryption")
    if not enc:
        return {"set_id": bset.set_id, "remembered": False, "keyring": keyring_available()}
    warnings: list[str] = []
    set_keys, _ = keys.unlock_set(enc, bset.set_id, secret=chosen, remember=remember, warn=warnings.append)
    return _unlocked(cache, bset.set_id, set_keys, kind, remember, warnings)


def unlock_remote(cache: KeyCache, spec: str, kind: str, secret: str, remember: bool) -> dict:
    """:func:`unlock` for the remote set at ``spec`` (``rclone:REMOTE:PATH``, issue #13): the agent opens
    it through rclone (the window runs none), with ``secret`` only. The same errors, plus the
    remote's own (unreachable, unknown remote, not a set), each with its one-line message."""
    from core.agent.remote_jobs import open_remote

    chosen = _chosen(kind, secret)
    warnings: list[str] = []

    def with_secret(enc: dict, set_id: str):
        return keys.unlock_set(enc, set_id, secret=chosen, remember=remember, warn=warnings.append)[0]

    with open_remote(spec, with_secret, interactive=True) as rset:
        return _unlocked(cache, rset.set_id, rset.keys, kind, remember, warnings)


def recovery_key(cache: KeyCache, root) -> dict:
    """The recovery key of the encrypted set at ``root``, opened this session (or by the keyring)."""
    from core.engine import crypto
    from core.engine.repo import BackupSet

    bset = BackupSet.open(root, cached_unlocker(cache))
    if bset.keys is None:
        raise UsageError("This backup is not encrypted: it has no recovery key.")
    return {"set_id": bset.set_id, "recovery_key": crypto.recovery_key(bset.keys)}


def remote_recovery_key(cache: KeyCache, spec: str) -> dict:
    """:func:`recovery_key` of the remote set at ``spec`` (opened this session, or by the keyring)."""
    from core.agent.remote_jobs import open_remote
    from core.engine import crypto

    with open_remote(spec, cached_unlocker(cache), interactive=True) as rset:
        return {"set_id": rset.set_id, "recovery_key": crypto.recovery_key(rset.keys)}
