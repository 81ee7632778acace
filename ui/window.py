"""The settings window process: ``plugback-tray --settings [--browser]``.

``main(argv)`` is what ``tray/__main__.py`` calls. It makes sure only one
settings window is open per user (``ui/instance.py``), then shows the pages
of ``ui/web`` in a pywebview window (GTK WebKit on Linux, else the platform's
native web view). When no webview backend can start (no display, missing
system libraries) or ``--browser`` is given, it serves the same pages on
127.0.0.1 (``ui/server.py``) and opens them in the default browser.

Nothing this process writes lets another local user drive it (issue #10,
docs/security.md): its log is user-only and never holds the browser session's
token, and the browser is handed a user-only redirect file, not the address.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Literal

from core.agent.config import Paths
from core.agent.ipc import agent_running
from core.agent.logs import private_log
from core.engine.atomic import replace_file
from core.errors import PlugbackError
from ui.api import Api, agent_request
from ui.instance import SettingsInstance, page_fragment
from ui.server import WEB_ROOT, SettingsServer, redirect_page

log = logging.getLogger(__name__)

#: The browser-mode server exits after this long without a request (the tab was closed).
BROWSER_IDLE_TIMEOUT = 600.0
#: The user-only page in the runtime folder that the browser opens; it redirects to the address.
OPEN_FILE = "settings-open.html"


def close_when_agent_quits(paths: Paths, close, *, interval: float = 2.0) -> threading.Thread:
    """Call ``close()`` once the agent, after answering at least once, stops answering.

    "Quit" in the tray ends Plugback, settings included: a window left behind could
    do nothing. A window opened while no agent runs stays (it says the agent is not
    running) until the user closes it.
    """
    def watch() -> None:
        seen, misses = False, 0
        while True:
            time.sleep(interval)
            if agent_running(paths):
                seen, misses = True, 0
            elif seen:
                misses += 1
                if misses >= 2:   # not a hiccup: gone for two checks in a row
                    log.info("the agent quit: closing the settings")
                    close()
                    return

    thread = threading.Thread(target=watch, name="agent-watch", daemon=True)
    thread.start()
    return thread


class NoWebview(Exception):
    """No webview backend can start here; the message says why."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plugback-tray --settings", description="Open the Plugback settings window.")
    parser.add_argument("--settings", action="store_true", help=argparse.SUPPRESS)  # passed through by the tray
    parser.add_argument("--browser", action="store_true",
                        help="open the settings in the default web browser instead of a window")
    parser.add_argument("--debug", action="store_true", help="log every API call to settings.log")
    parser.add_argument("--page", default="", help="the page to open first (e.g. restore)")
    parser.add_argument("--inspector", action="store_true", help="allow the web inspector in window mode")
    # The tray passes its own argv through (--verbose, ...): ignore what is not ours.
    args, _unknown = parser.parse_known_args(argv)
    return args


