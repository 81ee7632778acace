"""The tray icon: pillow-drawn state images, pystray backend choice, and the menu adapter.

Backends (DESIGN §8): win32 on Windows, darwin on macOS; on Linux
appindicator (PyGObject + Ayatana AppIndicator), then gtk, then xorg as a
last resort (it has no menu; the choice is logged and shown in ``status``).
``PYSTRAY_BACKEND`` is set explicitly before pystray is imported: pystray
picks its backend at import time, and a missing GTK typelib raises
ValueError, not ImportError, so its own fallback would not catch it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from PIL import Image, ImageDraw

from core.agent.restore_first import restore_instead
from tray import menu as menu_mod

log = logging.getLogger("plugback.icon")

COLOURS = {"idle": (46, 125, 50), "running": (21, 101, 192), "attention": (230, 81, 0), "paused": (117, 117, 117)}


def draw_icon(state: str, size: int = 64) -> Image.Image:
    """The icon for ``state`` (idle, running, attention, paused): a drive with a status badge."""
    s = size / 64
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    colour = COLOURS[state]
    # The drive body.
    d.rounded_rectangle((4 * s, 14 * s, 60 * s, 50 * s), radius=8 * s, fill=(38, 50, 56), outline=(236, 239, 241),
                        width=max(1, round(2 * s)))
    d.ellipse((10 * s, 38 * s, 16 * s, 44 * s), fill=colour)          # the activity light
    # The badge.
    d.ellipse((30 * s, 20 * s, 56 * s, 46 * s), fill=colour)
    white = (255, 255, 255)
    if state == "idle":        # a check mark
        d.line(((36 * s, 33 * s), (41 * s, 39 * s), (50 * s, 27 * s)), fill=white, width=max(1, round(4 * s)))
    elif state == "running":   # an arrow down into the drive
        d.polygon(((43 * s, 42 * s), (35 * s, 32 * s), (51 * s, 32 * s)), fill=white)
        d.rectangle((40 * s, 24 * s, 46 * s, 33 * s), fill=white)
    elif state == "attention":  # an exclamation mark
        d.rectangle((41 * s, 24 * s, 45 * s, 36 * s), fill=white)
        d.rectangle((41 * s, 39 * s, 45 * s, 43 * s), fill=white)
    else:                       # paused: two bars
        d.rectangle((37 * s, 26 * s, 41 * s, 40 * s), fill=white)
        d.rectangle((45 * s, 26 * s, 49 * s, 40 * s), fill=white)
    return img


def backend_order() -> list[str]:
    """pystray backends to try, best first, for this OS (``PYSTRAY_BACKEND`` alone if the user set it)."""
    chosen = os.environ.get("PLUGBACK_TRAY_BACKEND") or os.environ.get("PYSTRAY_BACKEND")
    if chosen:
        return [chosen]
    if sys.platform == "win32":
        return ["win32"]
    if sys.platform == "darwin":
        return ["darwin"]
    return ["appindicator", "gtk", "xorg"]


def _import_backend(name: str):
    # Imported by name (not importlib with a string) so PyInstaller sees each backend.
    if name == "appindicator":
        from pystray import _appindicator as module
    elif name == "gtk":
        from pystray import _gtk as module
    elif name == "xorg":
        from pystray import _xorg as module
    elif name == "win32":
        from pystray import _win32 as module
    elif name == "darwin":
        from pystray import _darwin as module
    else:
        raise ImportError(f"unknown pystray backend {name!r}")
    return module


def load_backend():
    """(module, name) of the first pystray backend that loads; ImportError listing why none did."""
    errors = []
    for name in backend_order():
        os.environ["PYSTRAY_BACKEND"] = name
        try:
            import pystray  # noqa: F401 - pystray binds its Icon to PYSTRAY_BACKEND on first import

            module = _import_backend(name)
        except (ImportError, ValueError) as err:   # ValueError: gi.require_version without the typelib
            errors.append(f"{name}: {err}")
            log.info("tray backend %s unavailable: %s", name, err)
            continue
        if name == "xorg":
            log.warning("only pystray's xorg backend works here: the tray icon has no menu; "
                        "install gir1.2-ayatanaappindicator3-0.1 for a full tray menu")
        return module, name
    raise ImportError("no tray backend works here: " + "; ".join(errors))


class TrayIcon:
    """pystray icon whose menu is rebuilt from the agent's state each time it is shown."""

    # Menu actions: name -> what the agent does. Kept here so tray/menu.py stays pure.
    ACTIONS = {
        "run_all": lambda agent, ui: agent.run_all(),
        "run_job": lambda agent, ui, name: agent.run_job(name),
        "stop": lambda agent, ui: agent.stop_job(None),
        "cancel_pending": lambda agent, ui, drive_id: agent.cancel_pending(drive_id),
        "start_pending": lambda agent, ui, drive_id: agent.start_pending(drive_id),
        "restore_instead": lambda agent, ui, drive_id: restore_instead(agent, drive_id),
        "pause": lambda agent, ui, until: agent.pause(until),
        "resume": lambda agent, ui: agent.resume(),
        "restore": lambda agent, ui: agent.open_settings("restore"),
        "open_settings": lambda agent, ui: agent.open_settings(),
        "open_page": lambda agent, ui, page: agent.open_settings(page),
        "decline_offer": lambda agent, ui, mount: agent.offers.decline(mount),
        "eject": lambda agent, ui, drive_id: agent.eject(drive_id),
        "quit": lambda agent, ui: ui.quit(),
    }

    def __init__(self, agent, backend_module, backend_name: str, on_quit):
        import pystray

        self.pystray = pystray
        self.agent = agent
        self.on_quit = on_quit
        self.backend_name = backend_name
        self.images = {state: draw_icon(state) for state in COLOURS}
        state = agent.tray_state()
        self.icon = backend_module.Icon("plugback", self.images[menu_mod.icon_state(state)],
                                        self._title(menu_mod.tooltip(state)), menu=pystray.Menu(self._items))
        self._last_refresh = 0.0
        self._refresh_pending = False
        self._lock = threading.Lock()
        agent.listeners.append(self.refresh)
        if not getattr(self.icon, "HAS_MENU", True):
            log.warning("tray backend %s shows no menu", backend_name)

    def _title(self, text: str) -> str:
        if self.backend_name == "xorg":
            # Xlib sets WM_NAME as latin-1: spell out the typographic characters.
            text = text.replace("—", "-").replace("…", "...").encode("latin-1", "replace").decode("latin-1")
        return text

    # -- menu ------------------------------------------------------------------------------

    def _items(self):
        return [self._to_pystray(i) for i in menu_mod.build_menu(self.agent.tray_state())]

    def _to_pystray(self, item: menu_mod.Item):
        p = self.pystray
        if item.separator:
            return p.Menu.SEPARATOR
        if item.submenu:
            sub = [self._to_pystray(i) for i in item.submenu]
            return p.MenuItem(item.text, p.Menu(*sub), enabled=item.enabled)
        if item.action is None:
            return p.MenuItem(item.text, None, enabled=False)
        return p.MenuItem(item.text, self._callback(item), enabled=item.enabled, default=item.default)

    def _callback(self, item: menu_mod.Item):
        def run(icon, _menu_item=None):
            try:
                self.ACTIONS[item.action](self.agent, self, *item.args)
            except Exception as err:   # noqa: BLE001 - a menu click must never kill the agent
                log.exception("menu action %s failed", item.action)
                self.agent.notifier.notify("Plugback", getattr(err, "message", str(err)), "failed")
            self.refresh()
        return run

    # -- updates ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw icon, tooltip and menu; at most twice a second (progress calls this often)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_refresh < 0.5:
                if not self._refresh_pending:
                    self._refresh_pending = True
                    t = threading.Timer(0.5, self._trailing_refresh)
                    t.daemon = True
                    t.start()
                return
            self._last_refresh = now
        self._apply()

    def _trailing_refresh(self) -> None:
        with self._lock:
            self._refresh_pending = False
            self._last_refresh = time.monotonic()
        self._apply()

    def _apply(self) -> None:
        state = self.agent.tray_state()
        try:
            self.icon.icon = self.images[menu_mod.icon_state(state)]
            self.icon.title = self._title(menu_mod.tooltip(state))
            self.icon.update_menu()
        except Exception:   # noqa: BLE001 - e.g. the icon is not visible yet
            log.debug("icon update failed", exc_info=True)

    def notify(self, title: str, message: str) -> None:
        self.icon.notify(message, title)

    def run(self, setup=None) -> None:
        """Show the icon and run the GUI loop (blocks; on the main thread for GTK and macOS)."""
        self.icon.run(setup=setup)

    def quit(self) -> None:
        self.on_quit()

    def stop(self) -> None:
        try:
            self.icon.stop()
        except Exception:   # noqa: BLE001
            log.debug("icon stop failed", exc_info=True)
