"""core/agent/ipc.py over a real socket: replies, errors, wrong authkey, malformed messages."""

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc
from pathlib import Path

import pytest

from core.agent import ipc
from core.agent.ipc import Client, RemoteError, Server, address, agent_running, call
from core.errors import AgentUnavailable, BadRequest, ConfigError, SetLocked


@pytest.fixture
def server(paths):
    def boom(args):
        raise RuntimeError("handler bug")

    def locked(args):
        raise SetLocked(holder="host 1")

    def bad_setting(args):
        raise ConfigError("Must be between 1 and 365.", field="full_scan_days", reason="must be between 1 and 365")

    def needs(args):
        if not isinstance(args.get("name"), str):
            raise BadRequest(reason="'name' must be text")
        return args["name"]

    srv = Server(paths, {"ping": lambda a: {"pid": os.getpid()}, "echo": lambda a: a,
                         "boom": boom, "locked": locked, "needs": needs, "bad_setting": bad_setting,
                         "buggy_lookup": lambda a: {}["missing"]}).start()
    yield srv
    srv.close()


def test_call_and_reply(server, paths):
    assert call("ping", paths) == {"pid": os.getpid()}
    with Client(paths) as c:   # several requests on one connection
        assert c.call("echo", x=1, name="é") == {"x": 1, "name": "é"}
        assert c.call("echo") == {}


def test_error_replies_keep_the_server_up(server, paths):
    with Client(paths) as c:
        with pytest.raises(RemoteError) as info:
            c.call("nope")
        assert info.value.code == "unknown_command"
        with pytest.raises(RemoteError) as info:
            c.call("locked")
        assert info.value.code == "set_locked" and "host 1" in info.value.message
        with pytest.raises(RemoteError) as info:
            c.call("needs", name=5)
        assert info.value.code == "bad_request" and "'name' must be text" in info.value.message
        assert c.call("needs", name="x") == "x"
        with pytest.raises(RemoteError) as info:   # the setting an error is about reaches the window
            c.call("bad_setting")
        assert info.value.to_dict() == {"ok": False, "code": "bad_config", "message": "Must be between 1 and 365.",
                                        "field": "full_scan_days"}
        assert c.call("ping")["pid"] == os.getpid()


@pytest.mark.parametrize("cmd, text", [("boom", "RuntimeError: handler bug"), ("buggy_lookup", "KeyError: 'missing'")])
def test_a_handler_bug_is_an_internal_error_logged_with_its_traceback(server, paths, caplog, cmd, text):
    # A KeyError inside a handler is a bug in the agent, not a bad request: it must reach the log.
    with Client(paths) as c:
        with pytest.raises(RemoteError) as info:
            c.call(cmd)
        assert info.value.code == "internal_error"
        assert text in info.value.message and str(paths.agent_log) in info.value.message
        assert c.call("ping")["pid"] == os.getpid()   # the same connection still serves
    bug = [r for r in caplog.records if r.name == "plugback.ipc" and r.exc_info]
    assert len(bug) == 1 and f"IPC command {cmd} failed" in bug[0].getMessage()
    assert text.split(":")[0] in caplog.text and "Traceback" in caplog.text


def test_malformed_messages_get_bad_request(server, paths):
    addr, family = address(paths)
    conn = mpc.Client(addr, family=family, authkey=paths.ipc_key_file.read_bytes())
    for raw in (b"\xff\xfe not utf-8", b"{not json", b"[1, 2]", b'{"cmd": 5}', b'{"cmd": "echo", "args": [1]}'):
        conn.send_bytes(raw)
        reply = json.loads(conn.recv_bytes())
        assert reply["ok"] is False and reply["code"] == "bad_request", raw
    conn.close()
    assert call("ping", paths)


def test_wrong_authkey_is_refused(server, paths):
    addr, family = address(paths)
    with pytest.raises((AuthenticationError, EOFError, ConnectionResetError, BrokenPipeError)):
        c = mpc.Client(addr, family=family, authkey=b"x" * 32)
        c.send_bytes(b'{"cmd": "ping"}')
        c.recv_bytes()
    assert call("ping", paths)   # still serving


def test_silent_client_does_not_block_others(server, paths):
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(address(paths)[0])   # connects, never answers the challenge
    try:
        assert call("ping", paths)
    finally:
        s.close()


