"""A real agent in a subprocess, the real settings server in front of it, and pages in Chromium.

Used by tests/ui and tests/e2e: ``from tests.ui.helpers import agent, settings, open_page``.
The agent is ``plugback-tray --no-icon`` with this test's PLUGBACK_HOME (the
autouse ``plugback_env`` fixture isolates it); the window's api talks to it over
the real IPC, exactly as in the app.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.agent.config import Paths
from core.agent.ipc import Client, agent_running
from core.errors import PlugbackError
from tests.support.env import subprocess_env
from tests.support.waiting import wait_for  # noqa: F401 - re-exported for the ui tests
from ui.api import Api, agent_request
from ui.server import SettingsServer


def tray_executable() -> Path:
    """The installed ``plugback-tray`` script of this venv."""
    return Path(sys.executable).with_name("plugback-tray")




class AgentProcess:
    """``plugback-tray --no-icon`` running for this test."""

    def __init__(self, proc: subprocess.Popen, paths: Paths, log: Path):
        self.proc = proc
        self.paths = paths
        self.log = log

    @classmethod
    def start(cls, log: Path, *, env: dict | None = None, timeout: float = 30) -> "AgentProcess":
        paths = Paths.default()
        out = open(log, "ab")
        proc = subprocess.Popen([str(tray_executable()), "--no-icon", "--poll-interval", "0.5"],
                                env=subprocess_env(env), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        agent = cls(proc, paths, log)
        try:
            wait_for(lambda: proc.poll() is not None or agent_running(paths), timeout, "the agent to answer ping")
        except AssertionError:
            agent.stop()
            raise
        if proc.poll() is not None:
            raise AssertionError(f"the agent exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        return agent

    def call(self, cmd: str, **args):
        """One IPC request; returns ``data`` or raises the agent's error."""
        with Client(self.paths) as client:
            return client.call(cmd, **args)

    def job(self, name: str) -> dict:
        """The job's entry in ``status``."""
        return next(j for j in self.call("status")["jobs"] if j["name"] == name)

    def wait_idle(self, name: str, timeout: float = 60) -> dict:
        """Wait until the job is neither queued nor running and has a last run; returns that run."""
        def done():
            job = self.job(name)
            last = job["last_run"]
            return not job["running"] and not job.get("queued") and last and last["status"] != "running" and last
        return wait_for(done, timeout, f"job {name} to finish")

    def backup(self, name: str, timeout: float = 60) -> dict:
        """Run a job now and wait for it; returns the run (asserting it succeeded)."""
        before = (self.job(name)["last_run"] or {}).get("id")
        self.call("run_job", name=name)
        wait_for(lambda: (self.job(name)["last_run"] or {}).get("id") not in (None, before), timeout, f"{name} to start")
        run = self.wait_idle(name, timeout)
        assert run["status"] in ("ok", "warnings"), run
        return run

    def stop(self) -> None:
        """Ask the agent to quit over IPC; kill it if it does not go within 15 s."""
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except PlugbackError:
                self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def agent(plugback_env, tmp_path):
    """A real agent for this test (its log: ``agent.log`` in tmp_path)."""
    proc = AgentProcess.start(tmp_path / "agent-process.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def settings(agent):
    """The browser-fallback server with the real api, talking to ``agent``."""
    server = SettingsServer(Api(agent_request(agent.paths), mode="browser"))
    server.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class PageErrors(list):
    """JavaScript exceptions seen on a page (a page must never throw)."""


@pytest.fixture
def open_page(chromium_browser, settings):
    """``open_page(hash="", color_scheme="light", width=1200) -> Page`` on the settings, ready to use.

    Fails the test if the page threw an uncaught JavaScript error.
    """
    contexts, errors = [], PageErrors()

    def make(hash_: str = "", *, color_scheme: str = "light", width: int = 1200, height: int = 850):
        context = chromium_browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
        contexts.append(context)
        context.set_default_timeout(15000)
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(settings.url + (f"#{hash_}" if hash_ else ""))
        page.wait_for_selector("html[data-ready='true']")
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"the page threw: {errors}"


def wizard_to_details(page, folder, mount) -> None:
    """First-run wizard: add ``folder`` as the source, pick the drive at ``mount``, go on to the
    job's details. The drive list is polled every 2 s: a loaded machine makes the first answer slow."""
    page.fill("#sources-path", str(folder))
    page.click("#sources-add")
    # Adding asks the agent (is it a readable folder?): Next before the answer finds no folder
    # ("Add at least one folder", seen in full CI runs under load), so wait for it in the list.
    page.locator("#sources-list li", has_text=str(folder)).wait_for(timeout=30_000)
    page.click("#welcome-next")
    try:
        page.locator(f"input[name='welcome-drive'][value='{mount}']").check(timeout=45_000)
    except Exception as err:   # (once seen in a full run, never alone: say what the page showed)
        shown = page.locator("main").inner_text(timeout=5_000)
        raise AssertionError(f"the drive {mount} was not offered within 45 s; the page said:\n{shown}") from err
    page.click("#welcome-next")


def unlock_wrong_then_right(page, passphrase: str) -> None:
    """On the Restore page's unlock form: a wrong passphrase is refused with its message, the right
    one opens the set (its ``Documents`` folder shown)."""
    from playwright.sync_api import expect

    page.fill("#unlock-secret", "wrong")
    page.click("#unlock-go")
    expect(page.locator("#unlock-error")).to_contain_text("Wrong passphrase")
    page.fill("#unlock-secret", passphrase)
    page.click("#unlock-go")
    expect(page.get_by_role("button", name="Open folder Documents")).to_be_visible()
