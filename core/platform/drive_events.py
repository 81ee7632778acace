"""Native drive events: a source that says "the volumes may have changed" the moment they do.

A source only wakes the drive watcher (``core/agent/watcher.py``); the watcher then
lists the volumes and diffs them, in one piece of code for every OS. Each source has
a ``name`` (``status.drive_events``) and ``rescan_seconds``, how often the watcher still
lists the volumes with no wake-up (a safety net for an event the OS never sent).

* ``mount-table`` (Linux): the kernel flags ``/proc/self/mountinfo`` (POLLPRI) on every
  mount and unmount, whoever mounts (udisks, fstab, ``mount``): the authority;
* ``wm_devicechange`` (Windows): a hidden top-level window gets the broadcast
  ``WM_DEVICECHANGE`` ``DBT_DEVICEARRIVAL`` / ``DBT_DEVICEREMOVECOMPLETE`` for volumes;
* ``nsworkspace`` (macOS): ``NSWorkspaceDidMountNotification``, ``DidUnmount``, ``DidRenameVolume``;
* ``poll`` (anywhere): no events, the watcher lists at its interval.

Selection is ``core.platform.drive_event_source``; :func:`start_events` falls back to
polling when a source cannot start (API missing, window not created).
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import sys
import threading
import time
from ctypes import wintypes
from typing import Callable, NamedTuple

from core.platform.volumes import drive_letters

log = logging.getLogger("plugback.drive_events")
Wake = Callable[[], None]
#: With events, the watcher still lists the volumes this often (a missed event costs at most this).
RESCAN_SECONDS = 30.0


class DriveEvents:
    """The interface, and the fallback: no events, the watcher polls at its own interval."""

    name = "poll"
    #: None: list at the watcher's own interval.
    rescan_seconds: float | None = None

    def start(self, wake: Wake) -> None:
        """Call ``wake()`` (from any thread) whenever volumes may have come or gone.

        Raises (OSError, ImportError...) when this OS's API is not there: see start_events.
        """

    def stop(self) -> None:
        """Stop calling ``wake``; waits for the source's thread."""


def start_events(source: DriveEvents, wake: Wake) -> DriveEvents:
    """``source`` started, or polling when it cannot start (the reason is logged)."""
    try:
        source.start(wake)
        return source
    except Exception as err:   # noqa: BLE001 - an optional source must never stop the watcher
        log.warning("drive events '%s' unavailable (%s); polling for drives instead", source.name, err)
        fallback = DriveEvents()
        fallback.start(wake)
        return fallback


# -- Linux: the mount table ------------------------------------------------------------------


class LinuxMountTable(DriveEvents):
    """Wakes on every change of the mount table (``poll()`` on ``/proc/self/mountinfo``).

    GIO's volume monitor and UDisks2 see only part of it (GIO: mounts under /media and
    /run/media; UDisks2: what udisks mounted) and sit on top of this same kernel event.
    """

    name = "mount-table"
    rescan_seconds = RESCAN_SECONDS
    #: FUSE mounts (exFAT, FAT helpers) are listed a moment before they answer: let them settle.
    SETTLE_SECONDS = 0.1

    def __init__(self, table: str = "/proc/self/mountinfo"):
        self.table = table
        self._thread: threading.Thread | None = None
        self._stop_w: int | None = None

    def start(self, wake: Wake) -> None:
        if sys.platform == "win32":
            raise OSError("there is no mount table on Windows")
        # The kernel compares the mount namespace's event count with the one this open file
        # last saw, and poll() itself takes the new one: no read is needed to re-arm.
        table = open(self.table, "rb")   # closed by the thread when it ends
        stop_r, self._stop_w = os.pipe()
        poller = select.poll()
        poller.register(table, select.POLLPRI | select.POLLERR)
        poller.register(stop_r, select.POLLIN)

        def watch() -> None:
            try:
                while not any(fd == stop_r for fd, _ in poller.poll()):
                    time.sleep(self.SETTLE_SECONDS)
                    wake()
            finally:
                table.close()
                os.close(stop_r)

        self._thread = threading.Thread(target=watch, name="drive-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop_w is not None:
            os.write(self._stop_w, b"x")
            if self._thread is not None:
                self._thread.join(5)
            os.close(self._stop_w)
            self._stop_w = None


# -- Windows: WM_DEVICECHANGE on a hidden window ---------------------------------------------

WM_DESTROY = 0x0002
WM_CLOSE = 0x0010
WM_DEVICECHANGE = 0x0219
DBT_DEVICEARRIVAL = 0x8000
DBT_DEVICEREMOVECOMPLETE = 0x8004
DBT_DEVTYP_VOLUME = 0x0002
DBTF_NET = 0x0002
LRESULT = wintypes.LPARAM
# 64-bit Windows has one calling convention; CFUNCTYPE elsewhere lets the fake pump of the
# tests call the same window procedure here.
if sys.platform == "win32":
    WNDPROC = ctypes.WINFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)
