"""plugback-tray as a real process: IPC, single instance, wrong key, quit."""

import contextlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc
from pathlib import Path

import psutil
import pytest

from core.agent.config import Paths
from core.agent.ipc import CONNECT_TIMEOUT, Client, RemoteError, address, call, load_authkey
from core.agent.logs import private_log
from core.errors import AgentUnavailable
from tests.support.agent import wait_for
from tests.support.cli import run_cli
from tests.support.env import repo_root, subprocess_env


def start_agent(*extra):
    return subprocess.Popen([sys.executable, "-m", "tray", "--no-icon", "--poll-interval", "0.5", *extra],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def alive(paths):
    try:
        return call("ping", paths)
    except AgentUnavailable:
        return None


@pytest.fixture
def agent_proc():
    paths = Paths.default()
    proc = start_agent()
    try:
        wait_for(lambda: alive(paths) or proc.poll() is not None, 20, "the agent to answer")
        assert proc.poll() is None, proc.stdout.read()
        yield proc, paths
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_status_ping_and_quit(agent_proc, plugback_env):
    proc, paths = agent_proc
    assert call("ping", paths)["pid"] == proc.pid
    # Start at login (on by default) is set up before the agent answers, under PLUGBACK_HOME only.
    if sys.platform.startswith("linux"):
        assert "-m tray" in (paths.autostart_dir / "plugback.desktop").read_text()
        assert not (Path(plugback_env.vars["XDG_CONFIG_HOME"]) / "autostart").exists()
    status = call("status", paths)
    assert status["jobs"] == [] and status["backend"] == "none" and status["paused"] is False
    r = run_cli("status")
    assert "Agent: running" in r.stdout
    assert call("quit", paths) == {}
    assert proc.wait(20) == 0
    assert alive(paths) is None and not os.path.exists(address(paths)[0])


def test_second_instance_asks_the_first_to_open_settings_and_exits(agent_proc):
    proc, paths = agent_proc
    second = start_agent()
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, out
    log = wait_for(lambda: "opening settings" in paths.agent_log.read_text() and paths.agent_log.read_text(),
                   what="the first agent to open settings")
    assert "-m ui" in log or "--settings" in log   # the window process, frozen or not
    assert call("ping", paths)["pid"] == proc.pid       # the first agent still serves
    # Quitting the agent closes the window process it started.
    children = psutil.Process(proc.pid).children()
    call("quit", paths)
    proc.wait(30)
    for child in children:
        wait_for(lambda c=child: not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, what="the window to close")


def test_wrong_authkey_is_refused_and_agent_survives_garbage(agent_proc):
    proc, paths = agent_proc
    addr, family = address(paths)
    with pytest.raises((AuthenticationError, EOFError, ConnectionResetError, BrokenPipeError)):
        c = mpc.Client(addr, family=family, authkey=os.urandom(32))
        c.send_bytes(b'{"cmd": "quit"}')
        c.recv_bytes()
    conn = mpc.Client(addr, family=family, authkey=paths.ipc_key_file.read_bytes())
    for raw in (b"", b"\x00\x01", b"{", b'"just a string"', b'{"cmd": "run_job", "args": {"name": 5}}'):
        conn.send_bytes(raw)
        assert json.loads(conn.recv_bytes())["ok"] is False
    conn.close()
    assert call("ping", paths)["pid"] == proc.pid and proc.poll() is None


def test_every_documented_command_answers(agent_proc, tmp_path):
    """Each command of docs/ipc.md is known to the agent (no unknown_command)."""
    _, paths = agent_proc
    doc = (repo_root() / "docs" / "ipc.md").read_text()
    commands = [line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")]
    assert len(commands) >= 20
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.tmp").write_text("x")
    with Client(paths) as c:
        for cmd in commands:
            if cmd == "quit":
                continue
            try:
                c.call(cmd)
            except RemoteError as err:
                assert err.code != "unknown_command", cmd
        preview = c.call("exclude_preview", sources=[str(src)], excludes=["*.tmp"])
        assert preview == {"excluded": [str(src / "a" / "x.tmp")], "count": 1}
        saved = c.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "set")}})
        assert saved["job"]["name"] == "Docs"
        with pytest.raises(RemoteError) as info:
            c.call("job_save", job={"name": "Bad", "sources": ["rel"], "destination": {"path": "/x"}})
        assert info.value.code == "bad_config" and "job.sources[0]" in info.value.message
        assert c.call("prefs_save", prefs={"battery_threshold": 35, "start_at_login": False})["prefs"]["battery_threshold"] == 35
        assert c.call("config_get")["prefs"]["battery_threshold"] == 35
        assert c.call("run_job", name="Docs") == {"queued": ["Docs"]}
        run = wait_for(lambda: [r for r in c.call("history") if r["status"] != "running"], what="the run")[0]
        assert run["status"] == "ok"
        assert "snapshot" in c.call("run_log", run_id=run["id"])["log"]
        (snap,) = c.call("snapshots", job="Docs")
        assert snap["files"] >= 1
        top = c.call("ls", job="Docs", snapshot=snap["id"], path="")
        assert [e["name"] for e in top] == ["src"]
        assert [e["name"] for e in c.call("ls", job="Docs", snapshot="latest", path="src")] == ["a"]
        assert c.call("search", job="Docs", query="X.TM")[0]["path"].endswith("x.tmp")
        target = tmp_path / "restored"
        assert c.call("restore", job="Docs", snapshot=snap["id"], paths=[], target=str(target),
                      on_conflict="skip", create_target=True) == {"started": True}   # a new folder: confirmed
        wait_for(lambda: not c.call("status")["restore"]["running"], what="the restore")
        assert c.call("status")["restore"]["error"] is None
        assert (target / "src" / "a" / "x.tmp").read_text() == "x"
        paused = c.call("pause", until=None)
        assert paused == {"paused_until": None} and c.call("status")["paused"]
        c.call("resume")
        assert c.call("status")["paused"] is False
        c.call("job_remove", name="Docs")
        assert c.call("config_get")["jobs"] == []


