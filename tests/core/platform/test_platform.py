"""core/platform: autostart entries, notifications record, eject of a real mounted drive."""

import os
import plistlib
import sys

import pytest

from core.errors import EjectFailed
from core.platform import autostarter, notifier
from core.platform.autostart import LaunchAgent, XdgAutostart, agent_command
from core.platform.eject import LinuxEjector
from core.platform.notify import Notifier, RecordingNotifier, read_log


def test_xdg_autostart_follows_the_preference(tmp_path):
    entry = XdgAutostart([sys.executable, "-m", "tray"], folder=tmp_path)
    entry.apply(True)
    text = (tmp_path / "plugback.desktop").read_text()
    assert "[Desktop Entry]" in text and f"Exec={sys.executable} -m tray" in text and entry.enabled()
    entry.apply(False)
    assert not entry.enabled() and not (tmp_path / "plugback.desktop").exists()


def test_xdg_autostart_defaults_to_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert autostarter(["x"]).path == tmp_path / "autostart" / "plugback.desktop"


def test_launch_agent_plist(tmp_path):
    entry = LaunchAgent(["/Applications/Plugback.app/Contents/MacOS/Plugback"], folder=tmp_path)
    entry.enable()
    data = plistlib.loads((tmp_path / "org.plugback.tray.plist").read_bytes())
    assert data["RunAtLoad"] is True and data["ProgramArguments"] == entry.command
    entry.disable()
    assert not entry.enabled()


def test_agent_command_runs_the_tray_module():
    assert agent_command() == [sys.executable, "-m", "tray"]


class Shown(Notifier):
    name = "test"

    def __init__(self):
        self.shown = []

    def notify(self, title, message, kind="info"):
        self.shown.append((title, kind))


def test_recording_notifier_logs_and_respects_the_preference(tmp_path):
    inner, enabled = Shown(), [True]
    rec = RecordingNotifier(tmp_path / "n.log", inner, enabled=lambda: enabled[0])
    rec.notify("Docs backed up", "3 files", "finished")
    enabled[0] = False
    rec.notify("'Blue' is safe to unplug", "…", "safe_to_unplug")
    log = read_log(tmp_path / "n.log")
    assert [(n["kind"], n["shown"], n["via"]) for n in log] == [("finished", True, "test"),
                                                                ("safe_to_unplug", False, "test")]
    assert inner.shown == [("Docs backed up", "finished")]


def test_platform_notifier_is_selected():
    assert isinstance(notifier(), Notifier)


def test_linux_eject_unmounts_a_real_drive(ext4_drive):
    mount = str(ext4_drive.mount_point)
    (ext4_drive.mount_point / "f").write_text("data")
    LinuxEjector().eject(mount)
    assert not os.path.ismount(mount)
    ext4_drive.mount_point = None          # already unmounted: the fixture only detaches
    with pytest.raises(EjectFailed):
        LinuxEjector().eject(mount)
