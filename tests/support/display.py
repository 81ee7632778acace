"""A virtual X display (Xvfb) for GUI tests, and screenshots of it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import artifacts_dir

# Debian's ImageMagick; a `convert` / `import` elsewhere on PATH may be something else.
IMPORT = "/usr/bin/import"


class DisplayUnavailable(Exception):
    """Xvfb is missing or would not start; the message says why."""


@dataclass
class XDisplay:
    """A running Xvfb server. ``name`` is the DISPLAY value, e.g. ":7"."""

    name: str
    process: subprocess.Popen

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_xvfb(size: str = "1280x800x24", timeout: float = 15) -> XDisplay:
    """Start Xvfb on a free display number (Xvfb picks it: -displayfd) and return it."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise DisplayUnavailable("Xvfb is not installed (Debian: apt-get install xvfb; ./dev setup does it)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + timeout
    try:
        # Xvfb writes "<n>\n" to the fd once it accepts connections.
        while not number.endswith(b"\n"):
            if time.monotonic() > deadline:
                raise DisplayUnavailable(f"Xvfb did not report a display within {timeout}s")
            chunk = os.read(read_fd, 16)
            if not chunk:
                err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
                raise DisplayUnavailable(f"Xvfb exited before it was ready: {err.strip()[-500:]}")
            number += chunk
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(read_fd)
    # Nobody reads Xvfb's stderr from here on; do not let a full pipe block it.
    proc.stderr.close()
    return XDisplay(name=f":{int(number.strip())}", process=proc)


def screenshot(name: str, display: str | None = None) -> Path:
    """Save the whole screen of ``display`` (default: $DISPLAY) as test-artifacts/<name>.png."""
    if not Path(IMPORT).exists():
        raise DisplayUnavailable(f"{IMPORT} is missing (Debian: apt-get install imagemagick)")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    out = artifacts_dir() / f"{safe}.png"
    env = dict(os.environ)
    if display:
        env["DISPLAY"] = display
    subprocess.run([IMPORT, "-window", "root", str(out)], check=True, env=env, timeout=30,
                   capture_output=True, stdin=subprocess.DEVNULL)
    return out
