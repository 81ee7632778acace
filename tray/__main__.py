"""``plugback-tray``: start the agent (icon + drive watcher + scheduler + job runners + IPC server).

    plugback-tray              the agent with its tray icon
    plugback-tray --no-icon    the agent without an icon (servers, tests)
    plugback-tray --settings   the settings window process (started by the agent)

A second ``plugback-tray`` finds the running agent over IPC, asks it to open
the settings window and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading

from core.agent.config import Paths
from core.agent.logs import FORMAT, private_log
from core.errors import PlugbackError

log = logging.getLogger("plugback.tray")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plugback-tray", description="The Plugback agent and tray icon.")
    p.add_argument("--no-icon", action="store_true", help="run without a tray icon (headless agent)")
    p.add_argument("--settings", action="store_true", help="open the settings window (window process)")
    p.add_argument("--browser", action="store_true",
                   help="with --settings: open the settings in the web browser instead of a window")
    p.add_argument("--page", metavar="PAGE",
                   help="with --settings: the page to open (overview, jobs, drives, restore, history, preferences)")
    p.add_argument("--debug", action="store_true",
                   help="with --settings: log every request and API call to settings.log")
    p.add_argument("--inspector", action="store_true", help="with --settings: allow the web inspector")
    p.add_argument("--poll-interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--verbose", "-v", action="store_true", help="log debug details")
    return p


def _setup_logging(paths: Paths, verbose: bool) -> None:
    """agent.log (user-only, in the 0700 log folder made by ``Paths.ensure``), and stderr when there is one."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(private_log(paths.agent_log, max_bytes=1_000_000, backups=3))
    if sys.stderr is not None:   # a windowed (frozen) app has no stderr
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(console)


def _run_settings_window(argv: list[str]) -> int:
    """``plugback-tray --settings``: run the settings window process (``python -m ui``).

    tray never imports ui (they talk over IPC): the window is started as its own
    process, the same one the agent starts for "Open settings…".
    """
    from core.agent.agent import settings_command

    cmd = [*settings_command(), *(a for a in argv if a != "--settings")]
    if sys.platform != "win32":
        os.execv(cmd[0], cmd)  # noqa: S606 - become the window: our starter holds its pid
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``plugback-tray``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.settings:
        return _run_settings_window(argv)
    paths = Paths.default()
    paths.ensure()
    if _hand_over(paths):
        return 0
    _setup_logging(paths, args.verbose)
    agent = _make_agent(paths, args.poll_interval)
    if agent is None:
        return 1
    return _run_agent(agent, paths, args)


def _hand_over(paths: Paths) -> bool:
    """Single instance: if an agent already runs for this user, ask it to open settings (True)."""
    from core.agent.ipc import agent_running, call

    if not agent_running(paths):
        return False
    try:
        call("open_settings", paths)
    except PlugbackError as err:
        print(f"plugback-tray: {err.message}", file=sys.stderr)
    return True


def _make_agent(paths: Paths, poll_interval: float):
    """The Agent with this OS's notifier and ejector, or None (said in the log and on stderr)."""
    from core import platform as plat
    from core.agent.agent import Agent
    from core.agent.agent_state import AgentOptions

    try:
        return Agent(paths, notifier=plat.notifier(), ejector=plat.ejector(),
                     options=AgentOptions(poll_interval=poll_interval))
    except PlugbackError as err:   # e.g. settings written by a newer Plugback
        log.error("%s", err.message)
        if sys.stderr is not None:
            print(f"plugback-tray: {err.message}", file=sys.stderr)
        return None


def _run_agent(agent, paths: Paths, args) -> int:
    """Start the icon, the IPC server and the threads; run until quit; stop cleanly."""
    from core.agent.handlers import Handlers
    from core.agent.ipc import Server
    from core.agent.watcher import DriveWatcher, Scheduler
    from core.platform import drive_event_source

    done = threading.Event()
    icon = None

    def quit_agent():
        if not done.is_set():
            done.set()
            if icon is not None:
                icon.stop()

    if not args.no_icon:
        icon = _make_icon(agent, quit_agent)   # before the server, so status names the backend
    try:
        agent.apply_start_at_login()
    except OSError as err:
        log.warning("could not update the start-at-login entry: %s", err)
    try:
        server = Server(paths, Handlers(agent, on_quit=quit_agent).table()).start()
    except PlugbackError as err:
        log.error("%s", err.message)
        return 1
    # Only now, as the one agent serving this user: runs left 'running' were cut off by a crash.
    agent.history.close_interrupted(agent.clock.now())
    # macOS delivers NSWorkspace's drive notifications only to a running main run loop (the icon's).
    events = drive_event_source(main_run_loop=icon is not None)
    threads = (DriveWatcher(agent, interval=args.poll_interval, events=events), Scheduler(agent))
    for thread in threads:
        thread.start()
    agent.start_watching()   # the change journal and live mode (issue #12)
    log.info("agent started (pid %s, tray: %s)", os.getpid(), agent.backend)
    if icon is not None and not agent.config.jobs:
        # First run (nothing set up yet): show the settings, whose first-run flow takes it from there.
        agent.open_settings()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: quit_agent())
    try:
        if icon is not None:
            icon.run()          # the GUI loop owns the main thread until quit
        while not done.wait(0.5):
            pass
    finally:
        for thread in threads:
            thread.stop()
        server.close()
        # Quit lets nothing half-done linger: running backups stop cleanly (resumed next time).
        agent.shutdown(cancel=True)
        log.info("agent stopped")
    return 0


def _make_icon(agent, quit_agent):
    """The tray icon, or None (headless) when no backend works; the backend is named in status."""
    from core.platform.notify import CallbackNotifier
    from tray.icon import TrayIcon, load_backend

    try:
        module, name = load_backend()
        icon = TrayIcon(agent, module, name, quit_agent)
    except Exception as err:   # noqa: BLE001 - no display, no tray: keep backing up without an icon
        log.warning("no tray icon (%s); the agent runs without one", err)
        agent.backend = "none"
        return None
    agent.backend = name if name != "xorg" else "xorg (no menu)"
    if sys.platform == "win32":
        agent.notifier.inner = CallbackNotifier(icon.notify)
    return icon


if __name__ == "__main__":
    sys.exit(main())
