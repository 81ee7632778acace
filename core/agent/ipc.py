"""The agent protocol (docs/ipc.md): both halves, client and server.

Transport is ``multiprocessing.connection``: an AF_UNIX socket on POSIX, a
named pipe (AF_PIPE) on Windows. Both sides prove they know the ``authkey``
(32 random bytes in a user-only file) before a single message is read;
messages are UTF-8 JSON through ``send_bytes`` / ``recv_bytes``, never pickle.

The server runs one thread per connection and does the authentication
handshake there, not in ``accept()``, so a client that connects and says
nothing cannot stop others. A malformed message, or arguments a handler
refuses (:class:`~core.errors.BadRequest`), get a ``bad_request`` reply; other
expected failures their own code; any other exception is a bug: logged with
its traceback and answered ``internal_error``. None takes the server down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc
from pathlib import Path
from typing import Any, Callable

from core.agent.config import Paths
from core.engine.atomic import replace_file
from core.errors import AgentUnavailable, PlugbackError

log = logging.getLogger("plugback.ipc")

MAX_MESSAGE = 16 * 1024 * 1024
Handler = Callable[[dict], Any]


class RemoteError(PlugbackError):
    """An error reply from the agent, carrying the agent's code and message."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def address(paths: Paths) -> tuple[str, str]:
    """(address, family) of the agent for this user."""
    if sys.platform == "win32":
        user = os.environ.get("USERNAME", "user")
        # One pipe per user and state folder, so a test agent never meets the real one.
        tag = hashlib.sha256(str(paths.data_dir).encode()).hexdigest()[:8]
        return rf"\\.\pipe\plugback-{user}-{tag}", "AF_PIPE"
    sock = paths.runtime_dir / "agent.sock"
    if len(os.fsencode(sock)) > 100:
        # AF_UNIX paths are limited to ~108 bytes; fall back to a short, per-folder name.
        tag = hashlib.sha256(str(paths.runtime_dir).encode()).hexdigest()[:16]
        sock = Path(tempfile.gettempdir()) / f"plugback-{os.getuid()}-{tag}.sock"
    return str(sock), "AF_UNIX"


def load_authkey(paths: Paths, *, create: bool = False) -> bytes:
    """The shared secret from ``<data dir>/ipc.key`` (created 0600 with 32 random bytes if asked)."""
    path = paths.ipc_key_file
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    if not create:
        raise AgentUnavailable()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    replace_file(path, key, mode=0o600)
    return key


def encode(message: dict) -> bytes:
    """A message as UTF-8 JSON bytes (never pickle)."""
    return json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")


def error_reply(code: str, message: str) -> dict:
    """A protocol-level error reply (``bad_request``, ``unknown_command``, ``internal_error``)."""
    return {"ok": False, "code": code, "message": message}


class Client:
    """One connection to the agent. ``call(cmd, **args)`` returns ``data`` or raises.

    Raises AgentUnavailable when no agent listens (or the authkey does not
    match), RemoteError carrying the agent's code for error replies.
    """

    def __init__(self, paths: Paths | None = None, *, timeout: float = 30.0):
        self.paths = paths or Paths.default()
        self.timeout = timeout
        addr, family = address(self.paths)
        key = load_authkey(self.paths)
        try:
            self.conn = mpc.Client(addr, family=family, authkey=key)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
                EOFError, AuthenticationError, OSError) as err:
            log.debug("no agent at %s: %s", addr, err)
            raise AgentUnavailable() from None
        self._lock = threading.Lock()

    def call(self, cmd: str, **args) -> Any:
        with self._lock:
            try:
                self.conn.send_bytes(encode({"cmd": cmd, "args": args}))
                if not self.conn.poll(self.timeout):
                    raise AgentUnavailable("The Plugback agent did not answer in time. Try again, or restart it.")
                reply = json.loads(self.conn.recv_bytes(MAX_MESSAGE))
            except (EOFError, OSError):
                raise AgentUnavailable() from None
        if reply.get("ok"):
            return reply.get("data")
        raise RemoteError(reply.get("code", "error"), reply.get("message", "The agent reported an error."))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def call(cmd: str, paths: Paths | None = None, **args) -> Any:
    """One request on a fresh connection."""
    with Client(paths) as client:
        return client.call(cmd, **args)


def agent_running(paths: Paths | None = None) -> bool:
    """True when an agent answers ``ping`` for this user's state folder."""
    try:
        call("ping", paths)
        return True
    except PlugbackError:
        return False


class Server:
    """Serves ``handlers[cmd](args) -> data`` on the agent's address until ``close()``."""

    def __init__(self, paths: Paths, handlers: dict[str, Handler]):
        self.paths = paths
        self.handlers = handlers
        self.authkey = load_authkey(paths, create=True)
        self.address, self.family = address(paths)
        if self.family == "AF_UNIX":
            Path(self.address).parent.mkdir(parents=True, exist_ok=True)
            # A socket file left by an agent that died: nobody answers, so it is stale.
            if os.path.exists(self.address):
                if agent_running(paths):
                    raise PlugbackError("Another Plugback agent is already running for this user.")
                os.unlink(self.address)
        # No authkey here: the handshake happens per connection, in its own thread.
        self.listener = mpc.Listener(self.address, family=self.family)
        if self.family == "AF_UNIX":
            os.chmod(self.address, 0o600)
        self._closed = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, name="ipc-server", daemon=True)

    def start(self) -> "Server":
        self.thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.close()
        except OSError:
            pass
        if self.family == "AF_UNIX":
            try:
                os.unlink(self.address)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), name="ipc-conn", daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            try:
                # Both directions, as Listener(authkey=...) would do.
                mpc.deliver_challenge(conn, self.authkey)
                mpc.answer_challenge(conn, self.authkey)
            except (AuthenticationError, EOFError, OSError) as err:
                log.warning("refused an IPC connection that did not know the key: %s", err)
                return
            while not self._closed.is_set():
                try:
                    raw = conn.recv_bytes(MAX_MESSAGE)
                except (EOFError, OSError):
                    return
                conn.send_bytes(encode(self.dispatch(raw)))
        except (OSError, EOFError):
            return
        finally:
            conn.close()

    def dispatch(self, raw: bytes) -> dict:
        """One request (raw bytes) -> one reply dict. Never raises."""
        try:
            request = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return error_reply("bad_request", "The request is not UTF-8 JSON.")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return error_reply("bad_request", "A request is an object with a 'cmd' name and 'args'.")
        args = request.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return error_reply("bad_request", "'args' must be an object.")
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return error_reply("unknown_command", f"Unknown command '{request['cmd']}'.")
        try:
            return {"ok": True, "data": handler(args)}
        except PlugbackError as err:   # expected: bad arguments (BadRequest) and every other known failure
            return err.to_dict()
        except Exception as err:  # noqa: BLE001 - a handler bug must not take the agent down
            # Not the client's fault, whatever the exception type: keep the traceback for the report.
            log.exception("IPC command %s failed", request["cmd"])
            return error_reply("internal_error", f"The agent hit an unexpected problem with '{request['cmd']}' "
                               f"({type(err).__name__}: {err}). Try again; if it keeps happening, report it "
                               f"with the agent's log ({self.paths.agent_log}).")