def _setup_logging(paths: Paths, debug: bool) -> None:
    """settings.log: user-only, in the log folder ``Paths.ensure`` made 0700 (as the agent's agent.log)."""
    root = logging.getLogger()
    root.addHandler(private_log(paths.log_dir / "settings.log", max_bytes=1 << 20, backups=2))
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Open the settings (or focus the open one). Returns the process exit code."""
    args = _parse(sys.argv[1:] if argv is None else list(argv))
    paths = Paths.default()
    paths.ensure()
    _setup_logging(paths, args.debug)
    instance = SettingsInstance(paths)
    if not instance.acquire():
        focused = instance.focus_existing(page=page_fragment(args.page))
        log.info("settings already open; asked it to come to the front (answered: %s)", focused)
        return 0 if focused else 1
    try:
        if not args.browser:
            try:
                run_window(paths, instance, debug=args.inspector, page=page_fragment(args.page))
                return 0
            except NoWebview as err:
                log.warning("no settings window possible (%s); opening the settings in the browser", err)
                print(f"Plugback: no window possible here ({err}); using the web browser.", file=sys.stderr)
        run_browser(paths, instance, page=page_fragment(args.page))
        return 0
    finally:
        release_restore_page(paths)
        instance.close()


def release_restore_page(paths: Paths) -> None:
    """The settings are closing: a Restore page shown in them holds automatic backups no longer
    (issue #14). Its own ``pagehide`` does not run when a native window is destroyed."""
    try:
        agent_request(paths)("restore_page", {"open": False})
    except (PlugbackError, OSError) as err:   # no agent (it quit, closing us): nothing is held
        log.info("could not tell the agent the settings closed: %s", err)


def _backend() -> Literal["gtk", "qt"] | None:
    """The pywebview GUI to ask for, or raise NoWebview when none can work here."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise NoWebview("no graphical display ($DISPLAY and $WAYLAND_DISPLAY are unset)")
        try:
            import gi

            gi.require_version("Gtk", "3.0")
            gi.require_version("WebKit2", "4.1")
            from gi.repository import Gtk, WebKit2  # noqa: F401 - probing that they load

            if not Gtk.init_check(sys.argv[:1])[0]:
                raise NoWebview("GTK cannot open the display")
            return "gtk"
        except (ImportError, ValueError) as err:
            log.info("GTK WebKit unavailable (%s); trying Qt", err)
            return "qt"
    return None  # Windows: EdgeChromium, macOS: Cocoa WebKit; pywebview picks


def run_window(paths: Paths, instance: SettingsInstance, *, debug: bool = False, page: str = "") -> None:
    """Show the settings in a native window until it is closed. Raises NoWebview if none can start."""
    gui = _backend()
    try:
        import webview
    except ImportError as err:
        raise NoWebview(f"pywebview is not installed ({err})") from None

    def pick_folder(start: str | None) -> str | None:
        chosen = webview.windows[0].create_file_dialog(webview.FileDialog.FOLDER, directory=start or "")
        return chosen[0] if chosen else None

    api = Api(agent_request(paths), mode="window", pick_folder=pick_folder)
    window = webview.create_window("Plugback settings", url=str(WEB_ROOT / "index.html") + page, js_api=api,
                                   width=1080, height=760, min_size=(480, 420), text_select=True, zoomable=True)
    if window is None:   # typed so; pywebview 5 always returns the window
        raise NoWebview("pywebview made no window")

    def focus() -> None:
        # pywebview has no "raise"; un-minimise, show, and flick on_top to get in front.
        window.restore()
        window.show()
        window.on_top = True
        window.on_top = False

    shown = threading.Event()
    window.events.shown += shown.set
    instance.serve(focus, lambda page: window.evaluate_js(f"location.hash = {json.dumps(page)}"))
    close_when_agent_quits(paths, window.destroy)   # from this thread, never inside a js_api call
    try:
        # http_server: the pages are ES modules, which WebKit will not load from file:// URLs.
        webview.start(gui=gui, http_server=True, debug=debug, private_mode=True)
    except Exception as err:  # pywebview raises WebViewException (or a backend's own error)
        if not shown.is_set():   # the backend never got a window up: the browser can still help
            raise NoWebview(f"{type(err).__name__}: {err}") from None
        raise


def open_in_browser(open_file: Path, url: str) -> bool:
    """Open ``url`` in the default browser ($BROWSER is honoured) without putting it on a command line.

    ``url`` holds the session token, and a browser's command line is readable by every
    local user (``/proc/<pid>/cmdline``): the browser gets ``open_file`` instead, a
    0600 page in the user's runtime folder that redirects to ``url``.
    """
    replace_file(open_file, redirect_page(url), mode=0o600, durable=False)
    return webbrowser.open(open_file.as_uri())


def _on_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def run_browser(paths: Paths, instance: SettingsInstance, *, open_browser: bool = True, page: str = "") -> None:
    """Serve the settings on 127.0.0.1 and open them in the default browser ($BROWSER is honoured)."""
    api = Api(agent_request(paths), mode="browser")
    server = SettingsServer(api, idle_timeout=BROWSER_IDLE_TIMEOUT)
    open_file = (paths.runtime_dir / OPEN_FILE).absolute()
    asked: dict[str, str] = {}   # a later start's --page, opened by its focus request
    instance.serve(lambda: open_in_browser(open_file, server.url + asked.pop("page", "")),
                   lambda fragment: asked.update(page=fragment))
    close_when_agent_quits(paths, server.closing.set)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: server.closing.set())   # end cleanly: remove the file
    url = server.url + page
    replace_file(open_file, redirect_page(url), mode=0o600, durable=False)
    # The address holds the token: shown on the user's own terminal (headless ssh: forward the port and
    # open it), never logged. Started by the agent, stdout may end in a log: name the user-only file instead.
    print(f"Plugback settings: {url if _on_terminal() else open_file.as_uri()}", flush=True)
    log.info("settings served on 127.0.0.1:%s (open %s)", server.server_address[1], open_file)
    if open_browser and not webbrowser.open(open_file.as_uri()):
        print("Open that address in a web browser on this computer.", file=sys.stderr, flush=True)
    try:
        server.serve_until_idle()
    except KeyboardInterrupt:
        server.shutdown()
    finally:
        open_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
