"""Measure the frozen Linux app: sizes and cold start times (docs/performance.md, "Frozen app").

    python installers/linux/measure_frozen.py [DIST]     (DIST: scripts/build-linux.sh's output, default dist/)

* sizes: the one-folder bundle on disk, the .deb, the tarball;
* ``plugback --version``: cold (page cache dropped first; needs root, else
  reported as warm only) and warm, median of several runs;
* agent start to first answer: spawn ``plugback-tray --no-icon`` and poll
  ``plugback status --json`` until it reports the agent, cold and warm.

Each run uses a fresh PLUGBACK_HOME in a temp folder and the null keyring, so
nothing touches the real user's state. Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5


def drop_caches() -> bool:
    """Empty the page cache so the next start reads the bundle from disk; False without root."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _env(home: str) -> dict[str, str]:
    return {**os.environ, "PLUGBACK_HOME": home, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def time_version(folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(folder / "plugback"), "--version"], check=True, capture_output=True)
    return time.perf_counter() - started


def time_agent(folder: Path) -> float:
    """Seconds from spawning the agent to the first status reply that says it runs."""
    with tempfile.TemporaryDirectory(prefix="pbm") as home:
        env = _env(home)
        started = time.perf_counter()
        agent = subprocess.Popen([str(folder / "plugback-tray"), "--no-icon"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < 60:
                proc = subprocess.run([str(folder / "plugback"), "status", "--json"], env=env,
                                      capture_output=True, text=True)
                if proc.returncode == 0 and json.loads(proc.stdout).get("agent"):
                    return time.perf_counter() - started
                time.sleep(0.05)
            raise RuntimeError("the agent did not answer within 60 s")
        finally:
            agent.terminate()
            agent.wait(timeout=30)


def median(fn, folder: Path, cold: bool) -> float | None:
    samples = []
    for _ in range(RUNS):
        if cold and not drop_caches():
            return None
        samples.append(fn(folder))
    return statistics.median(samples)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str]) -> int:
    dist = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "dist"
    folder = dist / "plugback"
    info = json.loads((dist / "build-info.json").read_text())
    fmt = lambda s: "n/a (needs root)" if s is None else f"{s:.2f} s"  # noqa: E731
    rows = [
        ("bundle folder (dist/plugback)", f"{du(folder) / 1e6:.0f} MB, {sum(1 for _ in folder.rglob('*'))} files"),
        (".deb", f"{info['deb_bytes'] / 1e6:.1f} MB"),
        ("tarball (.tar.gz)", f"{info['tarball_bytes'] / 1e6:.1f} MB"),
        ("PyInstaller run (scripts/build-linux.sh, freeze step)", f"{info['freeze_seconds']} s"),
        ("`plugback --version`, cold", fmt(median(time_version, folder, cold=True))),
        ("`plugback --version`, warm", fmt(median(time_version, folder, cold=False))),
        ("`plugback-tray --no-icon` start to first `status` answer, cold", fmt(median(time_agent, folder, cold=True))),
        ("`plugback-tray --no-icon` start to first `status` answer, warm", fmt(median(time_agent, folder, cold=False))),
    ]
    print("| what | measured |\n| --- | --- |")
    for what, value in rows:
        print(f"| {what} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
