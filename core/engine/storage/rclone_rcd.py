"""rclone as a subprocess: ``rclone rcd`` on 127.0.0.1, and a small HTTP client for it.

Why a long-running ``rcd`` and not one ``rclone`` command per operation: see
docs/architecture.md, "Storage backends (issue #13)" (starting rclone costs
tens of milliseconds, an rc call well under one).

* The server listens on 127.0.0.1 on a port the OS picks (``--rc-addr
  127.0.0.1:0``; rclone logs the address it got) and wants a random user and
  password, given through the environment (``RCLONE_RC_USER``/``_PASS``), so no
  other user sees them in a process list. Other ``RCLONE_RC_*`` variables are
  dropped (one of them could switch authentication off); everything else, as
  ``RCLONE_CONFIG``, reaches rclone untouched: the remote comes from the user's
  own rclone configuration, and Plugback stores no credential.
* Blobs are read through ``--rc-serve`` (``GET /[REMOTE:PATH]/name``, with
  ``Range``) and written with ``operations/uploadfile`` (a streamed multipart
  body), so neither side holds a whole blob in memory.
* If rclone dies, the next call starts a new one.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import weakref
from typing import Iterable
from urllib.parse import quote, urlencode

from core.errors import RcloneFailed, RcloneMissing, RcloneTooOld

MIN_VERSION = (1, 60)          # Debian 12's; the oldest the tests run against
START_TIMEOUT = 30.0
CALL_TIMEOUT = 900.0           # a backstop: rclone's own --timeout (5 min idle) ends a stalled remote first
_SERVING = re.compile(r"Serving remote control on http://127\.0\.0\.1:(\d+)/")
_VERSION = re.compile(r"rclone v(\d+)\.(\d+)(?:\.(\d+))?")
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)    # Windows: the windowed tray app opens no console


def find_rclone(exe: str = "rclone") -> str:
    """The rclone program's path; :class:`RcloneMissing` (what to install, where) when there is none.

    The frozen app looks next to its own executable first (the Windows and macOS installers
    put rclone there, docs/installers.md), then on the PATH (Linux: Debian's package).
    """
    if getattr(sys, "frozen", False) and os.path.basename(exe) == exe:
        bundled = os.path.join(os.path.dirname(sys.executable), exe + (".exe" if sys.platform == "win32" else ""))
        if os.path.isfile(bundled):
            return bundled
    found = shutil.which(exe)
    if not found:
        raise RcloneMissing()
    return found


def check_version(exe: str) -> tuple[int, ...]:
    """rclone's version as numbers; :class:`RcloneTooOld` below :data:`MIN_VERSION`."""
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=START_TIMEOUT,
                             creationflags=_NO_WINDOW).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RcloneFailed(reason=f"'rclone version' failed: {err}") from err
    return parse_version(out)


def parse_version(text: str) -> tuple[int, ...]:
    """``rclone version``'s first line ("rclone v1.60.1-DEV") as (1, 60, 1), checked against the minimum."""
    m = _VERSION.search(text)
    if not m:
        raise RcloneFailed(reason=f"'rclone version' printed no version: {text[:200]!r}")
    found = tuple(int(g or 0) for g in m.groups())
    if found[:2] < MIN_VERSION:
        raise RcloneTooOld(found=".".join(map(str, found)), needed=".".join(map(str, MIN_VERSION)))
    return found


