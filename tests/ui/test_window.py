"""The settings window process: a real pywebview (GTK) window under Xvfb, the single-instance
focus hand-over, and the fallback to the browser when there is no display."""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest
from PIL import Image

from tests.support.env import subprocess_env
from tests.ui.helpers import tray_executable, wait_for

pytestmark = pytest.mark.slow


def settings_log(agent) -> str:
    path = agent.paths.log_dir / "settings.log"
    return path.read_text(errors="replace") if path.exists() else ""


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.gui
def test_window_opens_reaches_the_agent_is_captured_and_a_second_start_focuses_it(
        xvfb_display, screenshot, agent, tmp_path):
    agent.call("job_save", job={"name": "Documents", "sources": [str(tmp_path)], "destination": {"path": str(tmp_path / "b")}})
    out = open(tmp_path / "window.out", "wb")
    window = subprocess.Popen([str(tray_executable()), "--settings"], env=subprocess_env(), stdout=out, stderr=out,
                              stdin=subprocess.DEVNULL)
    try:
        # The page's first api call (info) went JS -> pywebview -> ui.api -> IPC -> agent and back.
        wait_for(lambda: "settings page loaded (window mode; agent answering: yes)" in settings_log(agent)
                 or window.poll() is not None, 60, "the window's page to call the api")
        assert window.poll() is None, (tmp_path / "window.out").read_text(errors="replace")
        # WebKit under Xvfb may take a moment to paint after the page's scripts ran.
        def painted():
            shot = screenshot("settings-window")
            image = Image.open(shot).convert("RGB")
            return image if len(image.getcolors(maxcolors=1 << 20) or []) > 50 else None

        image = wait_for(painted, 30, "the window to paint the page (not blank)", interval=1.0)
        # The window's light page occupies the middle of the black root window.
        assert sum(image.getpixel((image.width // 2, image.height // 2))) > 600

        second = subprocess.run([str(tray_executable()), "--settings"], env=subprocess_env(), timeout=30,
                                capture_output=True, stdin=subprocess.DEVNULL)
        assert second.returncode == 0, second.stderr
        wait_for(lambda: "a second start asked for the settings" in settings_log(agent), 10, "the focus request")
        assert window.poll() is None, "the first window must stay open"
    finally:
        stop(window)
        out.close()


@pytest.fixture
def browser_recorder(tmp_path):
    """A $BROWSER that records the URLs it is asked to open (instead of opening anything)."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "record-url"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {record}\n")
    script.chmod(0o755)
    return script, record


def opened(record) -> list[str]:
    return record.read_text().split() if record.exists() else []


def test_without_a_display_the_settings_open_in_the_browser(agent, browser_recorder, monkeypatch):
    script, record = browser_recorder
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = subprocess_env({"BROWSER": str(script)})
    proc = subprocess.Popen([str(tray_executable()), "--settings"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/[\w-]{32,}/", line).group(0)
        wait_for(lambda: opened(record), 10, "$BROWSER to be run")
        assert opened(record) == [url]
        page = urllib.request.urlopen(url, timeout=10).read()
        assert b"<title>Plugback settings</title>" in page
        # Opening the settings again re-opens the same page instead of a second server.
        again = subprocess.run([str(tray_executable()), "--settings"], env=env, timeout=30, capture_output=True)
        assert again.returncode == 0 and b"http://" not in again.stdout
        wait_for(lambda: len(opened(record)) == 2, 10, "the page to be opened again")
        assert opened(record) == [url, url]
    finally:
        stop(proc)


def test_the_agent_opens_the_settings_and_browser_mode_can_be_forced(agent, browser_recorder, monkeypatch):
    """The tray's "Open settings…" (IPC open_settings) starts the window process; --browser forces
    the browser even where a display exists."""
    script, record = browser_recorder
    monkeypatch.setenv("DISPLAY", ":no-such-display")
    env = subprocess_env({"BROWSER": str(script)})
    proc = subprocess.Popen([str(tray_executable()), "--settings", "--browser", "--page", "restore"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/\S+/", line).group(0)
        assert line.strip().endswith(url + "#restore"), line   # --page restore opens the Restore page
        wait_for(lambda: opened(record) == [url + "#restore"], 10, "$BROWSER to open the page")
        # The agent's open_settings starts `plugback-tray --settings`, which finds this one and focuses it.
        agent.call("open_settings")
        wait_for(lambda: opened(record) == [url + "#restore", url], 20, "the open settings to be focused")
    finally:
        stop(proc)


@pytest.mark.gui
def test_when_gtk_cannot_open_the_display_the_settings_fall_back_to_the_browser(
        xvfb_display, agent, browser_recorder, monkeypatch):
    script, record = browser_recorder
    # A fault, not a fake: GTK is told to use Wayland, and there is no Wayland display.
    env = subprocess_env({"BROWSER": str(script), "GDK_BACKEND": "wayland"})
    proc = subprocess.Popen([str(tray_executable()), "--settings"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/\S+/", proc.stdout.readline()).group(0)
        wait_for(lambda: opened(record) == [url], 10, "$BROWSER to open the page")
        assert b"<title>Plugback settings</title>" in urllib.request.urlopen(url, timeout=10).read()
    finally:
        stop(proc)
    assert "using the web browser" in proc.stderr.read()
