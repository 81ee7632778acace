"""core/platform/drive_events.py and volumes.py: the native drive-event sources behind one interface.

Linux's source runs for real (the kernel's mount-table event on a real loop mount).
Windows' and macOS's run here through fakes of the OS calls they make: a fake user32
message pump that delivers WM_DEVICECHANGE with a real DEV_BROADCAST_VOLUME, a fake
NSWorkspace notification center, a fake kernel32 for the drive-letter listing. Each
fake asserts what the real API would be called with.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import pytest

from core.platform import drive_event_source
from core.platform.drive_events import (
    DBT_DEVICEARRIVAL,
    DBT_DEVICEREMOVECOMPLETE,
    DBT_DEVTYP_VOLUME,
    DBTF_NET,
    DEV_BROADCAST_VOLUME,
    MAC_NOTIFICATIONS,
    WM_CLOSE,
    WM_DESTROY,
    WM_DEVICECHANGE,
    DriveEvents,
    LinuxMountTable,
    MacWorkspace,
    VolumeChange,
    Win32,
    WindowsDeviceChange,
    start_events,
    volume_change,
)
from core.platform.volumes import (
    BUS_USB,
    DRIVE_CDROM,
    DRIVE_FIXED,
    DRIVE_REMOTE,
    DRIVE_REMOVABLE,
    FILE_READ_ONLY_VOLUME,
    INVALID_HANDLE_VALUE,
    IOCTL_STORAGE_QUERY_PROPERTY,
    SEM_FAILCRITICALERRORS,
    Partition,
    drive_letters,
    windows_partitions,
)
from tests.support.env import repo_root, subprocess_env
from tests.support.waiting import wait_for

DBT_DEVNODES_CHANGED = 0x0007
DBT_DEVICEQUERYREMOVE = 0x8001
DBT_DEVTYP_PORT = 0x0003
HWND_MESSAGE = -3
BUS_NVME = 0x11
WS_VISIBLE = 0x10000000


class Wakes:
    """A wake callback that counts, and remembers when it was called."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self):
        self.times.append(time.monotonic())

    @property
    def count(self) -> int:
        return len(self.times)


# -- pure decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("mask, letters", [(0, []), (1, ["A"]), (0b10100, ["C", "E"]),
                                           (1 << 25, ["Z"]), ((1 << 26) - 1, [chr(65 + i) for i in range(26)]),
                                           (1 << 26, [])])
def test_drive_letters_from_a_unit_mask(mask, letters):
    assert drive_letters(mask) == letters


def volume(unitmask: int, flags: int = 0, devicetype: int = DBT_DEVTYP_VOLUME) -> DEV_BROADCAST_VOLUME:
    return DEV_BROADCAST_VOLUME(dbcv_size=ctypes.sizeof(DEV_BROADCAST_VOLUME), dbcv_devicetype=devicetype,
                                dbcv_unitmask=unitmask, dbcv_flags=flags)


@pytest.mark.parametrize("wparam, struct, expected", [
    (DBT_DEVICEARRIVAL, volume(1 << 4), VolumeChange(True, ("E",), False)),
    (DBT_DEVICEREMOVECOMPLETE, volume(0b110000), VolumeChange(False, ("E", "F"), False)),
    (DBT_DEVICEARRIVAL, volume(1 << 25, DBTF_NET), VolumeChange(True, ("Z",), True)),
    (DBT_DEVICEARRIVAL, volume(1 << 4, devicetype=DBT_DEVTYP_PORT), None),   # a COM port, not a volume
    (DBT_DEVICEQUERYREMOVE, volume(1 << 4), None),                           # a request, not a change
    (DBT_DEVNODES_CHANGED, None, None),                                      # no lParam at all
])
def test_a_device_change_is_decoded_from_the_broadcast_structure(wparam, struct, expected):
    lparam = ctypes.addressof(struct) if struct is not None else 0
    assert volume_change(wparam, lparam) == expected


# -- Windows: a fake message pump ------------------------------------------------------------


