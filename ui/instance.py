"""One settings window per user: a second start focuses the first and exits.

The window process holds an exclusive lock on ``<runtime dir>/settings.lock``
for its whole life (the OS drops it when the process dies, so it never goes
stale) and listens on a ``multiprocessing.connection`` address next to the
agent's (``settings.sock``; a named pipe on Windows), authenticated with a
key derived from the agent's ``ipc.key`` (:func:`focus_key`). A second
``plugback-tray --settings`` fails to take the lock, connects, sends
``{"cmd": "focus"}`` and exits; the first raises its window (or, in browser
mode, opens its page again).

Another local user may take (squat) this address first: a named pipe's name is
anybody's to create, and so is a file in ``/tmp``. What such a squatter can do
is worked out in docs/security.md ("Pipe squatting"): it cannot guess the name
in advance (a tag derived from the key), it learns nothing of the key, and it
cannot relay a client's handshake to the agent, because this channel's key is
not the agent's.

The agent therefore needs no window bookkeeping: ``open_settings`` always just
starts ``plugback-tray --settings``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc
from pathlib import Path
from typing import BinaryIO, Callable

from core.agent.config import Paths
from core.agent.ipc import channel_address, load_authkey, private_folder

log = logging.getLogger(__name__)


def settings_address(paths: Paths) -> tuple[str, str]:
    """(address, family) the open settings window listens on: ``settings.sock`` or a pipe.

    Built as the agent's is (:func:`core.agent.ipc.channel_address`): names outside the
    user's own folders carry a tag derived from this channel's key.
    """
    return channel_address(paths, "settings", lambda: focus_key(paths))


def focus_key(paths: Paths) -> bytes:
    """The focus channel's key: derived from the agent's ``ipc.key``, never equal to it.

    Both channels run the same challenge/response. With one key, a squatter on one
    address could pass the challenge of the real server on the other address to our
    client there and relay its correct answer back (docs/security.md). A key per
    channel makes every relayed answer wrong.
    """
    return hmac.new(load_authkey(paths, create=True), b"plugback settings focus channel", hashlib.sha256).digest()


#: What ``--page`` may name: a page, and optionally one thing on it (``restore/<drive id>``).
_PAGE = re.compile(r"[a-z]+(/[A-Za-z0-9._-]{1,80})?")


def page_fragment(name: str) -> str:
    """The URL fragment for ``--page NAME`` ("#restore/6f1c…"), or "" for anything else (it goes into a URL)."""
    return f"#{name}" if _PAGE.fullmatch(name) else ""


class SettingsInstance:
    """The single-instance guard of the settings window process."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.address, self.family = settings_address(paths)
        self._lock_file: BinaryIO | None = None
        self._listener: mpc.Listener | None = None
        self._on_focus: Callable[[], object] = lambda: None
        self._on_page: Callable[[str], object] | None = None

    def acquire(self) -> bool:
        """Take the per-user lock; False when another settings window holds it."""
        self.paths.runtime_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.paths.runtime_dir / "settings.lock", "a+b")
        try:
            if sys.platform == "win32":
                import msvcrt

                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._lock_file = f
        return True

    def focus_existing(self, timeout: float = 10.0, page: str = "") -> bool:
        """Ask the window that holds the lock to come to the front (showing ``page``, a URL fragment
        such as ``#restore/<drive id>``, when given); True if it answered.

        Retries for ``timeout`` seconds: the other window may still be starting.
        """
        deadline = time.monotonic() + timeout
        key = focus_key(self.paths)
        while True:
            try:
                with mpc.Client(self.address, family=self.family, authkey=key) as conn:
                    conn.send_bytes(json.dumps({"cmd": "focus", "page": page}).encode())
                    return conn.poll(5) and json.loads(conn.recv_bytes(4096)).get("ok", False)
            except (OSError, EOFError, AuthenticationError) as err:
                if time.monotonic() > deadline:
                    log.warning("the open settings window did not answer: %s", err)
                    return False
                time.sleep(0.2)

    def serve(self, on_focus: Callable[[], object], on_page: Callable[[str], object] | None = None) -> None:
        """Listen for "focus" requests from later starts (in a daemon thread); ``on_page(fragment)``
        shows the page a later start asked for (``--page``), before ``on_focus``.

        Calling it again only replaces the callbacks (the window fell back to the browser).
        """
        self._on_focus, self._on_page = on_focus, on_page
        if self._listener is not None:
            return
        try:
            listener = self._listener = self._listen()
        except OSError as err:
            # E.g. another user took the name first: the window still works; a second start cannot focus it.
            log.warning("cannot listen for focus requests at %s: %s", self.address, err)
            return
        # The key is read (or made) here, not in the thread: a second start must find the same one.
        threading.Thread(target=self._accept, args=(listener, focus_key(self.paths)), name="settings-focus",
                         daemon=True).start()

    def _listen(self) -> mpc.Listener:
        if self.family == "AF_UNIX":
            folder = Path(self.address).parent
            if folder != self.paths.runtime_dir:
                private_folder(folder)
            if os.path.exists(self.address):
                os.unlink(self.address)  # left by a window that died; we hold the lock, so it is ours to clear
        # No authkey here: the handshake runs per connection in its own thread (as in core.agent.ipc), so a
        # client that connects and says nothing cannot block the next one.
        listener = mpc.Listener(self.address, family=self.family)
        if self.family == "AF_UNIX":
            os.chmod(self.address, 0o600)
        return listener

    def _accept(self, listener: mpc.Listener, key: bytes) -> None:
        while True:
            try:
                conn = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn, key), daemon=True).start()

    def _answer(self, conn, key: bytes) -> None:
        with conn:
            try:
                mpc.deliver_challenge(conn, key)
                mpc.answer_challenge(conn, key)
                request = json.loads(conn.recv_bytes(4096)) if conn.poll(5) else {}
                if request.get("cmd") == "focus":
                    log.info("a second start asked for the settings: bringing them to the front")
                    page = page_fragment(str(request.get("page") or "").lstrip("#"))
                    if page and self._on_page is not None:
                        self._on_page(page)
                    self._on_focus()
                    conn.send_bytes(b'{"ok": true}')
            except (AuthenticationError, OSError, EOFError, ValueError) as err:
                log.info("refused a focus request: %s", err)

    def close(self) -> None:
        """Stop listening and release the lock."""
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
