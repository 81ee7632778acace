"""Notification buttons (issue #14) on a real notification daemon: dunst on a private D-Bus.

dunst's own interface clicks a shown notification (``NotificationAction``: its default action, which
Plugback makes the first button); the offer's "Set it up…" then opens the settings at the drive setup.
"""

import sys
import threading

from jeepney import DBusAddress, Properties, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.watcher import DriveWatcher
from core.platform.notify import Action, LinuxNotifier
from tests.support.agent import wait_for

DUNST = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                    interface="org.dunstproject.cmd0")


def dunst(desktop, method, signature=None, *args):
    with open_dbus_connection(desktop.bus_address) as conn:
        return unwrap_msg(conn.send_and_get_reply(new_method_call(DUNST, method, signature, args), timeout=10))


def displayed(desktop) -> int:
    with open_dbus_connection(desktop.bus_address) as conn:
        (value,) = unwrap_msg(conn.send_and_get_reply(Properties(DUNST).get("displayedLength"), timeout=10))
    return value[1]


def click_first(desktop):
    """Click the notification on top (dunst: its default action)."""
    wait_for(lambda: displayed(desktop) == 1, 10, what="the notification to show")
    dunst(desktop, "NotificationAction", "u", 0)


def test_a_click_runs_the_first_button_and_closing_runs_none(desktop):
    notifier = LinuxNotifier.available()
    assert notifier is not None and notifier.buttons(), "notify-send without --action (libnotify < 0.7.10)"
    dunst(desktop, "NotificationCloseAll")
    clicked = []
    done = threading.Event()
    actions = [Action("Set it up…", lambda: (clicked.append("setup"), done.set())),
               Action("Not this drive", lambda: clicked.append("decline"))]
    notifier.notify("Use ‘HOLIDAYS’ for backups?", "…", "offer", actions)
    click_first(desktop)
    assert done.wait(10) and clicked == ["setup"]

    notifier.notify("Use ‘OTHER’ for backups?", "…", "offer", actions)
    wait_for(lambda: displayed(desktop) == 1, 10, what="the second notification")
    dunst(desktop, "NotificationCloseAll")                      # dismissed: nothing happens
    wait_for(lambda: displayed(desktop) == 0, 10, what="the notification to close")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "notification" and t.is_alive()],
             10, what="notify-send to return")
    assert clicked == ["setup"]


def test_the_offer_notification_opens_the_drive_setup(desktop, paths, make_drive, tmp_path):
    opened = tmp_path / "opened.txt"
    command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]))", str(opened)]
    agent = Agent(paths, notifier=LinuxNotifier.available(), options=AgentOptions(battery=lambda: None,
                                                                                 settings_command=command))
    try:
        watcher = DriveWatcher(agent)
        watcher.poll()
        dunst(desktop, "NotificationCloseAll")
        drive = make_drive("ext4", label="HOLIDAYS", mount=False)
        drive.mount(at=tmp_path / "sdq1")
        watcher.poll()
        agent.offers.wait()
        click_first(desktop)
        wait_for(lambda: opened.exists() and opened.read_text(), 20, what="the settings window to start")
        assert opened.read_text() == "--page welcome"
        shown = [n for n in desktop.notifications() if n["summary"] == "Use ‘HOLIDAYS’ for backups?"]
        assert shown and shown[0]["appname"] == "Plugback"
    finally:
        agent.shutdown()