class FakeUser32:
    """user32 and kernel32 as the Windows source calls them.

    Windows broadcasts WM_DEVICECHANGE to top-level windows only (a message-only window,
    parent HWND_MESSAGE, gets no broadcasts): :meth:`broadcast` does the same. Messages
    reach the window procedure that RegisterClassW registered, through the source's own
    GetMessageW/DispatchMessageW loop, which must run in the thread that made the window.
    DefWindowProcW destroys a window on WM_CLOSE, as the real one does. (Windows *sends* the
    broadcast, so the real GetMessageW calls the window procedure itself instead of returning
    the message for DispatchMessageW; the procedure, its thread and its arguments are the same.)
    """

    INSTANCE = 0x400000

    def __init__(self, *, fail: str | None = None):
        self.calls: list[tuple] = []
        self.fail = fail
        self.messages: queue.Queue = queue.Queue()
        self.procs: dict[str, object] = {}
        self.windows: dict[int, tuple[object, object]] = {}   # hwnd -> (window procedure, parent)
        self.results: list[tuple[int, int]] = []              # (message, what the procedure returned)
        self.pump_thread: int | None = None
        self._keep: list = []

    def api(self) -> Win32:
        return Win32(**{name: getattr(self, name) for name in Win32._fields})

    def GetModuleHandleW(self, name):  # noqa: N802 - the Windows API's names
        self.calls.append(("GetModuleHandleW", name))
        return self.INSTANCE

    def RegisterClassW(self, wndclass):  # noqa: N802
        wc = wndclass._obj
        self.calls.append(("RegisterClassW", wc.lpszClassName, wc.hInstance))
        if self.fail == "RegisterClassW":
            return 0
        self.procs[wc.lpszClassName] = wc.lpfnWndProc
        return 0xC0DE

    def CreateWindowExW(self, ex_style, class_name, title, style, x, y, w, h, parent, menu, instance, param):  # noqa: N802
        self.calls.append(("CreateWindowExW", class_name, style, parent, instance))
        if self.fail == "CreateWindowExW":
            return None
        hwnd = 0x1000 + len(self.windows)
        self.windows[hwnd] = (self.procs[class_name], parent)
        self.pump_thread = threading.get_ident()
        return hwnd

    def GetMessageW(self, msg, hwnd, first, last):  # noqa: N802
        assert threading.get_ident() == self.pump_thread, "messages are read in the window's own thread"
        assert (hwnd, first, last) == (None, 0, 0)
        target, message, wparam, lparam = self.messages.get(timeout=20)
        if message is None:
            return 0   # WM_QUIT
        m = msg._obj
        m.hWnd, m.message, m.wParam, m.lParam = target, message, wparam, lparam
        return 1

    def TranslateMessage(self, msg):  # noqa: N802
        return 0

    def DispatchMessageW(self, msg):  # noqa: N802
        m = msg._obj
        proc, _ = self.windows[m.hWnd]
        result = proc(m.hWnd, m.message, m.wParam, m.lParam)
        self.results.append((m.message, result))
        return result

    def DefWindowProcW(self, hwnd, message, wparam, lparam):  # noqa: N802
        self.calls.append(("DefWindowProcW", message))
        if message == WM_CLOSE:
            proc, _ = self.windows.pop(hwnd)
            proc(hwnd, WM_DESTROY, 0, 0)
        return 0

    def PostMessageW(self, hwnd, message, wparam, lparam):  # noqa: N802
        self.calls.append(("PostMessageW", hwnd, message))
        self.messages.put((hwnd, message, wparam, lparam))
        return 1

    def PostQuitMessage(self, code):  # noqa: N802
        self.calls.append(("PostQuitMessage", code))
        self.messages.put((None, None, 0, 0))

    def UnregisterClassW(self, class_name, instance):  # noqa: N802
        self.calls.append(("UnregisterClassW", class_name, instance))
        return 1

    def broadcast(self, wparam: int, struct=None) -> None:
        """The system's WM_DEVICECHANGE to every top-level window (lParam points at ``struct``)."""
        self._keep.append(struct)
        lparam = ctypes.addressof(struct) if struct is not None else 0
        for hwnd, (_, parent) in list(self.windows.items()):
            if parent is None:
                self.messages.put((hwnd, WM_DEVICECHANGE, wparam, lparam))


