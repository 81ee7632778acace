"""core/agent/ipc.py over a real socket: replies, errors, wrong authkey, malformed messages."""

import json
import os
import stat
import threading
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc

import pytest

from core.agent.ipc import Client, RemoteError, Server, address, agent_running, call
from core.errors import AgentUnavailable, BadRequest, SetLocked


@pytest.fixture
def server(paths):
    def boom(args):
        raise RuntimeError("handler bug")

    def locked(args):
        raise SetLocked(holder="host 1")

    def needs(args):
        if not isinstance(args.get("name"), str):
            raise BadRequest(reason="'name' must be text")
        return args["name"]

    srv = Server(paths, {"ping": lambda a: {"pid": os.getpid()}, "echo": lambda a: a,
                         "boom": boom, "locked": locked, "needs": needs,
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
