"""Run a command in its own D-Bus session with an unlocked gnome-keyring (real SecretService).

    proc = run_in_dbus_session([sys.executable, "-c", code])

The session bus and the keyring daemon live only as long as the command; the
keyring files go to $XDG_DATA_HOME/keyrings, which the autouse fixture points
into the test's temp folder.
"""

from __future__ import annotations

import shutil
import subprocess

from tests.support.env import subprocess_env

KEYRING_PASSWORD = "plugback-test-login"

# gnome-keyring-daemon reads the login password on stdin, creates/unlocks the
# "login" keyring with it, daemonizes, and prints its env; the command then runs
# on the same bus. `exec` keeps the command's exit code.
_WRAPPER = ('printf %s "$PLUGBACK_TEST_KEYRING_PASSWORD" '
            '| gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 97; '
            'exec "$@"')


class SessionUnavailable(Exception):
    """dbus-run-session or gnome-keyring-daemon is missing."""


def check_available() -> None:
    """Raise ``SessionUnavailable`` naming the missing program."""
    for tool, package in (("dbus-run-session", "dbus"), ("gnome-keyring-daemon", "gnome-keyring")):
        if shutil.which(tool) is None:
            raise SessionUnavailable(f"'{tool}' is not installed (Debian: apt-get install {package}; "
                                     "./dev setup does it)")


def run_in_dbus_session(cmd: list[str], *, env: dict[str, str] | None = None,
                        input: str | None = None,  # noqa: A002 - subprocess.run's name
                        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside ``dbus-run-session`` with an unlocked gnome-keyring; capture text output.

    Exit code 97 means the keyring daemon did not start (its stderr is in the result).
    """
    check_available()
    full_env = subprocess_env()
    # The file keyring the autouse fixture sets would override SecretService.
    full_env.pop("PYTHON_KEYRING_BACKEND", None)
    full_env.update(env or {})
    full_env["PLUGBACK_TEST_KEYRING_PASSWORD"] = KEYRING_PASSWORD
    return subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", _WRAPPER, "sh", *cmd],
        input=input if input is not None else "", capture_output=True, text=True,
        env=full_env, timeout=timeout,
    )