else:
    WNDPROC = ctypes.CFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)


class DEV_BROADCAST_HDR(ctypes.Structure):  # noqa: N801 - the Windows SDK's name
    _fields_ = [("dbch_size", wintypes.DWORD), ("dbch_devicetype", wintypes.DWORD),
                ("dbch_reserved", wintypes.DWORD)]


class DEV_BROADCAST_VOLUME(ctypes.Structure):  # noqa: N801
    _fields_ = [("dbcv_size", wintypes.DWORD), ("dbcv_devicetype", wintypes.DWORD),
                ("dbcv_reserved", wintypes.DWORD), ("dbcv_unitmask", wintypes.DWORD),
                ("dbcv_flags", wintypes.WORD)]


class WNDCLASSW(ctypes.Structure):
    _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", WNDPROC), ("cbClsExtra", ctypes.c_int),
                ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE), ("hIcon", wintypes.HICON),
                ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]


class VolumeChange(NamedTuple):
    """What one WM_DEVICECHANGE says about volumes."""

    arrived: bool          # False: removed
    letters: tuple[str, ...]
    network: bool          # a mapped network drive (the watcher skips those)


def volume_change(wparam: int, lparam: int) -> VolumeChange | None:
    """Decode a WM_DEVICECHANGE: a volume arrived or was removed, else None (other devices,
    other events such as DBT_DEVNODES_CHANGED or the query-remove requests)."""
    if wparam not in (DBT_DEVICEARRIVAL, DBT_DEVICEREMOVECOMPLETE) or not lparam:
        return None
    if DEV_BROADCAST_HDR.from_address(lparam).dbch_devicetype != DBT_DEVTYP_VOLUME:
        return None
    volume = DEV_BROADCAST_VOLUME.from_address(lparam)
    return VolumeChange(wparam == DBT_DEVICEARRIVAL, tuple(drive_letters(volume.dbcv_unitmask)),
                        bool(volume.dbcv_flags & DBTF_NET))


class Win32(NamedTuple):
    """The user32/kernel32 calls the Windows source makes (the tests pass a fake pump)."""

    GetModuleHandleW: Callable
    RegisterClassW: Callable
    UnregisterClassW: Callable
    CreateWindowExW: Callable
    DefWindowProcW: Callable
    GetMessageW: Callable
    TranslateMessage: Callable
    DispatchMessageW: Callable
    PostMessageW: Callable
    PostQuitMessage: Callable