class RcloneError(Exception):
    """An rc call failed: rclone's message and HTTP status (the backend turns it into a StorageError)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


class _Connection(http.client.HTTPConnection):
    """No Nagle: a streamed body goes out as many small writes, and Nagle's wait for an ACK
    meets the server's delayed ACK (40 ms per upload, measured)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Rcd:
    """One ``rclone rcd`` process and its HTTP client. Thread-safe; started on first use."""

    def __init__(self, exe: str = "rclone", extra_args: Iterable[str] = ()):
        self.exe = find_rclone(exe)
        self.version: tuple[int, ...] | None = None    # checked when rclone starts (core/version)
        self.extra_args = list(extra_args)
        self._mutex = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._port = 0
        self._auth = ""
        self._idle: list[http.client.HTTPConnection] = []
        self.log: collections.deque[str] = collections.deque(maxlen=40)    # rclone's last words
        self._finalizer = weakref.finalize(self, _stop, None)   # also runs at exit

    # --- the process ---------------------------------------------------------------------
    def _ensure(self) -> None:
        with self._mutex:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._start()

    def _start(self) -> None:
        user, password = secrets.token_hex(12), secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RCLONE_RC_")}
        env.update(RCLONE_RC_USER=user, RCLONE_RC_PASS=password)
        # --ignore-times: a move onto an existing name always replaces it (rclone would skip a
        # "same size and time" file, and a rewritten plugback.json can be both).
        cmd = [self.exe, "rcd", "--rc-addr", "127.0.0.1:0", "--rc-serve", "--ignore-times",
               "--log-level", "NOTICE", *self.extra_args]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=env, creationflags=_NO_WINDOW)
        except OSError as err:
            raise RcloneFailed(reason=f"it could not be started: {err}") from err
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_drain, args=(proc, lines, self.log, password), daemon=True,
                         name="rclone-log").start()
        port = _wait_for_port(lines)
        if port is None:
            _stop(proc)
            check_version(self.exe)     # an rclone too old for these flags says so (RcloneTooOld)
            raise RcloneFailed(reason="'rclone rcd' did not start: " + " | ".join(self.log))
        self._proc, self._port = proc, port
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._idle.clear()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, proc)
        if self.version is None:
            self.version = self._check_version(proc)

    def _check_version(self, proc: subprocess.Popen) -> tuple[int, ...]:
        """The running rclone's version (``core/version``: no second process to start just for
        ``rclone version``); RcloneTooOld, with rclone stopped, below :data:`MIN_VERSION`."""
        conn = _Connection("127.0.0.1", self._port, timeout=START_TIMEOUT)
        try:
            conn.request("POST", "/core/version", b"{}", {"Authorization": self._auth,
                                                          "Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read() or b"{}")
            return parse_version(f"rclone {answer.get('version', '')}" if isinstance(answer, dict) else "")
        except (OSError, http.client.HTTPException, ValueError) as err:
            _stop(proc)
            raise RcloneFailed(reason=f"'rclone rcd' did not say its version: {err}") from err
        except BaseException:
            _stop(proc)
            raise
        finally:
            conn.close()

    def close(self) -> None:
        """Stop rclone (it finishes nothing in flight: callers are done with it)."""
        with self._mutex:
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            self._finalizer()

    # --- HTTP ------------------------------------------------------------------------------
    def _conn(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to rclone, and whether it was used before (an idle one rclone may have closed)."""
        self._ensure()
        with self._mutex:
            if self._idle and not fresh:
                return self._idle.pop(), True
            return _Connection("127.0.0.1", self._port, timeout=CALL_TIMEOUT), False

    def _done(self, conn: http.client.HTTPConnection, reuse: bool) -> None:
        if reuse:
            with self._mutex:
                self._idle.append(conn)
        else:
            conn.close()

    def _send(self, method: str, url: str, body=None, headers: dict | None = None, chunked: bool = False):
        """Send one request; the response (its connection follows it). Connection trouble with
        rclone itself is :class:`RcloneFailed` (transient: the next call starts a new rclone).

        A streamed body (an upload) always gets a new connection: it cannot be sent twice. Other
        requests on a kept-alive connection that rclone closed meanwhile are sent once more.
        """
        hdrs = {"Authorization": self._auth, **(headers or {})}
        conn, reused = self._conn(fresh=chunked)
        while True:
            hdrs["Authorization"] = self._auth     # (a restarted rclone has a new password)
            try:
                conn.request(method, url, body=body, headers=hdrs, encode_chunked=chunked)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                if reused:
                    conn, reused = self._conn(fresh=True)
                    continue
                raise RcloneFailed(reason=f"the connection to rclone failed: {err}" + self._last_words()) from err
            except BaseException:
                conn.close()         # the body's source failed: this request is abandoned half-sent
                raise
            resp.conn_ = conn   # type: ignore[attr-defined]
            return resp

    def _last_words(self) -> str:
        if self._proc is not None and self._proc.poll() is not None:
            return f"; rclone exited with {self._proc.returncode}: " + " | ".join(list(self.log)[-3:])
        return ""

    def call(self, path: str, params: dict) -> dict:
        """One rc command (``operations/stat``...) with JSON in and out; :class:`RcloneError` when it fails."""
        resp = self._send("POST", "/" + path, json.dumps(params).encode(), {"Content-Type": "application/json"})
        return self._json(resp)

    def _json(self, resp) -> dict:
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as err:
            resp.conn_.close()
            raise RcloneFailed(reason=f"the answer from rclone was cut off: {err}") from err
        self._done(resp.conn_, not resp.will_close)
        try:
            out = json.loads(raw) if raw else {}
        except ValueError:
            out = {"error": raw[:300].decode("utf-8", "replace")}
        if resp.status != 200:
            raise RcloneError(str(out.get("error") if isinstance(out, dict) else out), resp.status)
        return out if isinstance(out, dict) else {}

    def upload(self, fs: str, folder: str, filename: str, chunks: Iterable[bytes]) -> None:
        """Stream ``chunks`` to ``fs``/``folder``/``filename`` (``operations/uploadfile``, multipart)."""
        boundary = secrets.token_hex(16)
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():
            yield head
            for chunk in chunks:
                if chunk:
                    yield bytes(chunk)
            yield tail

        url = "/operations/uploadfile?" + urlencode({"fs": fs, "remote": folder})
        resp = self._send("POST", url, body(), {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                 "Transfer-Encoding": "chunked"}, chunked=True)
        self._json(resp)

    def download(self, fs: str, name: str, offset: int = 0):
        """The response of ``GET /[fs]/name`` (from ``offset``); :class:`RcloneError` when it fails."""
        url = "/[" + quote(fs, safe=":/") + "]/" + quote(name)
        resp = self._send("GET", url, headers={"Range": f"bytes={offset}-"} if offset else None)
        if resp.status in (200, 206):
            return resp
        try:
            raw, reuse = resp.read(), not resp.will_close
        except (OSError, http.client.HTTPException) as err:
            # An error page cut short (seen when the remote's server dies mid-answer): its status
            # still says what happened; the connection is not reused.
            raw, reuse = getattr(err, "partial", b"") or b"", False
        self._done(resp.conn_, reuse)
        if resp.status == 416:      # offset at the end: nothing left
            return None
        raise RcloneError(raw[:300].decode("utf-8", "replace").strip() or resp.reason, resp.status)

    def release(self, resp, complete: bool) -> None:
        """Hand back a download's connection (reused only when its body was read to the end)."""
        self._done(resp.conn_, complete and not resp.will_close)


def _wait_for_port(lines: queue.Queue) -> int | None:
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            return None
        if line is None:
            return None
        m = _SERVING.search(line)
        if m:
            return int(m.group(1))


def _drain(proc: subprocess.Popen, lines: queue.Queue, log: collections.deque, secret: str) -> None:
    """Read rclone's log for its whole life (a full pipe would stop it), keeping the last lines.

    rclone's debug log (``--log-level DEBUG`` in ``extra_args``) prints the rc password it
    read from the environment: it never reaches a message.
    """
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip().replace(secret, "***")
        log.append(line)
        lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
