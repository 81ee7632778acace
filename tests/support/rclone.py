"""Real rclone for the storage tests: a temp rclone config, and ``rclone serve webdav`` on 127.0.0.1.

``RcloneWorld(tmp)`` writes an rclone config under ``tmp`` (point ``RCLONE_CONFIG`` at
``world.config``) and adds remotes to it: ``add_local(name, folder)``,
``add_webdav(name, server, password=...)``. ``WebdavServer(folder, user, password)``
serves a folder over WebDAV (``start()`` on a free port the OS picks, or on the
same port again after ``kill()``, which is SIGKILL: the server gets no chance to
clean up, like a crash or a pulled cable).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support.tools import need

RCLONE = shutil.which("rclone")
_STARTED = re.compile(r"WebDav Server started on http://127\.0\.0\.1:(\d+)/")
# Tests want failures fast: no low-level retries inside rclone, short connect timeout.
FAST_FAIL = ("--low-level-retries", "1", "--contimeout", "5s", "--retries", "1")


def obscure(password: str) -> str:
    """rclone's reversible encoding of a password in its config (``rclone obscure``)."""
    assert RCLONE
    return subprocess.run([RCLONE, "obscure", password], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


class WebdavServer:
    """``rclone serve webdav FOLDER`` on 127.0.0.1 (with ``user``/``password`` when given)."""

    def __init__(self, folder: Path, user: str | None = None, password: str | None = None, *, config: Path):
        self.folder = Path(folder)
        self.user, self.password = user, password
        self.config = config
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "WebdavServer":
        assert RCLONE
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [RCLONE, "serve", "webdav", str(self.folder), "--addr", f"127.0.0.1:{self.port}",
               "--config", str(self.config)]
        if self.user:
            cmd += ["--user", self.user, "--pass", self.password or ""]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        found: list[int] = []
        ready = threading.Event()
        threading.Thread(target=self._read_log, args=(self.proc, found, ready), daemon=True).start()
        if not ready.wait(20) or not found:
            self.kill()
            raise RuntimeError("rclone serve webdav did not start")
        self.port = found[0]
        return self

    @staticmethod
    def _read_log(proc: subprocess.Popen, found: list, ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = _STARTED.search(line)
            if m and not found:
                found.append(int(m.group(1)))
                ready.set()
        ready.set()

    def kill(self) -> None:
        """SIGKILL: no clean-up on the server's side."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port (the remote's URL stays right)."""
        for _ in range(50):
            try:
                self.start()
                return
            except RuntimeError:
                time.sleep(0.1)    # the port may linger a moment
        raise RuntimeError(f"could not restart the WebDAV server on port {self.port}")


class RcloneWorld:
    """An rclone config file of the test's own, and the remotes in it."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config = self.tmp / "rclone.conf"
        self.config.write_text("")
        self.servers: list[WebdavServer] = []
        self.webdav: WebdavServer | None = None     # local_and_webdav's server

    def add_local(self, name: str) -> str:
        """A ``local`` remote; its PATH is an absolute folder (the spec then is rclone:NAME:/abs/path)."""
        self._add(name, {"type": "local"})
        return name

    def serve_webdav(self, folder: Path, user: str | None = None, password: str | None = None) -> WebdavServer:
        server = WebdavServer(folder, user, password, config=self.config).start()
        self.servers.append(server)
        return server

    def add_webdav(self, name: str, server: WebdavServer, user: str | None = None, password: str | None = None) -> str:
        fields = {"type": "webdav", "url": server.url, "vendor": "other"}
        if user:
            fields.update(user=user, **({"pass": obscure(password)} if password else {}))
        self._add(name, fields)
        return name

    def _add(self, name: str, fields: dict) -> None:
        with self.config.open("a") as f:
            f.write(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()) + "\n")

    def close(self) -> None:
        for server in self.servers:
            server.kill()


@contextmanager
def local_and_webdav(tmp: Path) -> Iterator[RcloneWorld]:
    """A world with a ``loc`` (local) remote and a ``wd`` one: WebDAV on 127.0.0.1 serving
    ``tmp/served`` (``world.webdav``); its servers are killed after. Without rclone the test fails
    and names the package (scripts/setup.sh installs it)."""
    need("rclone")
    world = RcloneWorld(tmp)
    world.add_local("loc")
    world.webdav = world.serve_webdav(world.tmp / "served")
    world.add_webdav("wd", world.webdav)
    try:
        yield world
    finally:
        world.close()


def local_remotes(folder: Path, monkeypatch, *names: str) -> RcloneWorld:
    """An rclone configuration in ``folder`` holding a ``local`` remote for each of ``names``, set as
    RCLONE_CONFIG for this process and what it starts; the test fails where rclone is not installed (a machine set up wrong)."""
    need("rclone")
    world = RcloneWorld(folder)
    for name in names:
        world.add_local(name)
    monkeypatch.setenv("RCLONE_CONFIG", str(world.config))
    return world


def local_remote_config(tmp_path_factory, name: str = "loc") -> Path:
    """An rclone configuration holding one ``local`` remote ``name`` (for a module's fixture);
    the test fails where rclone is not installed (a machine set up wrong)."""
    need("rclone")
    world = RcloneWorld(tmp_path_factory.mktemp("rclone"))
    world.add_local(name)
    return world.config