def load_win32() -> Win32:
    """The real calls with their prototypes (64-bit handles and LPARAMs must not be cut)."""
    if sys.platform != "win32":
        raise OSError("WM_DEVICECHANGE exists on Windows only")
    user32 = ctypes.WinDLL("user32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    w = wintypes
    protos = {
        (kernel32, "GetModuleHandleW"): (w.HMODULE, [w.LPCWSTR]),
        (user32, "RegisterClassW"): (w.ATOM, [ctypes.POINTER(WNDCLASSW)]),
        (user32, "UnregisterClassW"): (w.BOOL, [w.LPCWSTR, w.HINSTANCE]),
        (user32, "CreateWindowExW"): (w.HWND, [w.DWORD, w.LPCWSTR, w.LPCWSTR, w.DWORD, ctypes.c_int, ctypes.c_int,
                                              ctypes.c_int, ctypes.c_int, w.HWND, w.HMENU, w.HINSTANCE, w.LPVOID]),
        (user32, "DefWindowProcW"): (LRESULT, [w.HWND, w.UINT, w.WPARAM, w.LPARAM]),
        (user32, "GetMessageW"): (w.BOOL, [ctypes.POINTER(w.MSG), w.HWND, w.UINT, w.UINT]),
        (user32, "TranslateMessage"): (w.BOOL, [ctypes.POINTER(w.MSG)]),
        (user32, "DispatchMessageW"): (LRESULT, [ctypes.POINTER(w.MSG)]),
        (user32, "PostMessageW"): (w.BOOL, [w.HWND, w.UINT, w.WPARAM, w.LPARAM]),
        (user32, "PostQuitMessage"): (None, [ctypes.c_int]),
    }
    calls = {}
    for (dll, fname), (restype, argtypes) in protos.items():
        fn = getattr(dll, fname)
        fn.restype, fn.argtypes = restype, argtypes
        calls[fname] = fn
    return Win32(**calls)


class WindowsDeviceChange(DriveEvents):
    """A hidden top-level window whose procedure wakes the watcher on volume arrival/removal.

    Not a message-only window (``HWND_MESSAGE``): those get no broadcast messages, and
    volume arrivals are broadcast to top-level windows. The window is never shown. It
    lives in its own thread, which runs the ``GetMessageW`` loop that window needs.
    """

    name = "wm_devicechange"
    rescan_seconds = RESCAN_SECONDS
    CLASS_PREFIX = "PlugbackDriveEvents"

    def __init__(self, api: Win32 | None = None):
        self._api = api
        self.api: Win32 | None = None
        self.hwnd = None
        self._thread: threading.Thread | None = None
        self._wake: Wake = lambda: None
        self._proc = WNDPROC(self._window_proc)   # kept referenced for the window's life
        self.class_name = f"{self.CLASS_PREFIX}{id(self):x}"

    def start(self, wake: Wake) -> None:
        self.api = self._api if self._api is not None else load_win32()
        self._wake = wake
        ready = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(ready, failure), name="drive-events", daemon=True)
        self._thread.start()
        if not ready.wait(5) or failure:
            raise OSError(failure[0] if failure else "the drive-events window did not start")

    def _pump(self, ready: threading.Event, failure: list[str]) -> None:
        api = self.api
        assert api is not None
        instance = api.GetModuleHandleW(None)
        wc = WNDCLASSW(lpfnWndProc=self._proc, hInstance=instance, lpszClassName=self.class_name)
        if not api.RegisterClassW(ctypes.byref(wc)):
            failure.append("RegisterClassW failed")
        else:
            self.hwnd = api.CreateWindowExW(0, self.class_name, "Plugback drive events", 0, 0, 0, 0, 0,
                                            None, None, instance, None)
            if not self.hwnd:
                failure.append("CreateWindowExW failed")
        ready.set()
        if failure:
            return
        msg = wintypes.MSG()
        while api.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:   # 0: WM_QUIT, -1: error
            api.TranslateMessage(ctypes.byref(msg))
            api.DispatchMessageW(ctypes.byref(msg))
        api.UnregisterClassW(self.class_name, instance)

    def _window_proc(self, hwnd, msg, wparam, lparam):
        try:
            if msg == WM_DEVICECHANGE:
                change = volume_change(wparam, lparam)
                if change is not None and not change.network:
                    log.debug("volume %s: %s", "arrived" if change.arrived else "removed", ",".join(change.letters))
                    self._wake()
                return 1   # TRUE: grant any request
            if msg == WM_DESTROY:
                assert self.api is not None
                self.api.PostQuitMessage(0)
                return 0
        except Exception:   # noqa: BLE001 - an exception must not cross back into user32
            log.exception("drive event handling failed")
            return 0
        assert self.api is not None
        return self.api.DefWindowProcW(hwnd, msg, wparam, lparam)

    def stop(self) -> None:
        if self.api is not None and self.hwnd:
            self.api.PostMessageW(self.hwnd, WM_CLOSE, 0, 0)   # DefWindowProc destroys it; WM_DESTROY quits
        if self._thread is not None:
            self._thread.join(5)
        self.hwnd = None


# -- macOS: NSWorkspace notifications --------------------------------------------------------

MAC_NOTIFICATIONS = ("NSWorkspaceDidMountNotification", "NSWorkspaceDidUnmountNotification",
                     "NSWorkspaceDidRenameVolumeNotification")


def _appkit():
    """NSWorkspace's shared instance and the notification names as AppKit defines them."""
    # pyobjc-framework-Cocoa (no type stubs; pystray needs it on macOS); ImportError without it
    import AppKit  # type: ignore[import-not-found]

    return AppKit.NSWorkspace.sharedWorkspace(), tuple(getattr(AppKit, name) for name in MAC_NOTIFICATIONS)


class MacWorkspace(DriveEvents):
    """Observers on NSWorkspace's notification center for volume mounts, unmounts and renames.

    NSWorkspace posts them on the main thread while its run loop runs: pystray's
    NSApplication loop does that, so this source is chosen only with the tray icon
    (headless agents poll). The observer block only calls ``wake``, which sets an event.
    """

    name = "nsworkspace"
    rescan_seconds = RESCAN_SECONDS

    def __init__(self, workspace=None):
        self._workspace = workspace
        self._center = None
        self._tokens: list = []

    def start(self, wake: Wake) -> None:
        workspace, names = (self._workspace, MAC_NOTIFICATIONS) if self._workspace is not None else _appkit()
        self._center = center = workspace.notificationCenter()

        def observed(note) -> None:
            log.debug("%s", note.name())
            wake()

        self._tokens = [center.addObserverForName_object_queue_usingBlock_(name, None, None, observed)
                        for name in names]

    def stop(self) -> None:
        for token in self._tokens:
            assert self._center is not None
            self._center.removeObserver_(token)
        self._tokens = []
