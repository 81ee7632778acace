"""core.agent.keys: where secrets come from (recovery key, keyring, environment, prompt).

The autouse fixture (tests/conftest.py) installs an in-memory keyring, so
``keyring.get_keyring()`` is a MemoryKeyring here unless a test sets another.
"""

import json
import sys
import textwrap

import keyring
import keyring.backends.fail
import keyring.errors
import pytest
from keyring.backend import KeyringBackend

from core.agent import keys
from core.agent.keys import ENV_PASSPHRASE, ENV_RECOVERY_KEY, SERVICE, Secret
from core.engine import crypto
from core.errors import (
    BadRecoveryKey,
    KeyringUnavailable,
    PassphraseNeeded,
    UsageError,
    WrongPassphrase,
    WrongRecoveryKey,
)

SET_ID = "0f6b1c1e-set"


@pytest.fixture
def encrypted():
    """(SetKeys, encryption dict) of a set whose passphrase is 'right'."""
    return crypto.create_encryption("right")


@pytest.fixture
def no_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    yield
    keyring.set_keyring(previous)


class Prompt:
    """A prompt callback that answers from a list and records what it was asked."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def __call__(self, message):
        self.asked.append(message)
        return self.answers.pop(0) if self.answers else None


def first(**options):
    """The first secret in the resolution order, as unlock_set tries them."""
    for secret in keys.candidate_secrets(SET_ID, environ=options.pop("environ", {}), **options):
        return secret
    raise PassphraseNeeded()


# --- keyring storage -----------------------------------------------------------------------

def test_store_and_get_in_the_keyring():
    backend = keyring.get_keyring()
    assert keys.stored_passphrase(SET_ID) is None
    keys.store_passphrase(SET_ID, "right")
    assert backend.passwords[(SERVICE, SET_ID)] == "right"
    assert keys.stored_passphrase(SET_ID) == "right"


def test_backend_is_looked_up_at_each_call():
    keys.store_passphrase(SET_ID, "in the first")
    first_backend = keyring.get_keyring()
    keyring.set_keyring(type(first_backend)())
    try:
        assert keys.stored_passphrase(SET_ID) is None
    finally:
        keyring.set_keyring(first_backend)
    assert keys.stored_passphrase(SET_ID) == "in the first"


def test_no_keyring_is_a_clear_error_not_a_traceback(no_keyring):
    for call in (lambda: keys.stored_passphrase(SET_ID), lambda: keys.store_passphrase(SET_ID, "x")):
        with pytest.raises(KeyringUnavailable, match="No system keyring is available") as err:
            call()
        assert err.value.code == "no_keyring"


class BrokenKeyring(KeyringBackend):
    """A fault: the backend's service fails the way D-Bus errors surface."""

    priority = 1

    def __init__(self, error):
        super().__init__()
        self.error = error

    def get_password(self, service, username):
        raise self.error

    def set_password(self, service, username, password):
        raise self.error

    def delete_password(self, service, username):
        raise self.error


@pytest.mark.parametrize("error, words", [
    (keyring.errors.KeyringLocked("locked"), "locked"),
    (keyring.errors.NoKeyringError("none"), "no keyring service"),
    (RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown"), "ServiceUnknown"),
])
def test_failing_keyring_backends_become_keyring_unavailable(error, words):
    previous = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring(error))
    try:
        with pytest.raises(KeyringUnavailable, match=words):
            keys.stored_passphrase(SET_ID)
        with pytest.raises(KeyringUnavailable, match=words):
            keys.store_passphrase(SET_ID, "x")
        warnings = []
        secret = first(environ={ENV_PASSPHRASE: "from env"}, warn=warnings.append)
        assert secret == Secret.passphrase("from env", ENV_PASSPHRASE)
        assert warnings == []   # PLUGBACK_PASSPHRASE answers: the missing keyring does not matter
        secret = first(environ={}, prompt=lambda _: "typed", warn=warnings.append)
        assert secret == Secret.passphrase("typed", "prompt")
        assert len(warnings) == 1 and words in warnings[0]
    finally:
        keyring.set_keyring(previous)