def test_key_file_is_private(server, paths):
    mode = stat.S_IMODE(os.stat(paths.ipc_key_file).st_mode)
    assert mode == 0o600 and len(paths.ipc_key_file.read_bytes()) == 32
    assert stat.S_IMODE(os.stat(address(paths)[0]).st_mode) == 0o600


def test_no_agent(paths):
    assert agent_running(paths) is False
    with pytest.raises(AgentUnavailable):
        call("ping", paths)


def test_stale_socket_is_replaced(paths):
    import socket

    # An agent that died leaves its socket file behind, with nobody listening.
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(address(paths)[0])
    dead.close()
    assert os.path.exists(address(paths)[0])
    srv2 = Server(paths, {"ping": lambda a: 2}).start()
    try:
        assert call("ping", paths) == 2
    finally:
        srv2.close()


def test_second_server_refused_while_first_runs(server, paths):
    with pytest.raises(Exception, match="already running"):
        Server(paths, {})


def test_concurrent_clients(server, paths):
    results = []

    def worker(i):
        with Client(paths) as c:
            results.extend(c.call("echo", i=i)["i"] for _ in range(20))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted(i for i in range(8) for _ in range(20))


# --- squatters and hung agents (docs/security.md, "Pipe squatting") ------------------------------

class SilentListener:
    """A real listening socket at ``addr`` that accepts every connection and never says a word
    (or, with ``first_bytes``, sends those and then nothing)."""

    def __init__(self, addr: str, first_bytes: bytes = b""):
        import socket

        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(addr)
        self.sock.listen(16)
        self.first_bytes = first_bytes
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            conn.sendall(self.first_bytes)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent(paths):
    ipc.load_authkey(paths, create=True)   # the key exists: as if an agent had run
    squatter = SilentListener(address(paths)[0])
    yield squatter
    squatter.close()


def test_a_silent_listener_costs_a_client_seconds_not_a_hang(paths, silent, monkeypatch):
    assert ipc.CONNECT_TIMEOUT <= 5
    # Control: multiprocessing's own client waits for ever at this listener.
    def plain_client():
        with contextlib.suppress(EOFError, OSError):   # released when the listener closes
            mpc.Client(address(paths)[0], authkey=ipc.load_authkey(paths))

    stuck = threading.Thread(target=plain_client, daemon=True)
    stuck.start()
    stuck.join(2)
    assert stuck.is_alive()
    monkeypatch.setattr(ipc, "CONNECT_TIMEOUT", 1.0)
    start = time.monotonic()
    assert agent_running(paths) is False
    with pytest.raises(AgentUnavailable, match="did not answer within 1 seconds"):
        call("status", paths)
    assert 2 <= time.monotonic() - start < 5
    assert len(silent.accepted) >= 3   # it did connect each time: the wait was the handshake's


def test_a_listener_that_sends_half_a_message_cannot_hold_a_client(paths, monkeypatch):
    ipc.load_authkey(paths, create=True)
    # A length header announcing 100 bytes, then one byte, then nothing: recv_bytes alone would wait.
    squatter = SilentListener(address(paths)[0], first_bytes=(100).to_bytes(4, "big") + b"x")
    monkeypatch.setattr(ipc, "CONNECT_TIMEOUT", 3.0)
    start = time.monotonic()
    try:
        assert agent_running(paths) is False
    finally:
        squatter.close()
    assert time.monotonic() - start < 3.5 and squatter.accepted


def test_the_server_drops_a_client_that_never_answers_its_challenge(server, monkeypatch):
    import socket

    monkeypatch.setattr(ipc, "SERVER_HANDSHAKE_TIMEOUT", 0.5)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(server.address)
        start, received = time.monotonic(), b""
        while chunk := s.recv(4096):   # the challenge, then end of file once the server gave up
            received += chunk
        assert mpc.CHALLENGE in received and 0.4 < time.monotonic() - start < 4


