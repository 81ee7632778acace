"""The test desktop: notifications reach dunst, and an XEmbed tray is there for icons."""

import os

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

pytestmark = pytest.mark.gui

NOTIFICATIONS = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                            interface="org.freedesktop.Notifications")


def notify(bus_address, summary, body):
    with open_dbus_connection(bus_address) as conn:
        msg = new_method_call(NOTIFICATIONS, "Notify", "susssasa{sv}i",
                              ("plugback-test", 0, "", summary, body, [], {}, 5000))
        return conn.send_and_get_reply(msg).body[0]


def test_a_notification_sent_over_dbus_is_shown_by_dunst(desktop):
    notification_id = notify(desktop.bus_address, "Safe to unplug", "STICK: backup verified")
    assert notification_id > 0
    shown = next(n for n in desktop.notifications() if n["summary"] == "Safe to unplug")
    assert (shown["body"], shown["appname"]) == ("STICK: backup verified", "plugback-test")


def test_desktop_env_is_set_for_the_test(desktop):
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == desktop.bus_address
    assert os.environ["DISPLAY"] == desktop.display


def test_tray_is_owned_and_screenshot_shows_the_panel(desktop, screenshot):
    from tests.support.desktop import _tray_owned

    assert _tray_owned(desktop.display)
    assert screenshot("tray-panel").stat().st_size > 0
