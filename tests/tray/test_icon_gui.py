"""The real pystray icon under Xvfb: icon images, and every menu item invoked through pystray."""

import json
import shutil
import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from core.agent.config import Destination, Job
from core.agent.ipc import call
from core.platform.notify import read_log
from tests.support.agent import add_drive_job, wait_for
from tests.support.env import subprocess_env
from tests.support.trees import make_tree
from tray import menu as menu_mod
from tray.icon import COLOURS, TrayIcon, draw_icon


def test_icon_images_differ_per_state():
    images = {s: draw_icon(s) for s in COLOURS}
    assert all(im.size == (64, 64) and im.mode == "RGBA" for im in images.values())
    assert len({im.tobytes() for im in images.values()}) == 4
    assert draw_icon("idle", 22).size == (22, 22)


class Ejected:
    def __init__(self):
        self.mounts = []

    def eject(self, mount):
        self.mounts.append(mount)   # record; the drive fixture unmounts it for real afterwards


@pytest.fixture
def tray(xvfb_display, make_agent, paths, monkeypatch):
    """A TrayIcon on pystray's xorg backend (Xvfb has no StatusNotifier host), running in a thread."""
    trayer = subprocess.Popen(["trayer", "--expand", "false"], env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("trayer") else None
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    from tray.icon import load_backend

    module, name = load_backend()
    assert name == "xorg"
    agent, watcher = make_agent()
    agent.ejector = Ejected()
    quit_called = threading.Event()
    icon = TrayIcon(agent, module, name, quit_called.set)
    ready = threading.Event()

    def setup(i):
        i.visible = True
        ready.set()

    # pystray's xorg backend never finishes stopping from run_detached(); run() in a thread instead.
    thread = threading.Thread(target=icon.run, kwargs={"setup": setup}, daemon=True)
    thread.start()
    assert ready.wait(20), "the icon did not come up"
    yield icon, agent, watcher, quit_called
    icon.stop()
    thread.join(10)
    if trayer:
        trayer.terminate()
        trayer.wait(10)


def item(icon, text):
    items = list(icon.icon.menu.items)
    return next(i for i in items if str(i.text).startswith(text))


def sub_item(icon, parent, text):
    return next(i for i in item(icon, parent).submenu.items if str(i.text) == text)


def test_every_menu_item_through_pystray(tray, paths, ext4_drive, tmp_path):
    icon, agent, watcher, quit_called = tray
    src = make_tree(tmp_path / "Docs", {"a.txt": b"a"})
    big = make_tree(tmp_path / "Big", {f"f{i:04}": bytes([i % 256]) * 20_000 for i in range(3000)})
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], delay=60)
    agent.edit_config(lambda c: c.jobs.append(Job(name="Big", sources=[str(big)],
                                                  destination=Destination(path=str(tmp_path / "bigset")))))
    watcher.poll()
    pi = icon.icon
    texts = [str(i.text) for i in pi.menu.items]
    assert texts[1] == "Backup to Blue starts in 59 s — Cancel" or texts[1].startswith("Backup to Blue starts in")
    assert menu_mod.icon_state(agent.tray_state()) == "idle"

    # Cancel the pending connect backup.
    item(icon, "Backup to Blue")(pi)
    assert agent.pending == {}

    # Back up now -> one job; the icon turns "running" while it runs.
    sub_item(icon, "Back up now", "Docs")(pi)
    wait_for(lambda: [r for r in agent.history.runs("Docs") if r.status == "ok"] and not agent.running(),
             60, what="Docs backup")
    assert str(pi.menu.items[0].text).startswith("Last successful backup")
    assert [n["kind"] for n in read_log(paths.notifications_log) if n["kind"] != "offer"][-2:] == \
        ["finished", "safe_to_unplug"]

    # Back up now -> all jobs, then Stop backup cancels the big one.
    sub_item(icon, "Back up now", "All jobs")(pi)
    wait_for(lambda: agent.running(), 60, what="a running backup")
    wait_for(lambda: pi.icon is icon.images["running"], 60, what="the running icon")
    assert item(icon, "Stop backup").enabled
    item(icon, "Stop backup")(pi)
    wait_for(lambda: not agent.running() and not agent.queued(), 60, what="the stop")
    assert agent.history.runs("Big")[0].status in ("cancelled", "ok")

    # Pause for an hour, then resume.
    sub_item(icon, "Pause automatic backups", "For 1 hour")(pi)
    assert agent.is_paused() and agent.paused_until - agent.clock.now() <= timedelta(hours=1)
    wait_for(lambda: pi.icon is icon.images["paused"] or menu_mod.icon_state(agent.tray_state()) != "paused",
             60, what="the paused icon")
    item(icon, "Resume automatic backups")(pi)
    assert not agent.is_paused()
    sub_item(icon, "Pause automatic backups", "Until tomorrow")(pi)
    assert agent.paused_until.astimezone().hour == 8
    item(icon, "Resume")(pi)
    sub_item(icon, "Pause automatic backups", "Until I resume")(pi)
    assert agent.is_paused() and agent.paused_until is None
    item(icon, "Resume")(pi)

    # Open settings / Restore files start the window process.
    agent.options.settings_command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('x')",
                                      str(tmp_path / "opened")]
    item(icon, "Open settings")(pi)
    item(icon, "Restore files")(pi)
    wait_for(lambda: (tmp_path / "opened").exists() and (tmp_path / "opened").read_text() == "xx",
             60, what="two window launches")

    # Eject the idle drive.
    item(icon, "Eject Blue")(pi)
    assert agent.ejector.mounts == [str(ext4_drive.mount_point)] and drive_id not in agent.present
    assert read_log(paths.notifications_log)[-1]["kind"] == "safe_to_unplug"
    assert not any(str(i.text).startswith("Eject") for i in pi.menu.items)

    # Quit.
    item(icon, "Quit")(pi)
    assert quit_called.is_set()


