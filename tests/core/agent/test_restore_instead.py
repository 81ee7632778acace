"""Issue #14, "the plug-in notification offers 'Restore instead'": on the real agent and a real ext4 drive,
the notification sent when a plugged-in drive's backup waits out the connect delay, and the tray menu's
same choice during the delay, drop that backup (or stop it, once started) and open the Restore page on
that drive."""

from __future__ import annotations

import sys
import time

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.watcher import DriveWatcher
from core.platform.notify import Notifier, read_log
from tests.core.agent.test_restore_first import FIRST, Gate, backups, in_backup
from tests.support.agent import add_drive_job, wait_for
from tests.support.trees import make_tree
from tray.menu import build_menu


class Desktop(Notifier):
    """The desktop's side of the notifications: keeps each one's buttons, so a test can press one."""

    name = "test"

    def __init__(self):
        self.shown: list[tuple[str, list]] = []

    def notify(self, title, message, kind="info", actions=()):
        self.shown.append((title, list(actions)))

    def press(self, title: str, label: str) -> None:
        actions = next(a for t, a in reversed(self.shown) if t == title)
        next(a for a in actions if a.label == label).run()


def agent_with(paths, desktop):
    agent = Agent(paths, notifier=desktop, options=AgentOptions(battery=lambda: None,
                                                                settings_command=[sys.executable, "-c", "pass"]))
    return agent, DriveWatcher(agent)


def connect_notes(paths):
    return [n for n in read_log(paths.notifications_log) if n["kind"] == "connect"]


def test_restore_instead_on_the_plug_in_notification_skips_the_backup(paths, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=1)
    desktop = Desktop()
    agent, watcher = agent_with(paths, desktop)
    try:
        watcher.poll()                                                   # plugged in
        (note,) = connect_notes(paths)
        assert note["title"] == "Backing up to 'Blue'" and "starts in 1 s" in note["message"]
        assert note["actions"] == ["Open Plugback", "Restore instead"]
        assert agent.status()["pending"][0]["jobs"] == ["Docs"]
        desktop.press("Backing up to 'Blue'", "Restore instead")
        assert agent.status()["pending"] == []
        assert agent.settings_proc is not None and agent.settings_proc.args[-2:] == ["--page", f"restore/{drive_id}"]
        time.sleep(1.5)                                                  # the delay is over: nothing started
        assert agent.history.runs("Docs") == [] and agent.queued() == [] and agent.running() == []
    finally:
        agent.shutdown()


def test_restore_instead_pressed_after_the_delay_stops_that_backup(paths, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=1)
    desktop = Desktop()
    agent, watcher = agent_with(paths, desktop)
    try:
        gate = Gate(agent, in_backup)
        watcher.poll()
        assert gate.reached.wait(30)                                     # the connect backup runs
        desktop.press("Backing up to 'Blue'", "Restore instead")
        gate.release()
        (run,) = wait_for(lambda: backups(agent, 1), what="the stopped backup")
        assert run.status == "cancelled" and run.trigger == "connect"
        assert agent.settings_proc.args[-2:] == ["--page", f"restore/{drive_id}"]
    finally:
        agent.shutdown()


def test_the_menu_offers_restore_instead_during_the_delay(paths, make_agent, ext4_drive, tmp_path):
    from tray.icon import TrayIcon

    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=30)
    agent, watcher = make_agent(settings_command=[sys.executable, "-c", "pass"])
    watcher.poll()
    menu = [(i.text, i.action, i.args) for i in build_menu(agent.tray_state())]
    assert ("Restore from Blue instead", "restore_instead", (drive_id,)) in menu
    TrayIcon.ACTIONS["restore_instead"](agent, None, drive_id)          # the menu item's action
    assert agent.status()["pending"] == [] and agent.settings_proc.args[-2:] == ["--page", f"restore/{drive_id}"]
    assert "Restore from Blue instead" not in [i.text for i in build_menu(agent.tray_state())]
    assert agent.history.runs("Docs") == [] and agent.queued() == []


def test_no_plug_in_notification_without_a_connect_delay(paths, make_agent, ext4_drive, tmp_path):
    """connect_delay_seconds 0: the backup starts at once, with nothing to choose before it."""
    add_drive_job(paths, ext4_drive.mount_point, [make_tree(tmp_path / "Docs", FIRST)], delay=0)
    agent, watcher = make_agent()
    watcher.poll()
    wait_for(lambda: backups(agent, 1), what="the connect backup")
    assert connect_notes(paths) == []


def test_a_settings_window_that_dies_releases_the_restore_page_hold(paths, make_agent):
    """A window killed on the Restore page never says the page closed: its end releases the hold at once
    (not 60 s later); a start that only brought the open window to the front (exit 0) keeps it."""
    agent, _ = make_agent(settings_command=[sys.executable, "-c", "pass"])
    agent.page_hold.set(True)
    agent.open_settings("restore")
    agent.settings_proc.wait(30)
    time.sleep(0.3)
    assert agent.page_hold.active and agent.status()["restore_page"]
    agent.options.settings_command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    agent.open_settings("restore")
    wait_for(lambda: not agent.page_hold.active, 10, what="the hold to end with the window")
    assert agent.status()["restore_page"] is False


def test_the_held_backups_notification_has_the_menus_choices(paths, ext4_drive, tmp_path):
    """Plugged in while the Restore page is open: the notification offers what the menu does."""
    add_drive_job(paths, ext4_drive.mount_point, [make_tree(tmp_path / "Docs", FIRST)], delay=0)
    desktop = Desktop()
    agent, watcher = agent_with(paths, desktop)
    try:
        agent.page_hold.set(True)
        watcher.poll()
        (note,) = [n for n in read_log(paths.notifications_log) if "waits" in n["title"]]
        assert note["actions"] == ["Open Plugback", "Back up now", "Restore instead"]
        desktop.press(note["title"], "Back up now")
        (run,) = wait_for(lambda: backups(agent, 1), what="the held backup")
        assert run.status == "ok" and run.trigger == "connect" and agent.page_hold.active
    finally:
        agent.shutdown()
