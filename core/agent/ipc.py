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

Another local user may take an address first (docs/security.md, "Pipe
squatting"). So every name outside the user's own folders carries a tag
derived from the channel's key (:func:`channel_address`, shared with the
settings window), a temp-folder fallback lives in a folder of our own
(:func:`private_folder`), and both ends bound the handshake in time
(:func:`connect`, :func:`handshake`): a listener that accepts and says nothing
costs a client a few seconds, not a hang.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import sys
import tempfile
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc
from pathlib import Path
from typing import Any, Callable, cast

from core.agent.config import Paths
from core.engine.atomic import replace_file
from core.errors import AgentUnavailable, PlugbackError

log = logging.getLogger("plugback.ipc")

MAX_MESSAGE = 16 * 1024 * 1024
Handler = Callable[[dict], Any]
#: A client gives up on connect + handshake after this long (a squatter, or a hung agent).
CONNECT_TIMEOUT = 5.0
#: The server drops a connection that has not passed the handshake after this long.
SERVER_HANDSHAKE_TIMEOUT = 10.0
#: Named pipes, not AF_UNIX: tests set it to see the pipe names on any system (the OS calls below
#: check ``sys.platform``, which is what mypy narrows on).
_WINDOWS = sys.platform == "win32"


class RemoteError(PlugbackError):
    """An error reply from the agent, carrying the agent's code and message."""

    def __init__(self, code: str, message: str, field: str | None = None):
        self.code = code
        super().__init__(message, **({"field": field} if field else {}))


def private_folder(folder: Path) -> None:
    """Make ``folder`` (in a shared place) ours alone, or raise OSError if another user holds it.

    Created 0700 when missing; an existing one must be a real folder (not a symlink) of
    this user that nobody else can enter.
    """
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    if not _is_private(folder):
        raise OSError(f"{folder} is not a private folder of this user")


def _is_private(folder: Path) -> bool:
    if sys.platform == "win32":   # never asked there: the channels are named pipes
        return False
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def channel_address(paths: Paths, name: str, key: Callable[[], bytes]) -> tuple[str, str]:
    r"""(address, family) of the channel ``name`` ("agent", "settings") whose key ``key()`` returns.

    POSIX: ``<runtime dir>/<name>.sock`` while the runtime folder is private and the path
    fits AF_UNIX's ~108 bytes; else a socket in ``<temp>/plugback-<uid>-<tag>/``, a folder
    the server makes with :func:`private_folder`. Windows: the pipe
    ``\\.\pipe\plugback-<name>-<user>-<tag>``. ``tag`` is derived from the channel's key,
    so another user cannot know a name outside our folders before it exists (and each
    state folder, having its own key, has its own names). ``key`` is called only then.
    """
    if _WINDOWS or sys.platform == "win32":
        return rf"\\.\pipe\plugback-{name}-{os.environ.get('USERNAME', 'user')}-{_tag(key())}", "AF_PIPE"
    sock = paths.runtime_dir / f"{name}.sock"
    if len(os.fsencode(sock)) > 100 or not _is_private(paths.runtime_dir):
        sock = Path(tempfile.gettempdir()) / f"plugback-{os.getuid()}-{_tag(key())}" / f"{name}.sock"
    return str(sock), "AF_UNIX"


def _tag(key: bytes) -> str:
    return hmac.new(key, b"address", hashlib.sha256).hexdigest()[:16]


def address(paths: Paths) -> tuple[str, str]:
    """(address, family) of the agent for this user (its key: ``ipc.key``)."""
    return channel_address(paths, "agent", lambda: load_authkey(paths))


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


class _Timed:
    """A connection whose ``recv_bytes`` waits for a message until ``deadline`` at most."""

    def __init__(self, conn, deadline: float):
        self.conn, self.deadline = conn, deadline

    def send_bytes(self, data: bytes) -> None:
        self.conn.send_bytes(data)

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        if not self.conn.poll(max(0.0, self.deadline - time.monotonic())):
            raise TimeoutError("no answer in time during the handshake")
        return self.conn.recv_bytes(maxlength)


def handshake(conn, key: bytes, deadline: float, *, server: bool) -> None:
    """Both directions of multiprocessing's challenge/response, done by ``deadline`` (``time.monotonic``).

    The server challenges first, as ``Listener``/``Client`` with an authkey do. A peer that
    stays silent meets the deadline (``TimeoutError``). On POSIX the socket is non-blocking
    meanwhile: the real peer writes each handshake message at once, so a message that
    arrives in part (a peer trickling bytes to hold us) fails instead of waiting.
    Raises AuthenticationError, EOFError or OSError (TimeoutError is one).
    """
    # deliver_challenge and answer_challenge call only send_bytes and recv_bytes, which _Timed has.
    timed = cast(mpc.Connection, _Timed(conn, deadline))
    if sys.platform != "win32":   # Windows pipes are in message mode: poll() is true only for a whole message
        os.set_blocking(conn.fileno(), False)
    try:
        if server:
            mpc.deliver_challenge(timed, key)
            mpc.answer_challenge(timed, key)
        else:
            mpc.answer_challenge(timed, key)
            mpc.deliver_challenge(timed, key)
    finally:
        if sys.platform != "win32" and not conn.closed:
            os.set_blocking(conn.fileno(), True)