def test_real_tray_process_picks_appindicator_under_dbus(xvfb_display, paths):
    """plugback-tray with its icon, in a D-Bus session: the AppIndicator backend, quit over IPC."""
    if not shutil.which("dbus-run-session"):
        pytest.skip("dbus-run-session is missing (Debian: apt-get install dbus)")
    env = subprocess_env({"DISPLAY": xvfb_display.name})
    env.pop("PYSTRAY_BACKEND", None)
    proc = subprocess.Popen(["dbus-run-session", "--", sys.executable, "-m", "tray", "--poll-interval", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_for(lambda: _status(paths) or proc.poll() is not None, 30, "the tray agent")
        assert proc.poll() is None, proc.stdout.read()
        assert status["backend"] == "appindicator"
        call("quit", paths)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _status(paths):
    try:
        return call("status", paths)
    except Exception:   # noqa: BLE001 - not up yet
        return None


APPINDICATOR_SCRIPT = r"""
import json, sys, threading, time
from core.agent.config import Paths
from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from tray.icon import TrayIcon, load_backend

paths = Paths.default()
agent = Agent(paths, options=AgentOptions(battery=lambda: None))
module, name = load_backend()
done = threading.Event()
icon = TrayIcon(agent, module, name, done.set)
report = {"backend": name}

def drive(i):
    i.visible = True
    def clicks():
        try:
            items = list(i.menu.items)
            report["menu"] = [str(x.text) for x in items]
            pause = next(x for x in items if str(x.text) == "Pause automatic backups")
            next(x for x in pause.submenu.items if str(x.text) == "Until I resume")(i)
            report["paused"] = agent.is_paused()
            time.sleep(1)                      # let the menu rebuild on the GTK main loop
            items = list(i.menu.items)
            next(x for x in items if str(x.text) == "Resume automatic backups")(i)
            report["resumed"] = not agent.is_paused()
            next(x for x in items if str(x.text).startswith("Quit"))(i)
            report["quit"] = done.wait(5)
        finally:
            print(json.dumps(report), flush=True)
            icon.stop()
    threading.Thread(target=clicks, daemon=True).start()

icon.run(setup=drive)
"""


def test_menu_items_on_the_appindicator_backend(xvfb_display, paths):
    """The same adapter on the GTK AppIndicator backend (GTK loop on the main thread, clicks from another)."""
    if not shutil.which("dbus-run-session"):
        pytest.skip("dbus-run-session is missing (Debian: apt-get install dbus)")
    env = subprocess_env({"DISPLAY": xvfb_display.name, "PYSTRAY_BACKEND": "appindicator"})
    proc = subprocess.run(["dbus-run-session", "--", sys.executable, "-c", APPINDICATOR_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    report = json.loads(lines[-1])
    assert report["backend"] == "appindicator"
    assert report["menu"][0] == "No backup jobs yet" and "Open settings…" in report["menu"]
    assert report["paused"] and report["resumed"] and report["quit"], report