def test_windows_source_wakes_on_volume_arrival_and_removal_through_its_message_pump():
    fake, wakes = FakeUser32(), Wakes()
    source = WindowsDeviceChange(api=fake.api())
    source.start(wakes)
    assert source.name == "wm_devicechange" and source.rescan_seconds
    register = next(c for c in fake.calls if c[0] == "RegisterClassW")
    create = next(c for c in fake.calls if c[0] == "CreateWindowExW")
    assert register == ("RegisterClassW", source.class_name, FakeUser32.INSTANCE)
    # A hidden top-level window: no parent (HWND_MESSAGE would get no broadcasts), never visible.
    assert create[1] == source.class_name and create[3] is None and not create[2] & WS_VISIBLE

    sent = time.monotonic()
    fake.broadcast(DBT_DEVICEARRIVAL, volume(1 << 4))                 # E: plugged in
    wait_for(lambda: wakes.count == 1, 1, "the arrival to wake the watcher")
    latency = wakes.times[0] - sent
    fake.broadcast(DBT_DEVICEARRIVAL, volume(1 << 25, DBTF_NET))      # a mapped network drive: skipped
    fake.broadcast(DBT_DEVNODES_CHANGED)                              # any device: not a volume
    fake.broadcast(DBT_DEVICEQUERYREMOVE, volume(1 << 4))             # asking, not removed yet
    fake.broadcast(DBT_DEVICEREMOVECOMPLETE, volume(1 << 4))          # E: gone
    wait_for(lambda: wakes.count == 2, 1, "the removal to wake the watcher")
    wait_for(lambda: len(fake.results) == 5, 1, "every message to be handled")
    assert wakes.count == 2
    assert [r for m, r in fake.results if m == WM_DEVICECHANGE] == [1] * 5   # TRUE: never deny a removal

    source.stop()
    assert not source._thread.is_alive()
    tail = [c[0] for c in fake.calls if c[0] in ("PostMessageW", "DefWindowProcW", "PostQuitMessage",
                                                "UnregisterClassW")]
    assert tail == ["PostMessageW", "DefWindowProcW", "PostQuitMessage", "UnregisterClassW"]
    assert ("UnregisterClassW", source.class_name, FakeUser32.INSTANCE) in fake.calls
    print(f"WM_DEVICECHANGE -> wake: {latency * 1000:.1f} ms (fake pump)")


@pytest.mark.parametrize("fail", ["RegisterClassW", "CreateWindowExW"])
def test_windows_source_that_cannot_make_its_window_falls_back_to_polling(fail):
    fake, wakes = FakeUser32(fail=fail), Wakes()
    with pytest.raises(OSError, match=fail):
        WindowsDeviceChange(api=fake.api()).start(wakes)
    started = start_events(WindowsDeviceChange(api=FakeUser32(fail=fail).api()), wakes)
    assert type(started) is DriveEvents and started.name == "poll"


# -- macOS: a fake NSWorkspace notification center -------------------------------------------


class FakeNote:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name


class FakeNotificationCenter:
    """NSWorkspace's notification center: block observers by name, removed by their token."""

    def __init__(self):
        self.observers: dict[object, tuple[str, object]] = {}
        self.calls: list[tuple] = []

    def addObserverForName_object_queue_usingBlock_(self, name, obj, queue_, block):  # noqa: N802 - pyobjc's name
        self.calls.append(("addObserver", name, obj, queue_))
        token = object()
        self.observers[token] = (name, block)
        return token

    def removeObserver_(self, token):  # noqa: N802
        self.calls.append(("removeObserver",))
        del self.observers[token]

    def post(self, name: str) -> None:
        for observed, block in list(self.observers.values()):
            if observed == name:
                block(FakeNote(name))


class FakeWorkspace:
    def __init__(self):
        self.center = FakeNotificationCenter()

    def notificationCenter(self):  # noqa: N802
        return self.center


def test_mac_source_observes_mounts_unmounts_and_renames_and_removes_its_observers():
    workspace, wakes = FakeWorkspace(), Wakes()
    source = MacWorkspace(workspace)
    source.start(wakes)
    center = workspace.center
    # Every volume (object None), delivered on the posting thread (queue None): the block only sets an event.
    assert center.calls == [("addObserver", name, None, None) for name in MAC_NOTIFICATIONS]
    assert set(MAC_NOTIFICATIONS) == {"NSWorkspaceDidMountNotification", "NSWorkspaceDidUnmountNotification",
                                      "NSWorkspaceDidRenameVolumeNotification"}
    center.post("NSWorkspaceDidMountNotification")
    center.post("NSWorkspaceDidActivateApplicationNotification")   # not about volumes
    center.post("NSWorkspaceDidUnmountNotification")
    center.post("NSWorkspaceDidRenameVolumeNotification")
    assert wakes.count == 3
    source.stop()
    assert center.observers == {} and center.calls.count(("removeObserver",)) == 3
    center.post("NSWorkspaceDidMountNotification")
    assert wakes.count == 3


