"""A minimal Linux desktop on a virtual display, for tray and notification tests.

``start_desktop(display)`` starts, on an existing X display (see display.py):

* a private D-Bus session bus (``dbus-daemon --session``), exported as
  ``DBUS_SESSION_BUS_ADDRESS``;
* ``dunst``, a notification daemon (org.freedesktop.Notifications); what it
  showed is read back with ``Desktop.notifications()`` (dunst's history over D-Bus);
* ``trayer``, an XEmbed system tray (owner of ``_NET_SYSTEM_TRAY_S0``), where
  pystray's gtk/xorg backends and AppIndicator's fallback put their icon.

There is no StatusNotifierWatcher, so Ayatana AppIndicator falls back to the
XEmbed tray, as it does on desktops without SNI support.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg


class DesktopUnavailable(Exception):
    """A program of the test desktop is missing or did not start; the message says which."""


@dataclass
class Desktop:
    """The running desktop: ``display`` (":N"), ``bus_address``, and its processes."""

    display: str
    bus_address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Variables a child process needs to reach this desktop."""
        return {"DISPLAY": self.display, "DBUS_SESSION_BUS_ADDRESS": self.bus_address}

    def notifications(self) -> list[dict]:
        """Notifications dunst has shown, newest first: ``{"summary", "body", "appname", ...}``.

        Closes the open ones first (dunst's history holds closed notifications only).
        Talks to dunst's own D-Bus interface (what ``dunstctl history`` does, without
        needing systemd's busctl).
        """
        _dunst_call(self.bus_address, "NotificationCloseAll")
        (items,) = _dunst_call(self.bus_address, "NotificationListHistory")
        # Each value is a D-Bus variant, which jeepney gives as (signature, value).
        return [{key: value[1] for key, value in item.items()} for item in items]

    def stop(self) -> None:
        """Stop every process of the desktop, newest first."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def check_available() -> None:
    """Raise ``DesktopUnavailable`` naming the first missing program."""
    for tool, package in (("dbus-daemon", "dbus"), ("dunst", "dunst"), ("trayer", "trayer")):
        if shutil.which(tool) is None:
            raise DesktopUnavailable(f"'{tool}' is not installed (Debian: apt-get install {package}; "
                                     "./dev setup does it)")


def start_desktop(display: str, timeout: float = 15) -> Desktop:
    """Start a session bus, dunst and trayer on X display ``display``."""
    check_available()
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    address = bus.stdout.readline().strip()
    if not address:
        bus.kill()
        raise DesktopUnavailable("dbus-daemon --session printed no address")
    desktop = Desktop(display=display, bus_address=address, processes=[bus])
    env = {**os.environ, **desktop.env}
    try:
        quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        desktop.processes.append(subprocess.Popen(["dunst"], **quiet))
        desktop.processes.append(subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "24",
             "--SetDockType", "true", "--transparent", "false"], **quiet))
        _wait(lambda: _dunst_ready(address), timeout, "dunst to answer on the session bus")
        _wait(lambda: _tray_owned(display), timeout, "trayer to own _NET_SYSTEM_TRAY_S0")
    except BaseException:
        desktop.stop()
        raise
    return desktop


DUNST = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                    interface="org.dunstproject.cmd0")


def _dunst_call(bus_address: str, method: str) -> tuple:
    with open_dbus_connection(bus_address) as conn:
        return unwrap_msg(conn.send_and_get_reply(new_method_call(DUNST, method), timeout=10))


def _dunst_ready(bus_address: str) -> bool:
    try:
        _dunst_call(bus_address, "NotificationListHistory")
    except DBusErrorResponse:  # not on the bus yet
        return False
    return True


def _tray_owned(display: str) -> bool:
    from Xlib import display as xdisplay  # python-xlib comes with pystray on Linux

    conn = xdisplay.Display(display)
    try:
        screen = conn.get_default_screen()
        owner = conn.get_selection_owner(conn.intern_atom(f"_NET_SYSTEM_TRAY_S{screen}"))
        return owner != 0 and getattr(owner, "id", owner) != 0
    finally:
        conn.close()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DesktopUnavailable(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
