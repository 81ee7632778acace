"""The settings window process: a real pywebview (GTK) window under Xvfb, the single-instance
focus hand-over, and the fallback to the browser when there is no display."""

from __future__ import annotations

import re
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

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


class BrowserStandIn:
    """A $BROWSER that opens nothing: it records its own /proc/<pid>/cmdline (what every local user can
    read) and where the page it was given leads (the target of the redirect file, at that moment)."""

    def __init__(self, tmp_path):
        self.cmdlines = tmp_path / "cmdlines.txt"
        self.targets = tmp_path / "targets.txt"
        self.script = tmp_path / "browser-stand-in"
        self.script.write_text(
            "#!/bin/sh\n"
            f"tr '\\000' ' ' < /proc/$$/cmdline >> {self.cmdlines}; echo >> {self.cmdlines}\n"
            f"sed -n 's/.*http-equiv=\"refresh\" content=\"0;url=\\([^\"]*\\)\".*/\\1/p' \"${{1#file://}}\""
            f" >> {self.targets}\n")
        self.script.chmod(0o755)

    def opened(self) -> list[str]:
        """The addresses the browser was sent to (through the redirect file), in order."""
        return self.targets.read_text().split() if self.targets.exists() else []

    def assert_no_token_on_its_command_line(self, token: str) -> None:
        lines = self.cmdlines.read_text().splitlines()
        assert lines and all("settings-open.html" in line and token not in line for line in lines), lines


@pytest.fixture
def browser(tmp_path):
    return BrowserStandIn(tmp_path)


def open_file_from(line: str) -> Path:
    """The redirect file named on the window's stdout (a pipe, not a terminal: no address there)."""
    assert "http://" not in line, line
    path = Path(urllib.parse.unquote(re.search(r"file://(\S+)", line).group(1)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    return path


def token_of(url: str) -> str:
    return re.fullmatch(r"http://127\.0\.0\.1:\d+/([\w-]{32,})/(#\w+)?", url).group(1)


def assert_token_private(token: str, agent, tmp_path) -> None:
    """Issue #10: no log holds the token, and no other user can read a log or the redirect file."""
    files = [f for f in agent.paths.log_dir.parent.rglob("*") if f.is_file()] + list(tmp_path.glob("*.log"))
    assert any(f.name == "settings.log" for f in files)
    for f in files:
        if token in f.read_text(errors="replace"):
            assert f.name == "settings-open.html", f"the token is in {f}"
        if f.is_relative_to(agent.paths.log_dir):
            folder, own = agent.paths.log_dir.stat().st_mode, f.stat().st_mode
            assert not (folder & 0o077 and own & 0o077), f"{f} is readable by other users"
            if f.name.startswith("settings.log"):
                assert stat.S_IMODE(own) == 0o600, f
    assert stat.S_IMODE(agent.paths.log_dir.stat().st_mode) == 0o700


def test_without_a_display_the_settings_open_in_the_browser(agent, browser, monkeypatch, tmp_path):
    """--debug logs every request; still, neither the log nor the browser's command line holds the token."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    env = subprocess_env({"BROWSER": str(browser.script)})
    proc = subprocess.Popen([str(tray_executable()), "--settings", "--debug"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        open_file = open_file_from(proc.stdout.readline())
        wait_for(browser.opened, 10, "$BROWSER to be run")
        [url] = browser.opened()
        page = urllib.request.urlopen(url, timeout=10).read()
        assert b"<title>Plugback settings</title>" in page
        request = urllib.request.Request(url + "nope.js", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)
        # Opening the settings again re-opens the same page instead of a second server.
        again = subprocess.run([str(tray_executable()), "--settings"], env=env, timeout=30, capture_output=True)
        assert again.returncode == 0 and b"http://" not in again.stdout and b"file://" not in again.stdout
        wait_for(lambda: len(browser.opened()) == 2, 10, "the page to be opened again")
        assert browser.opened() == [url, url]
        wait_for(lambda: "refused GET /…/nope.js: foreign Host header" in settings_log(agent), 10, "the refusal")
        assert "GET /…/ 200" in settings_log(agent)   # --debug: request lines, redacted
        browser.assert_no_token_on_its_command_line(token_of(url))
        assert_token_private(token_of(url), agent, tmp_path)
    finally:
        stop(proc)
    assert not open_file.exists(), "the redirect file outlives the server"


def test_the_agent_opens_the_settings_and_browser_mode_can_be_forced(agent, browser, monkeypatch):
    """The tray's "Open settings…" (IPC open_settings) starts the window process; --browser forces
    the browser even where a display exists."""
    monkeypatch.setenv("DISPLAY", ":no-such-display")
    env = subprocess_env({"BROWSER": str(browser.script)})
    proc = subprocess.Popen([str(tray_executable()), "--settings", "--browser", "--page", "restore"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        open_file_from(proc.stdout.readline())
        wait_for(browser.opened, 10, "$BROWSER to open the page")
        [first] = browser.opened()
        assert first.endswith("/#restore"), first   # --page restore opens the Restore page
        url = first[:-len("#restore")]
        # The agent's open_settings starts `plugback-tray --settings`, which finds this one and focuses it.
        agent.call("open_settings")
        wait_for(lambda: browser.opened() == [first, url], 20, "the open settings to be focused")
        browser.assert_no_token_on_its_command_line(token_of(url))
    finally:
        stop(proc)


@pytest.mark.gui
def test_when_gtk_cannot_open_the_display_the_settings_fall_back_to_the_browser(
        xvfb_display, agent, browser, monkeypatch):
    # A fault, not a fake: GTK is told to use Wayland, and there is no Wayland display.
    env = subprocess_env({"BROWSER": str(browser.script), "GDK_BACKEND": "wayland"})
    proc = subprocess.Popen([str(tray_executable()), "--settings"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        open_file_from(proc.stdout.readline())
        wait_for(browser.opened, 10, "$BROWSER to open the page")
        [url] = browser.opened()
        assert b"<title>Plugback settings</title>" in urllib.request.urlopen(url, timeout=10).read()
    finally:
        stop(proc)
    assert "using the web browser" in proc.stderr.read()


def test_closing_the_settings_releases_the_restore_page_hold(agent, browser, monkeypatch):
    """Issue #14: the Restore page holds automatic backups while it is open; the window process
    says it closed when it ends (a destroyed native window never runs the page's pagehide)."""
    monkeypatch.setenv("DISPLAY", ":no-such-display")
    env = subprocess_env({"BROWSER": str(browser.script)})
    proc = subprocess.Popen([str(tray_executable()), "--settings", "--browser", "--page", "restore"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        open_file_from(proc.stdout.readline())
        agent.call("restore_page", open=True)        # what the page does (no browser renders it here)
        assert agent.call("status")["restore_page"] is True
    finally:
        stop(proc)                                    # SIGTERM: the settings end cleanly
    assert proc.returncode == 0
    assert agent.call("status")["restore_page"] is False