def test_cli_job_run_goes_through_the_agent(agent_proc, tmp_path):
    proc, paths = agent_proc
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("x")
    assert run_cli("job", "add", "Docs", "--source", src, "--to", tmp_path / "set").returncode == 0
    wait_for(lambda: call("config_get", paths)["jobs"], what="the agent to see the new job")
    r = run_cli("job", "run", "Docs", "--wait")
    assert r.returncode == 0, r.stderr
    # The same last line as a run in this process (core.cli.render.run_summary).
    assert "The agent started Docs" in r.stdout and "Backed up 'Docs': snapshot " in r.stdout
    assert "1 file copied" in r.stdout
    runs = call("history", paths)
    assert [x["status"] for x in runs] == ["ok"]
    r = run_cli("status")
    assert "Agent: running" in r.stdout and "Docs: Last successful backup: just now" in r.stdout


def test_settings_from_a_newer_plugback_stop_the_agent_with_a_message():
    paths = Paths.default()
    paths.ensure()
    paths.config_file.write_text('{"version": 99}')
    proc = start_agent()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "newer Plugback" in out
    assert paths.config_file.read_text() == '{"version": 99}'     # left alone


# --- issue #10: a hung listener at the agent's address, and private logs -----------------------------

class SilentListener:
    """A real socket at ``addr`` that accepts connections and never answers (a hung agent, a squatter)."""

    def __init__(self, addr: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(addr)
        self.sock.listen(16)
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.skipif(os.name != "posix", reason="an AF_UNIX listener stands in for the pipe")
def test_a_silent_listener_at_the_agent_address_costs_seconds_and_a_new_agent_takes_over():
    paths = Paths.default()
    paths.ensure()
    load_authkey(paths, create=True)
    silent = SilentListener(address(paths)[0])
    try:
        start = time.monotonic()
        r = run_cli("status", timeout=60)
        assert time.monotonic() - start < CONNECT_TIMEOUT + 10, "the CLI waited for the silent listener"
        assert r.returncode == 5 and "Agent: not running" in r.stdout   # no answering agent: non-zero
        assert f"did not answer within {CONNECT_TIMEOUT:g} seconds" in r.stderr and silent.accepted
        # The listener is a hung agent of this user (the folder is private): a new agent replaces it.
        proc = start_agent()
        try:
            wait_for(lambda: alive(paths) or proc.poll() is not None, 40, "the new agent to answer")
            assert call("ping", paths)["pid"] == proc.pid
            call("quit", paths)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        silent.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_agent_keeps_its_folders_and_logs_to_this_user():
    paths = Paths.default()
    for folder in (paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)   # as an older version (or the usual umask) left them
    for name in ("agent.log", "agent.log.1"):
        (paths.log_dir / name).write_text("old line\n")
        (paths.log_dir / name).chmod(0o644)
    proc = start_agent()
    try:
        wait_for(lambda: alive(paths) or proc.poll() is not None, 20, "the agent to answer")
        call("quit", paths)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for folder in (paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for name in ("agent.log", "agent.log.1"):
        assert stat.S_IMODE((paths.log_dir / name).stat().st_mode) == 0o600, name
    assert "agent started" in paths.agent_log.read_text()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_every_log_file_is_private_after_a_rollover(tmp_path):
    old_umask = os.umask(0o022)
    handler = private_log(tmp_path / "agent.log", max_bytes=200, backups=2)
    try:
        logger = logging.getLogger("test.private-log")
        logger.addHandler(handler)
        logger.propagate = False
        for i in range(20):
            logger.warning("line %d about /home/ann/Documents", i)
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.umask(old_umask)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["agent.log", "agent.log.1", "agent.log.2"]
    assert all(stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600 for f in files)
    assert "WARNING test.private-log: line 19" in (tmp_path / "agent.log").read_text()