def test_mac_source_without_pyobjc_falls_back_to_polling():
    if sys.platform == "darwin":
        pytest.skip("pyobjc may be installed on macOS")
    assert start_events(MacWorkspace(), Wakes()).name == "poll"


# -- selection -------------------------------------------------------------------------------


@pytest.mark.parametrize("platform, run_loop, name", [
    ("linux", True, "mount-table"), ("linux", False, "mount-table"),
    ("win32", True, "wm_devicechange"), ("win32", False, "wm_devicechange"),
    ("darwin", True, "nsworkspace"), ("darwin", False, "poll"),   # no main run loop, no notifications
    ("freebsd14", True, "poll"),
])
def test_each_os_gets_its_source(monkeypatch, platform, run_loop, name):
    monkeypatch.setattr(sys, "platform", platform)
    assert drive_event_source(main_run_loop=run_loop).name == name


def test_a_source_whose_api_is_missing_falls_back_to_polling_here():
    if not sys.platform.startswith("linux"):
        pytest.skip("checks the other OSes' sources on Linux")
    assert start_events(WindowsDeviceChange(), Wakes()).name == "poll"     # no user32 here
    assert start_events(LinuxMountTable("/nonexistent/mountinfo"), Wakes()).name == "poll"


# -- Linux: the real mount table -------------------------------------------------------------


def test_linux_mount_table_wakes_on_a_real_mount_and_unmount(ext4_drive):
    """The machine's own mount table (other tests may mount at the same time: a wake-up more is
    fine here; the private namespace below checks there are no stray ones)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux's mount table")
    wakes = Wakes()
    source = LinuxMountTable()
    source.start(wakes)
    try:
        before = wakes.count
        ext4_drive.unmount()
        wait_for(lambda: wakes.count > before, 2, "the unmount to wake")
        before = wakes.count
        started = time.monotonic()
        ext4_drive.mount()
        wait_for(lambda: wakes.count > before, 2, "the mount to wake")
        latency = wakes.times[before] - started
    finally:
        source.stop()
    assert not source._thread.is_alive()
    assert latency < 0.5
    print(f"mount -> mount-table wake: {latency * 1000:.0f} ms (incl. the mount command and the 0.1 s settle)")


PRIVATE_NAMESPACE = r"""
import subprocess, sys, tempfile, time
from core.platform.drive_events import LinuxMountTable
wakes = []
source = LinuxMountTable()
source.start(lambda: wakes.append(time.monotonic()))
time.sleep(0.5)
idle = len(wakes)
with tempfile.TemporaryDirectory() as where:
    subprocess.run(["mount", "-t", "tmpfs", "plugback-test", where], check=True)
    time.sleep(0.5)
    mounted = len(wakes)
    subprocess.run(["umount", where], check=True)
    time.sleep(0.5)
source.stop()
print(idle, mounted, len(wakes), source._thread.is_alive())
"""


def test_linux_mount_table_wakes_once_per_change_and_never_idle(tmp_path):
    """In a private mount namespace, where no other test's mounts show."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs Linux, root and unshare(1) for a private mount namespace")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", PRIVATE_NAMESPACE],
                          capture_output=True, text=True, timeout=60, env=subprocess_env(), cwd=repo_root())
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1", "2", "False"]   # idle: none; mount: one; unmount: one; stopped


# -- Windows: drive letters without psutil ---------------------------------------------------