# --- resolution order ----------------------------------------------------------------------

def test_recovery_key_file_wins_over_everything(tmp_path, encrypted):
    set_keys, _ = encrypted
    keys.store_passphrase(SET_ID, "stored")
    key_file = tmp_path / "recovery.txt"
    key_file.write_text(crypto.recovery_key(set_keys) + "\n")
    prompt = Prompt("typed")
    secret = first(recovery_key_file=key_file, prompt=prompt,
                   environ={ENV_RECOVERY_KEY: "env key", ENV_PASSPHRASE: "env pass"})
    assert secret.is_recovery_key and secret.value.strip() == crypto.recovery_key(set_keys)
    assert prompt.asked == []


def test_recovery_key_from_the_environment_comes_before_the_keyring():
    keys.store_passphrase(SET_ID, "stored")
    secret = first(environ={ENV_RECOVERY_KEY: "ABCD", ENV_PASSPHRASE: "env pass"})
    assert secret == Secret.recovery_key("ABCD", ENV_RECOVERY_KEY)


def test_keyring_comes_before_environment_and_prompt():
    keys.store_passphrase(SET_ID, "stored")
    prompt = Prompt("typed")
    assert first(environ={ENV_PASSPHRASE: "env pass"}, prompt=prompt) == Secret.passphrase("stored", "keyring")
    assert prompt.asked == []


def test_environment_comes_before_the_prompt():
    prompt = Prompt("typed")
    assert first(environ={ENV_PASSPHRASE: "env pass"}, prompt=prompt) == Secret.passphrase(
        "env pass", ENV_PASSPHRASE)
    assert prompt.asked == []


def test_prompt_is_the_last_resort():
    prompt = Prompt("typed")
    assert first(prompt=prompt) == Secret.passphrase("typed", "prompt")
    assert len(prompt.asked) == 1 and "Passphrase" in prompt.asked[0]


def test_the_real_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv(ENV_PASSPHRASE, "from os.environ")
    assert next(keys.candidate_secrets(SET_ID)).value == "from os.environ"


def test_nothing_found_or_prompt_cancelled_means_passphrase_needed():
    with pytest.raises(PassphraseNeeded):
        first()
    with pytest.raises(PassphraseNeeded):
        first(prompt=Prompt(None))


def test_no_keyring_falls_back_to_asking_with_a_warning(no_keyring):
    warnings = []
    assert first(prompt=Prompt("typed"), warn=warnings.append).value == "typed"
    assert warnings and "No system keyring" in warnings[0]


def test_missing_recovery_key_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot be read"):
        first(recovery_key_file=tmp_path / "nope.txt")


# --- unlocking ---------------------------------------------------------------------------

def test_unlock_set_with_the_stored_passphrase(encrypted):
    set_keys, enc = encrypted
    keys.store_passphrase(SET_ID, "right")
    opened, secret = keys.unlock_set(enc, SET_ID, environ={})
    assert opened.master == set_keys.master and secret.source == "keyring"


def test_stale_keyring_passphrase_warns_and_falls_through(encrypted):
    set_keys, enc = encrypted
    keys.store_passphrase(SET_ID, "old")
    warnings = []
    opened, secret = keys.unlock_set(enc, SET_ID, environ={ENV_PASSPHRASE: "right"}, warn=warnings.append)
    assert opened.master == set_keys.master and secret.source == ENV_PASSPHRASE
    assert any("keyring does not open" in w for w in warnings)


