"""Fixtures for the whole suite. Helpers (trees as data, run_cli, ...) are in tests/support.

* every test (autouse): its own PLUGBACK_HOME, a cheap KDF, an in-memory keyring
  in-process and a file keyring for subprocesses, XDG folders in a temp folder
* ``ext4_drive``, ``exfat_drive``, ``vfat_drive``, ``make_drive``: real mounted
  file systems on loop devices (marker ``realdrive``, added automatically)
* ``xvfb_display``: a virtual X server for the session (marker ``gui``)
* ``desktop``: session D-Bus + dunst + trayer on that display (marker ``gui``)
* ``chromium_browser``: headless Debian Chromium through Playwright (marker ``browser``)
* ``dbus_session``: run a command with a real SecretService (gnome-keyring)

See docs/testing.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import keyring
import pytest

from tests.support import dbus as dbus_support
from tests.support import desktop as desktop_support
from tests.support import display as display_support
from tests.support.drives import DriveUnavailable, LoopDrive
from tests.support.env import TestEnv, isolated_env
from tests.support.keyring_backend import MemoryKeyring

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

# Fixtures that imply a marker, so `-m "not realdrive"` deselects every test using them.
_FIXTURE_MARKERS = {
    "ext4_drive": "realdrive", "exfat_drive": "realdrive", "vfat_drive": "realdrive", "make_drive": "realdrive",
    "xvfb_display": "gui", "chromium_browser": "browser",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & _FIXTURE_MARKERS.keys():
            item.add_marker(_FIXTURE_MARKERS[fixture])


def _unavailable(reason: str):
    """Skip, or fail when PLUGBACK_REQUIRE_REALDRIVE=1 says this machine must run everything."""
    if os.environ.get("PLUGBACK_REQUIRE_REALDRIVE") == "1":
        pytest.fail(f"PLUGBACK_REQUIRE_REALDRIVE=1 but: {reason}", pytrace=False)
    pytest.skip(reason)


# --- the isolated environment (every test) ---------------------------------------------

@pytest.fixture(autouse=True)
def plugback_env(tmp_path_factory, monkeypatch) -> TestEnv:
    """Confine the app's state, keyring and XDG folders to a temp folder; make the KDF cheap.

    In-process ``keyring`` calls go to a ``MemoryKeyring`` (``keyring.get_keyring()``
    returns it, so a test can inspect ``.passwords``); subprocesses inherit
    ``PYTHON_KEYRING_BACKEND`` and use a file keyring at ``env.keyring_file``.
    PLUGBACK_HOME (``env.home``) is not created: first-run code must create it.
    """
    # A short path (not tmp_path): the agent's AF_UNIX socket lives under PLUGBACK_HOME.
    env = isolated_env(tmp_path_factory.mktemp("pb", numbered=True))
    for name, value in env.vars.items():
        monkeypatch.setenv(name, value)
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        yield env
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def paths():
    """The app's folders (under this test's PLUGBACK_HOME), created."""
    from core.agent.config import Paths

    p = Paths.default()
    p.ensure()
    return p


# --- real drives ------------------------------------------------------------------------

@pytest.fixture
def make_drive(tmp_path):
    """Factory: ``make_drive("exfat", size_mb=128, label="PLUGBACK", mount=True) -> LoopDrive``.

    Several drives per test are fine; all are unmounted and detached afterwards.
    Skips (with what is missing) where the machine cannot mount real drives.
    """
    drives: list[LoopDrive] = []

    def make(fstype: str, *, size_mb: int = 128, label: str = "PLUGBACK", mount: bool = True) -> LoopDrive:
        workdir = tmp_path / f"drive{len(drives)}-{fstype}"
        try:
            drive = LoopDrive.create(fstype, workdir, size_mb=size_mb, label=label, mount=mount)
        except DriveUnavailable as err:
            _unavailable(str(err))
        drives.append(drive)
        return drive

    yield make
    for drive in reversed(drives):
        drive.close()


@pytest.fixture
def ext4_drive(make_drive) -> LoopDrive:
    """A mounted 128 MB ext4 file system (kernel driver)."""
    return make_drive("ext4")


@pytest.fixture
def exfat_drive(make_drive) -> LoopDrive:
    """A mounted 128 MB exFAT file system (mount.exfat-fuse; psutil fstype 'fuseblk')."""
    return make_drive("exfat")


@pytest.fixture
def vfat_drive(make_drive) -> LoopDrive:
    """A mounted 128 MB FAT32 file system (fusefat; only in psutil.disk_partitions(all=True))."""
    return make_drive("vfat")


# --- display, browser, D-Bus --------------------------------------------------------------

@pytest.fixture(scope="session")
def xvfb_display():
    """A virtual X server for the whole session; sets $DISPLAY. Yields an ``XDisplay`` (.name)."""
    try:
        display = display_support.start_xvfb()
    except display_support.DisplayUnavailable as err:
        pytest.skip(str(err))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", display.name)
        mp.delenv("WAYLAND_DISPLAY", raising=False)
        try:
            yield display
        finally:
            display.stop()


@pytest.fixture(scope="session")
def _desktop_session(xvfb_display):
    try:
        desktop = desktop_support.start_desktop(xvfb_display.name)
    except desktop_support.DesktopUnavailable as err:
        pytest.skip(str(err))
    try:
        yield desktop
    finally:
        desktop.stop()


@pytest.fixture
def desktop(_desktop_session, monkeypatch):
    """A desktop on the Xvfb display: session D-Bus, dunst (notifications), trayer (XEmbed tray).

    Sets DISPLAY and DBUS_SESSION_BUS_ADDRESS for this test only. ``desktop.notifications()``
    lists what dunst showed. See tests/support/desktop.py.
    """
    for name, value in _desktop_session.env.items():
        monkeypatch.setenv(name, value)
    return _desktop_session


@pytest.fixture
def screenshot(xvfb_display, request):
    """``screenshot(label="") -> Path``: the Xvfb screen as test-artifacts/<test name>[-label].png."""

    def take(label: str = "") -> Path:
        name = request.node.name + (f"-{label}" if label else "")
        return display_support.screenshot(name, xvfb_display.name)

    return take


@pytest.fixture(scope="session")
def chromium_browser():
    """Headless Debian Chromium driven by Playwright (never downloads a browser)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium; ./dev setup does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def dbus_session():
    """``dbus_session(cmd, env=None, input=None, timeout=60) -> CompletedProcess``: run ``cmd`` in a
    private D-Bus session with an unlocked gnome-keyring (SecretService); skips when unavailable."""
    try:
        dbus_support.check_available()
    except dbus_support.SessionUnavailable as err:
        pytest.skip(str(err))
    return dbus_support.run_in_dbus_session
