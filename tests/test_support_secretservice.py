"""The real SecretService keyring (gnome-keyring over D-Bus) works in a dbus_session subprocess."""

import sys

CODE = r"""
import keyring, secretstorage
from keyring.backends.SecretService import Keyring
backend = Keyring()
keyring.set_keyring(backend)
keyring.set_password("plugbacktest", "job-docs", "correct horse")
print("get", keyring.get_password("plugbacktest", "job-docs"))
# The item is really in the SecretService collection, not in some fallback:
conn = secretstorage.dbus_init()
items = list(secretstorage.search_items(conn, {"service": "plugbacktest", "username": "job-docs"}))
print("items", len(items), items[0].get_secret().decode())
keyring.delete_password("plugbacktest", "job-docs")
print("after delete", keyring.get_password("plugbacktest", "job-docs"))
"""


def test_keyring_set_and_get_through_secretservice(dbus_session, plugback_env):
    proc = dbus_session([sys.executable, "-c", CODE])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["get correct horse", "items 1 correct horse", "after delete None"]
    # gnome-keyring kept its files in the test's temp XDG_DATA_HOME.
    assert (plugback_env.root / "xdg-data" / "keyrings" / "login.keyring").exists()
