"""Where the secret that opens an encrypted set comes from.

A :class:`Secret` is a passphrase or a recovery key. The CLI, the tray and the
engine ask this module in one order (the first that exists wins):

1. a recovery key from ``--recovery-key-file FILE`` or ``PLUGBACK_RECOVERY_KEY``
   (explicit: if it is wrong, that is an error, nothing else is tried);
2. the passphrase in the OS keyring (service ``plugback``, username = the set_id);
3. ``PLUGBACK_PASSPHRASE``;
4. a prompt callback from the caller (the CLI passes a getpass-based one, the
   tray none, so unattended runs never block).

A stale keyring or environment passphrase (the passphrase was changed
elsewhere) is reported through ``warn`` and the next source is tried.

The keyring backend is looked up at each call (``keyring.get_keyring()``), so
tests and the app can set one with ``keyring.set_keyring``. No backend, or the
"fail" backend, becomes ``KeyringUnavailable`` (or a warning while resolving),
never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import keyring
import keyring.backends.fail
import keyring.errors

from core.engine import crypto
from core.errors import KeyringUnavailable, PassphraseNeeded, UsageError, WrongPassphrase, WrongRecoveryKey

SERVICE = "plugback"
ENV_PASSPHRASE = "PLUGBACK_PASSPHRASE"
ENV_RECOVERY_KEY = "PLUGBACK_RECOVERY_KEY"

PASSPHRASE = "passphrase"
RECOVERY_KEY = "recovery_key"

Prompt = Callable[[str], "str | None"]
"""Asks the user; gets a message, returns the typed text, or None / "" when they give up."""
Warn = Callable[[str], None]
"""Receives a message the caller may show (no keyring, a stale stored passphrase)."""


@dataclass(frozen=True)
class Secret:
    """A passphrase or a recovery key, and where it came from (for messages)."""

    kind: str
    value: str = field(repr=False)
    source: str = "argument"

    @classmethod
    def passphrase(cls, text: str, source: str = "argument") -> "Secret":
        return cls(PASSPHRASE, text, source)

    @classmethod
    def recovery_key(cls, text: str, source: str = "argument") -> "Secret":
        return cls(RECOVERY_KEY, text, source)

    @property
    def is_recovery_key(self) -> bool:
        return self.kind == RECOVERY_KEY


def _ignore(_: str) -> None:
    """The default ``warn``: drops the message."""


# --- keyring -----------------------------------------------------------------------------


def _backend():
    """The keyring backend in use now, or KeyringUnavailable when there is none."""
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 - a broken backend module must not take the app down
        raise KeyringUnavailable(reason=f"the keyring could not start: {exc}") from None
    if isinstance(backend, keyring.backends.fail.Keyring):
        raise KeyringUnavailable(reason="no keyring service was found on this computer")
    return backend


def _call(action: str, fn, *args):
    try:
        return fn(*args)
    except keyring.errors.NoKeyringError:
        raise KeyringUnavailable(reason="no keyring service was found on this computer") from None
    except keyring.errors.KeyringLocked:
        raise KeyringUnavailable(reason="the keyring is locked") from None
    except Exception as exc:  # noqa: BLE001 - D-Bus and OS errors surface with backend-specific types
        raise KeyringUnavailable(reason=f"the keyring failed to {action}: {exc}") from None


def stored_passphrase(set_id: str) -> str | None:
    """The passphrase remembered for ``set_id``, or None. Raises KeyringUnavailable."""
    backend = _backend()
    return _call("read the passphrase", backend.get_password, SERVICE, set_id)


def store_passphrase(set_id: str, passphrase: str) -> None:
    """Remember the passphrase of ``set_id`` in the keyring. Raises KeyringUnavailable."""
    backend = _backend()
    _call("store the passphrase", backend.set_password, SERVICE, set_id, passphrase)


def delete_passphrase(name: str) -> bool:
    """Forget the keyring entry ``name`` (a set_id or ``job:NAME``); False when there was none.

    Raises KeyringUnavailable when the keyring cannot be reached.
    """
    backend = _backend()
    if _call("read the passphrase", backend.get_password, SERVICE, name) is None:
        return False
    try:
        backend.delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        return False   # gone in between
    except Exception as exc:  # noqa: BLE001 - D-Bus and OS errors surface with backend-specific types
        raise KeyringUnavailable(reason=f"the keyring failed to delete the passphrase: {exc}") from None
    return True


# --- resolution --------------------------------------------------------------------------


def _read_recovery_file(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"The recovery key file {path} cannot be read ({exc.strerror or exc}). "
                         "Check the path.") from None


def candidate_secrets(set_id: str, *, recovery_key_file: Path | str | None = None,
                      environ: Mapping[str, str] | None = None, prompt: Prompt | None = None,
                      warn: Warn | None = None, use_keyring: bool = True,
                      attempts: int = 3) -> Iterator[Secret]:
    """Every secret there is for ``set_id``, in the resolution order, found lazily.

    The prompt is asked at most ``attempts`` times, and only if the caller
    keeps iterating (that is, the earlier secrets were wrong).
    """
    env = os.environ if environ is None else environ
    warn = warn or _ignore
    if recovery_key_file is not None:
        yield Secret.recovery_key(_read_recovery_file(Path(recovery_key_file)), f"file {recovery_key_file}")
        return
    if env.get(ENV_RECOVERY_KEY):
        yield Secret.recovery_key(env[ENV_RECOVERY_KEY], ENV_RECOVERY_KEY)
        return
    if use_keyring:
        try:
            stored = stored_passphrase(set_id)
        except KeyringUnavailable as exc:
            # Said only when it matters: with PLUGBACK_PASSPHRASE set, nobody needs the keyring.
            if not env.get(ENV_PASSPHRASE):
                warn(exc.message)
            stored = None
        if stored:
            yield Secret.passphrase(stored, "keyring")
    if env.get(ENV_PASSPHRASE):
        yield Secret.passphrase(env[ENV_PASSPHRASE], ENV_PASSPHRASE)
    if prompt is not None:
        for attempt in range(attempts):
            text = prompt("Passphrase for this backup set: " if attempt == 0
                          else "Wrong passphrase. Try again: ")
            if not text:
                return
            yield Secret.passphrase(text, "prompt")


def unlock_set(enc: dict, set_id: str, *, secret: Secret | None = None, remember: bool = False,
               warn: Warn | None = None, **options) -> tuple[crypto.SetKeys, Secret]:
    """Open an encrypted set: (keys, the secret that worked).

    ``secret``, when given, is the only one tried. Otherwise the sources are
    tried in order; a wrong passphrase from the keyring or the environment is
    reported through ``warn`` and the next source is tried. With ``remember``,
    a passphrase that worked and was not already in the keyring is stored
    there (a missing keyring is then a warning). Raises WrongPassphrase /
    WrongRecoveryKey / BadRecoveryKey / PassphraseNeeded.
    """
    warn = warn or _ignore
    if secret is not None:
        keys = _unlock(enc, secret)
        _remember(set_id, secret, remember, warn)
        return keys, secret
    last_error: WrongPassphrase | None = None
    for candidate in candidate_secrets(set_id, warn=warn, **options):
        try:
            keys = _unlock(enc, candidate)
        except WrongRecoveryKey:
            raise
        except WrongPassphrase as exc:
            last_error = exc
            if candidate.source in ("keyring", ENV_PASSPHRASE):
                warn(f"The passphrase from {candidate.source} does not open this backup set "
                     "(was it changed?).")
            continue
        _remember(set_id, candidate, remember, warn)
        return keys, candidate
    raise last_error or PassphraseNeeded()


def _remember(set_id: str, secret: Secret, remember: bool, warn: Warn) -> None:
    if not remember or secret.is_recovery_key or secret.source == "keyring":
        return
    try:
        store_passphrase(set_id, secret.value)
    except KeyringUnavailable as exc:
        warn(exc.message)


def _unlock(enc: dict, secret: Secret) -> crypto.SetKeys:
    if secret.is_recovery_key:
        return crypto.unlock_with_recovery_key(enc, secret.value)
    return crypto.unlock_with_passphrase(enc, secret.value)


def make_unlocker(secret: Secret | None = None, **options) -> Callable[[dict, str], crypto.SetKeys]:
    """An unlocker for the engine (``core.engine.repo.Unlocker``): ``secret`` if given, else
    the sources in order (recovery key, keyring, ``PLUGBACK_PASSPHRASE``, a prompt callback)."""

    def unlock(enc: dict, set_id: str) -> crypto.SetKeys:
        return unlock_set(enc, set_id, secret=secret, **options)[0]

    return unlock
