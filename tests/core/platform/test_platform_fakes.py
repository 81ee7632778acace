"""core/platform on the OSes this machine is not (issue #16): start at login in the Windows
registry, eject on macOS and Windows, notifications on macOS and Windows.

Each fake stands for an OS API this machine lacks (winreg, diskutil, powershell, osascript,
the tray icon's balloon) and asserts what the real one would be called with. Linux's own
eject and notifications run for real in test_platform.py and test_notify_real.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import EjectFailed
from core.platform import autostarter, eject, ejector, notifier, notify
from core.platform.autostart import Autostart, LaunchAgent, RunKey, XdgAutostart
from core.platform.eject import Ejector, LinuxEjector, MacEjector, WindowsEjector
from core.platform.notify import CallbackNotifier, LinuxNotifier, MacNotifier, Notifier, applescript_text
from tests.support.waiting import wait_for

# -- start at login: the Run key in a fake registry ------------------------------------------


class FakeKey:
    def __init__(self, registry, path, access):
        self.registry, self.path, self.access, self.open = registry, path, access, True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.open = False


class FakeWinreg:
    """The ``winreg`` calls RunKey makes, on a dict of keys; writes need a key opened for writing."""

    HKEY_CURRENT_USER = 0x80000001
    KEY_READ = 0x20019
    KEY_SET_VALUE = 0x0002
    REG_SZ = 1

    def __init__(self):
        self.keys: dict[tuple[int, str], dict[str, tuple[object, int]]] = {
            (self.HKEY_CURRENT_USER, RunKey.KEY): {"OneDrive": ("C:\\OneDrive.exe /background", self.REG_SZ)}}
        self.calls: list[tuple] = []

    def OpenKey(self, root, sub_key, reserved=0, access=KEY_READ):  # noqa: N802 - winreg's names
        self.calls.append(("OpenKey", root, sub_key, access))
        assert reserved == 0
        if (root, sub_key) not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return FakeKey(self, (root, sub_key), access)

    def _values(self, key: FakeKey, write: bool):
        assert key.open, "used after the with block closed it"
        if write:
            assert key.access & self.KEY_SET_VALUE, "writing needs KEY_SET_VALUE"
        return self.keys[key.path]

    def SetValueEx(self, key, name, reserved, type_, value):  # noqa: N802
        self.calls.append(("SetValueEx", name, type_, value))
        self._values(key, True)[name] = (value, type_)

    def DeleteValue(self, key, name):  # noqa: N802
        self.calls.append(("DeleteValue", name))
        values = self._values(key, True)
        if name not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del values[name]

    def QueryValueEx(self, key, name):  # noqa: N802
        values = self._values(key, False)
        if name not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return values[name]

    def run_values(self):
        return self.keys[(self.HKEY_CURRENT_USER, RunKey.KEY)]


def test_run_key_follows_the_preference_in_the_registry():
    reg = FakeWinreg()
    exe = r"C:\Program Files\Plugback\Plugback.exe"
    entry = RunKey([exe], winreg=reg)
    assert not entry.enabled()
    entry.apply(False)
    assert [c[0] for c in reg.calls if c[0] != "OpenKey"] == []     # nothing to remove: nothing written
    entry.apply(True)
    # One REG_SZ value, the command line quoted as Windows parses it (a space in the path).
    assert reg.run_values()["Plugback"] == ('"C:\\Program Files\\Plugback\\Plugback.exe"', FakeWinreg.REG_SZ)
    assert ("OpenKey", FakeWinreg.HKEY_CURRENT_USER, RunKey.KEY, FakeWinreg.KEY_SET_VALUE) in reg.calls
    assert entry.enabled()
    entry.apply(False)
    assert "Plugback" not in reg.run_values() and "OneDrive" in reg.run_values()   # only our value
    assert not entry.enabled()
    entry.disable()   # already gone: no error


def test_run_key_for_a_python_install_runs_the_tray_module():
    reg = FakeWinreg()
    RunKey([r"C:\Python312\pythonw.exe", "-m", "tray"], winreg=reg).enable()
    assert reg.run_values()["Plugback"][0] == r"C:\Python312\pythonw.exe -m tray"


@pytest.mark.parametrize("platform, folder, kind", [
    ("linux", None, XdgAutostart), ("linux", "dir", XdgAutostart),
    ("darwin", None, LaunchAgent), ("darwin", "dir", LaunchAgent),
    ("win32", None, RunKey),
    ("win32", "dir", Autostart),     # PLUGBACK_HOME: the registry has no such folder, nothing is written
])
def test_autostart_is_chosen_per_os(monkeypatch, tmp_path, platform, folder, kind):
    monkeypatch.setattr(sys, "platform", platform)
    assert type(autostarter(["x"], folder=tmp_path if folder else None)) is kind


# -- eject: diskutil, the Explorer verb, udisks ----------------------------------------------


class FakeRun:
    """Runs nothing: records each command and answers from a list of (returncode, stdout, stderr)."""

    def __init__(self, *answers):
        self.answers = list(answers) or [(0, "", "")]
        self.commands: list[list[str]] = []

    def __call__(self, cmd):
        self.commands.append(cmd)
        code, out, err = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return subprocess.CompletedProcess(cmd, code, out, err)


def test_mac_eject_asks_diskutil_to_eject_the_whole_disk(monkeypatch):
    synced = []
    monkeypatch.setattr(eject, "_sync", lambda: synced.append(True))
    run = FakeRun()
    MacEjector(run).eject("/Volumes/Blue Drive")
    assert run.commands == [["diskutil", "eject", "/Volumes/Blue Drive"]] and synced == [True]


def test_mac_eject_failure_carries_diskutils_words(monkeypatch):
    monkeypatch.setattr(eject, "_sync", lambda: None)
    run = FakeRun((1, "", "Volume Blue on disk4s1 failed to eject: in use by mds\n"))
    with pytest.raises(EjectFailed, match="in use by mds"):
        MacEjector(run).eject("/Volumes/Blue")


@pytest.mark.parametrize("mount, letter", [("E:\\", "E:"), ("F:", "F:"), ("G:'\\", "G:")])
def test_windows_eject_invokes_the_explorer_eject_verb(mount, letter):
    run = FakeRun()
    WindowsEjector(run).eject(mount)
    assert run.commands == [["powershell", "-NoProfile", "-NonInteractive", "-Command",
                             "(New-Object -ComObject Shell.Application).Namespace(17)"
                             f".ParseName('{letter}').InvokeVerb('Eject')"]]


def test_windows_eject_failure_carries_powershells_words():
    with pytest.raises(EjectFailed, match="ComObject"):
        WindowsEjector(FakeRun((1, "", "New-Object : ComObject not available"))).eject("E:\\")


def test_linux_eject_uses_udisks_then_powers_off_else_umount(monkeypatch):
    monkeypatch.setattr(eject, "_sync", lambda: None)
    monkeypatch.setattr(eject, "_device_of", lambda mount: "/dev/sdb1")
    monkeypatch.setattr(eject.shutil, "which", lambda tool: "/usr/bin/udisksctl")
    run = FakeRun()
    LinuxEjector(run).eject("/media/ann/Blue")
    assert run.commands == [["/usr/bin/udisksctl", "unmount", "-b", "/dev/sdb1", "--no-user-interaction"],
                            ["/usr/bin/udisksctl", "power-off", "-b", "/dev/sdb1", "--no-user-interaction"]]
    run = FakeRun((1, "", "Not authorized"), (0, "", ""))      # udisks refuses (no polkit rule): umount
    LinuxEjector(run).eject("/media/ann/Blue")
    assert run.commands[-1] == ["umount", "/media/ann/Blue"] and len(run.commands) == 2


@pytest.mark.parametrize("platform, kind", [("linux", LinuxEjector), ("darwin", MacEjector),
                                            ("win32", WindowsEjector), ("freebsd14", Ejector)])
def test_ejector_is_chosen_per_os(monkeypatch, platform, kind):
    monkeypatch.setattr(sys, "platform", platform)
    assert type(ejector()) is kind


# -- notifications: osascript, the tray icon's balloon ---------------------------------------


def test_mac_notification_runs_osascript_with_the_text_as_applescript_reads_it(monkeypatch):
    ran = []
    monkeypatch.setattr(notify, "_run_quietly", ran.append)
    MacNotifier().notify("'Fotos Müller' is safe to unplug", 'Use “this” backup… "now" \\ ok', "safe_to_unplug")
    wait_for(lambda: ran, 5, "osascript to be run")
    assert ran == [["osascript", "-e", 'display notification "Use “this” backup… \\"now\\" \\\\ ok" '
                                      "with title \"'Fotos Müller' is safe to unplug\""]]


@pytest.mark.parametrize("text, literal", [("plain", '"plain"'), ('a "b"', '"a \\"b\\""'), ("a\\b", '"a\\\\b"'),
                                           ("…", '"…"')])
def test_applescript_string_literals(text, literal):
    assert applescript_text(text) == literal


def test_windows_notifications_go_to_the_tray_icon_and_never_raise():
    shown = []
    CallbackNotifier(lambda title, message: shown.append((title, message))).notify("Docs backed up", "3 files.")
    assert shown == [("Docs backed up", "3 files.")]

    def broken(title, message):
        raise RuntimeError("this pystray backend has no notifications")

    CallbackNotifier(broken).notify("Docs backed up", "3 files.")   # a courtesy: never fails the run


@pytest.mark.parametrize("platform, kinds", [("darwin", (MacNotifier,)), ("win32", (Notifier,)),
                                             ("linux", (LinuxNotifier, Notifier))])
def test_notifier_is_chosen_per_os(monkeypatch, platform, kinds):
    monkeypatch.setattr(sys, "platform", platform)
    assert type(notifier()) in kinds    # Windows: a do-nothing one until the icon hands over its balloon