class FakeKernel32:
    """GetLogicalDrives / GetDriveTypeW / GetVolumeInformationW / the bus query over a table of letters."""

    def __init__(self, drives: dict[str, tuple]):
        self.drives = drives     # letter -> (drive type, file system or None: no medium, flags, bus or None)
        self.calls: list[tuple] = []
        self.mode = 0
        self.handles: dict[int, str] = {}

    def GetLogicalDrives(self):  # noqa: N802
        return sum(1 << (ord(letter) - 65) for letter in self.drives)

    def GetDriveTypeW(self, root):  # noqa: N802
        self.calls.append(("GetDriveTypeW", root))
        return self.drives[root[0]][0]

    def GetVolumeInformationW(self, root, name, name_size, serial, max_len, flags, fs_name, fs_size):  # noqa: N802
        self.calls.append(("GetVolumeInformationW", root))
        assert self.mode & SEM_FAILCRITICALERRORS, "no 'insert a disk' box for an empty slot"
        assert fs_size >= 261 and ctypes.sizeof(fs_name) >= fs_size * ctypes.sizeof(ctypes.c_wchar)
        _, fstype, volume_flags, _ = self.drives[root[0]]
        if fstype is None:
            return 0
        fs_name.value = fstype
        flags._obj.value = volume_flags
        return 1

    def SetThreadErrorMode(self, mode, old):  # noqa: N802
        self.calls.append(("SetThreadErrorMode", mode))
        if old is not None:
            old._obj.value = self.mode
        self.mode = mode
        return 1

    def CreateFileW(self, path, access, share, security, disposition, flags, template):  # noqa: N802
        self.calls.append(("CreateFileW", path, access))
        assert (access, share, disposition) == (0, 3, 3), "metadata only, shared, existing: no admin rights needed"
        letter = path[4]
        if self.drives[letter][3] is None:
            return INVALID_HANDLE_VALUE
        handle = 0x100 + len(self.handles)
        self.handles[handle] = letter
        return handle

    def DeviceIoControl(self, handle, code, query, query_size, out, out_size, returned, overlapped):  # noqa: N802
        assert code == IOCTL_STORAGE_QUERY_PROPERTY and handle in self.handles
        q = query._obj
        assert (q.PropertyId, q.QueryType, query_size) == (0, 0, ctypes.sizeof(q))   # the device, standard query
        assert out_size == ctypes.sizeof(out._obj)
        out._obj.BusType = self.drives[self.handles[handle]][3]
        returned._obj.value = out_size
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.calls.append(("CloseHandle", handle))
        del self.handles[handle]
        return 1


def test_windows_listing_never_asks_network_or_cd_drives_and_tells_external_disks():
    k = FakeKernel32({"C": (DRIVE_FIXED, "NTFS", 0, BUS_NVME), "D": (DRIVE_CDROM, "CDFS", 0, None),
                      "E": (DRIVE_REMOVABLE, "exFAT", 0, BUS_USB), "F": (DRIVE_REMOVABLE, None, 0, None),
                      "G": (DRIVE_FIXED, "FAT32", FILE_READ_ONLY_VOLUME, None),
                      "H": (DRIVE_FIXED, "NTFS", 0, BUS_USB), "Z": (DRIVE_REMOTE, "NTFS", 0, None)})
    assert windows_partitions(k) == [Partition("C:\\", "C:\\", "NTFS", "rw,fixed"),
                                     Partition("E:\\", "E:\\", "exFAT", "rw,removable"),
                                     Partition("G:\\", "G:\\", "FAT32", "ro,fixed"),
                                     Partition("H:\\", "H:\\", "NTFS", "rw,fixed,external")]   # a USB disk
    asked = [c[1] for c in k.calls if c[0] == "GetVolumeInformationW"]
    assert asked == ["C:\\", "E:\\", "F:\\", "G:\\", "H:\\"]   # never D: (CD) nor Z: (network share)
    opened = [c[1] for c in k.calls if c[0] == "CreateFileW"]
    assert opened == ["\\\\.\\C:", "\\\\.\\G:", "\\\\.\\H:"]   # only fixed disks are asked their bus
    assert k.handles == {}, "every handle closed"
    assert k.calls[0] == ("SetThreadErrorMode", SEM_FAILCRITICALERRORS) and k.mode == 0   # put back


@pytest.mark.parametrize("opts, removable", [("rw,removable", True), ("rw,fixed,external", True),
                                             ("rw,fixed", False), ("ro,fixed", False)])
def test_windows_external_disks_count_as_removable(monkeypatch, opts, removable):
    from core.agent.drives import _removable

    monkeypatch.setattr(sys, "platform", "win32")
    assert _removable(Partition("H:\\", "H:\\", "NTFS", opts)) is removable