def test_wrong_prompt_answers_are_retried_then_refused(encrypted):
    set_keys, enc = encrypted
    prompt = Prompt("no", "right")
    opened, _ = keys.unlock_set(enc, SET_ID, environ={}, prompt=prompt)
    assert opened.master == set_keys.master
    assert len(prompt.asked) == 2 and "Wrong passphrase" in prompt.asked[1]
    prompt = Prompt("a", "b", "c", "right")
    with pytest.raises(WrongPassphrase):
        keys.unlock_set(enc, SET_ID, environ={}, prompt=prompt)
    assert len(prompt.asked) == 3


def test_remember_stores_a_working_passphrase(encrypted):
    _, enc = encrypted
    keys.unlock_set(enc, SET_ID, environ={}, prompt=Prompt("right"), remember=True)
    assert keys.stored_passphrase(SET_ID) == "right"


def test_remember_without_a_keyring_is_only_a_warning(encrypted, no_keyring):
    _, enc = encrypted
    warnings = []
    opened, _ = keys.unlock_set(enc, SET_ID, environ={ENV_PASSPHRASE: "right"}, remember=True,
                                warn=warnings.append)
    assert opened is not None
    assert len(warnings) == 1 and "No system keyring" in warnings[0]   # only remembering needed it


def test_a_wrong_recovery_key_is_not_papered_over(encrypted):
    _, enc = encrypted
    other, _ = crypto.create_encryption("x")
    keys.store_passphrase(SET_ID, "right")
    with pytest.raises(WrongRecoveryKey):
        keys.unlock_set(enc, SET_ID, environ={ENV_RECOVERY_KEY: crypto.recovery_key(other)})
    with pytest.raises(BadRecoveryKey):
        keys.unlock_set(enc, SET_ID, environ={ENV_RECOVERY_KEY: "0000-1111"})


def test_recovery_key_opens_via_unlock_set(tmp_path, encrypted):
    set_keys, enc = encrypted
    (tmp_path / "key.txt").write_text(crypto.recovery_key(set_keys).lower())
    opened, secret = keys.unlock_set(enc, SET_ID, recovery_key_file=tmp_path / "key.txt", remember=True)
    assert opened.master == set_keys.master and secret.is_recovery_key
    assert keys.stored_passphrase(SET_ID) is None  # a recovery key is never put in the keyring


def test_an_explicit_secret_is_the_only_one_tried(encrypted):
    _, enc = encrypted
    keys.store_passphrase(SET_ID, "right")
    with pytest.raises(WrongPassphrase):
        keys.unlock_set(enc, SET_ID, secret=Secret.passphrase("wrong"))


# --- a real SecretService (gnome-keyring under its own D-Bus session) ----------------------

SECRET_SERVICE_SCRIPT = textwrap.dedent("""
    import json, sys, keyring
    from keyring.backends import SecretService
    from core.agent import keys
    action, set_id = sys.argv[1], sys.argv[2]
    if action == "store":
        keys.store_passphrase(set_id, "stored in gnome-keyring")
        result = {}
    else:
        result = {"direct": SecretService.Keyring().get_password(keys.SERVICE, set_id),
                  "stored": keys.stored_passphrase(set_id)}
    chained = getattr(keyring.get_keyring(), "backends", [keyring.get_keyring()])
    result["backends"] = [type(b).__module__ for b in chained]
    print(json.dumps(result))
""")


def test_passphrase_survives_in_a_real_secret_service(dbus_session):
    # Two separate sessions: the second daemon reads what the first wrote to disk,
    # and reads it straight from SecretService, so it did not land in another backend.
    stored = dbus_session([sys.executable, "-c", SECRET_SERVICE_SCRIPT, "store", SET_ID])
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["backends"][0] == "keyring.backends.SecretService"
    read = dbus_session([sys.executable, "-c", SECRET_SERVICE_SCRIPT, "read", SET_ID])
    assert read.returncode == 0, read.stderr
    result = json.loads(read.stdout)
    assert {k: result[k] for k in ("direct", "stored")} == {
        "direct": "stored in gnome-keyring", "stored": "stored in gnome-keyring"}