def connect(addr: str, family: str, key: bytes, timeout: float):
    """An authenticated ``multiprocessing.connection.Connection`` to ``addr``, within ``timeout`` seconds.

    ``mpc.Client`` has no timeout: against a listener that accepts and says nothing it
    waits forever. Raises AuthenticationError, EOFError or OSError (TimeoutError: too slow).
    """
    deadline = time.monotonic() + timeout
    conn = _pipe_connect(addr, deadline) if family == "AF_PIPE" else _socket_connect(addr, deadline)
    try:
        handshake(conn, key, deadline, server=False)
    except BaseException:
        conn.close()
        raise
    return conn


def _socket_connect(addr: str, deadline: float):
    if sys.platform == "win32":   # never asked there: the channels are named pipes
        raise OSError(f"{addr}: no AF_UNIX sockets on Windows")
    with socket.socket(socket.AF_UNIX) as sock:
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                sock.connect(addr)
                break
            except BlockingIOError:   # the listener's backlog is full: it is busy, or not accepting at all
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{addr} accepts no connection") from None
                time.sleep(0.05)
        sock.setblocking(True)
        return mpc.Connection(sock.detach())


def _pipe_connect(addr: str, deadline: float, winapi=None):
    """Windows: ``mpc.PipeClient`` with our deadline (its own waits up to 20 s for a busy pipe).

    ``winapi`` stands in for ``_winapi`` in tests (this code cannot run off Windows).
    """
    if winapi is None:
        import _winapi as winapi
    while True:
        try:
            winapi.WaitNamedPipe(addr, max(1, min(1000, int((deadline - time.monotonic()) * 1000))))
            handle = winapi.CreateFile(addr, winapi.GENERIC_READ | winapi.GENERIC_WRITE, 0, winapi.NULL,
                                       winapi.OPEN_EXISTING, winapi.FILE_FLAG_OVERLAPPED, winapi.NULL)
            break
        except OSError as err:
            if getattr(err, "winerror", None) not in (winapi.ERROR_SEM_TIMEOUT, winapi.ERROR_PIPE_BUSY):
                raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{addr} stayed busy") from None
    winapi.SetNamedPipeHandleState(handle, winapi.PIPE_READMODE_MESSAGE, None, None)
    return mpc.PipeConnection(handle)  # type: ignore[attr-defined, unused-ignore]  # Windows only (tests patch it in)


class Client:
    """One connection to the agent. ``call(cmd, **args)`` returns ``data`` or raises.

    Raises AgentUnavailable when no agent listens (or the authkey does not
    match), RemoteError carrying the agent's code for error replies.
    """

    def __init__(self, paths: Paths | None = None, *, timeout: float = 30.0, connect_timeout: float | None = None):
        self.paths = paths or Paths.default()
        self.timeout = timeout
        connect_timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        key = load_authkey(self.paths)
        addr, family = address(self.paths)
        try:
            self.conn = connect(addr, family, key, connect_timeout)
        except TimeoutError as err:
            log.warning("no answer from %s: %s", addr, err)
            raise AgentUnavailable(
                f"The Plugback agent did not answer within {connect_timeout:g} seconds (something at {addr} "
                "accepted the connection but said nothing). If plugback-tray is hung, quit it and start it "
                "again.", reason="no_answer") from None
        except (EOFError, AuthenticationError, OSError) as err:   # no agent, or not one that knows our key
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
        raise RemoteError(reply.get("code", "error"), reply.get("message", "The agent reported an error."),
                          reply.get("field"))

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
        try:
            self.address, self.family, self.listener = self._listen()
        except OSError as err:
            addr, family = address(paths)
            if family == "AF_UNIX" and Path(addr).parent == paths.runtime_dir:
                raise PlugbackError(f"The agent cannot listen at {addr}: {err}") from err
            # Another user holds the name derived from our key: they saw it while an earlier agent
            # ran (pipe names can be listed; so can the temp folder). No agent of ours answers there,
            # so nobody uses this key now: a new key makes a new name.
            log.warning("cannot listen at %s (%s); taking a new key and with it a new address", addr, err)
            self.authkey = secrets.token_bytes(32)
            replace_file(paths.ipc_key_file, self.authkey, mode=0o600)
            try:
                self.address, self.family, self.listener = self._listen()
            except OSError as err2:
                raise PlugbackError(f"The agent cannot listen at {address(paths)[0]}: {err2}") from err2
        self._closed = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, name="ipc-server", daemon=True)

    def _listen(self):
        """(address, family, listener) at the address of our key; OSError if the name is not ours to take."""
        addr, family = address(self.paths)
        if family == "AF_UNIX":
            folder = Path(addr).parent
            if folder == self.paths.runtime_dir:
                folder.mkdir(parents=True, exist_ok=True)
            else:
                private_folder(folder)   # in the shared temp folder: ours alone, or refused
            # A socket file left by an agent that died: nobody answers, so it is stale.
            if os.path.exists(addr):
                if agent_running(self.paths):
                    raise PlugbackError("Another Plugback agent is already running for this user.")
                os.unlink(addr)
        elif agent_running(self.paths):
            raise PlugbackError("Another Plugback agent is already running for this user.")
        # No authkey here: the handshake happens per connection, in its own thread.
        listener = mpc.Listener(addr, family=family, backlog=16)
        if family == "AF_UNIX":
            os.chmod(addr, 0o600)
        return addr, family, listener

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
                # Both directions, as Listener(authkey=...) would do; a silent client is dropped in time.
                handshake(conn, self.authkey, time.monotonic() + SERVER_HANDSHAKE_TIMEOUT, server=True)
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