def test_the_address_outside_our_folders_is_derived_from_the_key(paths, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert address(paths) == (str(paths.runtime_dir / "agent.sock"), "AF_UNIX")   # private runtime folder
    ipc.load_authkey(paths, create=True)
    paths.runtime_dir.chmod(0o755)   # a runtime folder others can enter: not used for the socket
    fallback, family = address(paths)
    assert Path(fallback).parent.parent == tmp_path and family == "AF_UNIX"
    assert Path(fallback).parent.name.startswith(f"plugback-{os.getuid()}-")
    monkeypatch.setattr(ipc, "_WINDOWS", True)
    monkeypatch.setenv("USERNAME", "ann")
    pipe, family = address(paths)
    assert family == "AF_PIPE" and pipe.startswith(r"\\.\pipe\plugback-agent-ann-")
    tag = pipe.rsplit("-", 1)[1]
    assert len(tag) == 16 and tag in fallback   # one tag, both transports
    paths.ipc_key_file.write_bytes(os.urandom(32))
    assert address(paths)[0] != pipe   # unknowable without the key
    monkeypatch.setattr(ipc, "_WINDOWS", False)
    assert address(paths)[0] != fallback


def test_the_fallback_folder_is_private_and_the_agent_serves_there(paths, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    paths.runtime_dir.chmod(0o755)
    srv = Server(paths, {"ping": lambda a: "pong"}).start()
    try:
        folder = Path(srv.address).parent
        assert folder.parent == tmp_path and stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert call("ping", paths) == "pong"
    finally:
        srv.close()


def test_a_taken_fallback_name_makes_the_agent_take_a_new_key(paths, tmp_path, monkeypatch, caplog):
    """Someone saw the name while an earlier agent ran and took it: the next agent listens elsewhere."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    paths.runtime_dir.chmod(0o755)
    old_key = ipc.load_authkey(paths, create=True)
    taken = Path(address(paths)[0]).parent
    taken.mkdir(mode=0o777)
    taken.chmod(0o777)   # as another user would leave it (the test runs as one user: a folder we cannot trust)
    with caplog.at_level(logging.WARNING, logger="plugback.ipc"):
        srv = Server(paths, {"ping": lambda a: "pong"}).start()
    try:
        assert "taking a new key" in caplog.text
        assert paths.ipc_key_file.read_bytes() != old_key
        assert stat.S_IMODE(paths.ipc_key_file.stat().st_mode) == 0o600
        assert Path(srv.address).parent != taken and not list(taken.iterdir())
        assert call("ping", paths) == "pong"
    finally:
        srv.close()


class FakeWinapi:
    """The few ``_winapi`` calls of ``_pipe_connect``; ``busy`` = how many tries find the pipe busy."""

    GENERIC_READ, GENERIC_WRITE, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED = 1, 2, 0, 3, 4
    ERROR_SEM_TIMEOUT, ERROR_PIPE_BUSY, ERROR_FILE_NOT_FOUND, PIPE_READMODE_MESSAGE = 121, 231, 2, 2

    def __init__(self, busy: int = 0, error: int | None = None):
        self.busy, self.error, self.waits = busy, error, []

    def _fail(self, code):
        err = OSError(f"winerror {code}")
        err.winerror = code
        raise err

    def WaitNamedPipe(self, addr, ms):  # noqa: N802 - _winapi's names
        self.waits.append(ms)
        if self.error is not None:
            self._fail(self.error)
        if self.busy:
            self.busy -= 1
            time.sleep(min(ms, 100) / 1000)
            self._fail(self.ERROR_SEM_TIMEOUT)

    def CreateFile(self, *args):  # noqa: N802
        return 42

    def SetNamedPipeHandleState(self, handle, mode, *_):  # noqa: N802
        self.state = (handle, mode)


def test_the_windows_pipe_connect_gives_up_at_the_deadline(monkeypatch):
    """Windows only (checked here through a fake of _winapi): a pipe that stays busy costs the
    deadline, not multiprocessing's 20 s; other errors are raised at once; a free pipe connects."""
    monkeypatch.setattr(mpc, "PipeConnection", lambda handle: ("conn", handle), raising=False)
    api = FakeWinapi(busy=1000)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ipc._pipe_connect(r"\\.\pipe\x", time.monotonic() + 0.5, winapi=api)
    assert time.monotonic() - start < 1.6 and all(ms <= 1000 for ms in api.waits)
    api = FakeWinapi(error=FakeWinapi.ERROR_FILE_NOT_FOUND)
    with pytest.raises(OSError) as info:
        ipc._pipe_connect(r"\\.\pipe\x", time.monotonic() + 5, winapi=api)
    assert info.value.winerror == FakeWinapi.ERROR_FILE_NOT_FOUND and len(api.waits) == 1
    api = FakeWinapi(busy=2)
    assert ipc._pipe_connect(r"\\.\pipe\x", time.monotonic() + 5, winapi=api) == ("conn", 42)
    assert api.state == (42, FakeWinapi.PIPE_READMODE_MESSAGE)
