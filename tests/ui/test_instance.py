"""The settings window's single-instance channel against a squatter: another local user who took
the address first (a named pipe's name on Windows, a socket in the shared temp folder on POSIX).

multiprocessing's handshake is the same on both transports, so AF_UNIX stands in for the pipe:
the squatter here does what one on Windows could, pass handshake messages between a client that
came to it and a real server it connects to (docs/security.md, "Pipe squatting").
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from multiprocessing import connection as mpc
from pathlib import Path

import pytest

from core.agent import ipc
from core.agent.config import Paths
from core.errors import AgentUnavailable
from ui.instance import SettingsInstance

pytestmark = pytest.mark.skipif(os.name != "posix", reason="AF_UNIX stands in for the named pipe")


def relay_handshake(victim, server) -> bool:
    """Pass the six handshake messages between ``victim`` (a client) and ``server``; True if both accepted.

    The server challenges first, then the client (``deliver_challenge`` / ``answer_challenge``).
    """
    try:
        victim.send_bytes(server.recv_bytes(256))   # the server's challenge
        server.send_bytes(victim.recv_bytes(256))   # the victim's answer to it
        verdict = server.recv_bytes(256)
        victim.send_bytes(verdict)
        if verdict != mpc.WELCOME:
            return False
        server.send_bytes(victim.recv_bytes(256))   # the victim's challenge
        victim.send_bytes(server.recv_bytes(256))   # the server's answer
        verdict = victim.recv_bytes(256)
        server.send_bytes(verdict)
        return verdict == mpc.WELCOME
    except (EOFError, OSError):
        return False


class Squatter:
    """Listens on ``address`` first; relays the first client that comes to the real server at ``real``."""

    def __init__(self, address: str, real: str):
        self.listener = mpc.Listener(address, family="AF_UNIX")
        self.real = real
        self.relayed: bool | None = None
        self.seen: list[bytes] = []   # what the victim sent after the handshake
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        victim = self.listener.accept()
        self.listener.close()   # later tries find nobody: no second chance
        with victim, mpc.Client(self.real, family="AF_UNIX") as server:   # no authkey: it has none
            self.relayed = relay_handshake(victim, server)
            if self.relayed and victim.poll(5):
                self.seen.append(victim.recv_bytes())

    def done(self) -> "Squatter":
        self.thread.join(20)
        assert not self.thread.is_alive()
        return self


@pytest.fixture
def agent_server(paths):
    calls = []
    server = ipc.Server(paths, {"ping": lambda args: "pong", "job_save": calls.append}).start()
    server.calls = calls
    yield server
    server.close()


def test_a_squatter_on_the_settings_address_cannot_relay_a_second_start_into_the_agent(paths, agent_server):
    instance = SettingsInstance(paths)
    # Control: with the agent's own key (as before issue #10), the relay works and the squatter is let in.
    squatter = Squatter(instance.address, agent_server.address)
    with mpc.Client(instance.address, family="AF_UNIX", authkey=ipc.load_authkey(paths)) as victim:
        victim.send_bytes(b'{"cmd": "focus"}')
    assert squatter.done().relayed is True and squatter.seen == [b'{"cmd": "focus"}']

    squatter = Squatter(instance.address, agent_server.address)
    assert instance.focus_existing(timeout=1) is False
    assert squatter.done().relayed is False and squatter.seen == []
    assert agent_server.calls == []


def test_a_squatter_on_the_agent_address_cannot_relay_through_the_settings_window(paths):
    """No agent runs; the window does. Its api's requests (a new job's passphrase...) must not reach
    whoever took the agent's address."""
    instance = SettingsInstance(paths)
    focused = []
    assert instance.acquire()
    instance.serve(lambda: focused.append(True))
    try:
        agent_address, _ = ipc.address(paths)
        squatter = Squatter(agent_address, instance.address)
        with pytest.raises(AgentUnavailable):
            ipc.call("job_save", paths, job={"name": "x"}, passphrase="correct horse")
        assert squatter.done().relayed is False and squatter.seen == []
        # The window itself is unharmed: a real second start still focuses it.
        assert SettingsInstance(paths).focus_existing(timeout=5) is True and focused == [True]
    finally:
        instance.close()


@pytest.fixture
def long_runtime(plugback_env, tmp_path, monkeypatch):
    """Paths whose runtime folder is too long for AF_UNIX: the socket goes to the shared temp folder."""
    root = Path(os.environ["PLUGBACK_HOME"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return Paths(root, root, root / "logs", root / ("x" * 120))


def test_in_the_shared_temp_folder_the_socket_lives_in_a_private_folder(long_runtime, tmp_path):
    instance = SettingsInstance(long_runtime)
    assert Path(instance.address).parent.parent == tmp_path
    focused = []
    assert instance.acquire()
    instance.serve(lambda: focused.append(True))
    try:
        assert (Path(instance.address).parent.stat().st_mode & 0o777) == 0o700
        assert SettingsInstance(long_runtime).focus_existing(timeout=5) is True and focused == [True]
    finally:
        instance.close()


def test_a_folder_someone_else_could_enter_is_refused_and_the_window_still_opens(long_runtime, caplog):
    instance = SettingsInstance(long_runtime)
    folder = Path(instance.address).parent
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)   # whatever the umask
    assert instance.acquire()
    try:
        with caplog.at_level(logging.WARNING):
            instance.serve(lambda: None)   # does not raise: focus is lost, not the window
        assert "cannot listen for focus requests" in caplog.text and "not a private folder" in caplog.text
        assert not Path(instance.address).exists()
    finally:
        instance.close()


def test_a_name_outside_our_folders_cannot_be_known_without_the_key(long_runtime):
    """So nobody can take it before the window does (the Windows pipe's name is built the same way)."""
    before = SettingsInstance(long_runtime).address
    assert SettingsInstance(long_runtime).address == before
    long_runtime.ipc_key_file.write_bytes(os.urandom(32))
    assert SettingsInstance(long_runtime).address != before


def test_the_window_and_the_agent_get_their_names_from_one_function_with_their_own_keys(long_runtime, monkeypatch):
    """One shape for both channels (core.agent.ipc.channel_address), never one name: the keys differ."""
    window, agent = SettingsInstance(long_runtime).address, ipc.address(long_runtime)[0]
    assert Path(window).name == "settings.sock" and Path(agent).name == "agent.sock"
    assert Path(window).parent.parent == Path(agent).parent.parent and Path(window).parent != Path(agent).parent
    monkeypatch.setattr(ipc, "_WINDOWS", True)
    monkeypatch.setenv("USERNAME", "ann")
    window, agent = SettingsInstance(long_runtime).address, ipc.address(long_runtime)[0]
    assert window.startswith(r"\\.\pipe\plugback-settings-ann-") and agent.startswith(r"\\.\pipe\plugback-agent-ann-")
    assert window.rsplit("-", 1)[1] != agent.rsplit("-", 1)[1]


def test_a_second_start_with_a_page_shows_that_page(paths):
    """`--page restore/<drive id>` ("Restore instead") reaches a window already open; nothing else does."""
    instance = SettingsInstance(paths)
    seen = []
    assert instance.acquire()
    instance.serve(lambda: seen.append("focus"), seen.append)
    try:
        assert SettingsInstance(paths).focus_existing(timeout=5, page="#restore/6f1c-42") is True
        assert SettingsInstance(paths).focus_existing(timeout=5, page="#x');alert(1)//") is True
        assert SettingsInstance(paths).focus_existing(timeout=5) is True
        assert seen == ["#restore/6f1c-42", "focus", "focus", "focus"]
    finally:
        instance.close()
