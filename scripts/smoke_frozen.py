"""Smoke test of a frozen build on the OS that built it (the release workflow runs it on each).

    python scripts/smoke_frozen.py DIR      DIR: the folder with the frozen plugback and plugback-tray

Steps (each names itself when it fails; exit 0 when all pass):

1. ``plugback --version`` runs;
2. ``plugback-tray --no-icon`` starts the agent without a tray icon, and the frozen
   ``plugback status --json`` reaches it over IPC;
3. the frozen CLI backs up a small tree (nested folders, a non-ASCII name, an empty
   file, an empty folder, 1 MiB of random bytes), verifies it with ``--read-all``,
   restores it, and the restored tree equals the source, byte for byte;
4. the agent is asked to quit over IPC (what the tray's Quit does); it exits with 0
   and status then reports no agent;
5. the bundled rclone (Windows and macOS always carry one, docs/installers.md; on Linux only
   when one was put next to the executables): with an empty PATH and an empty rclone
   configuration the frozen CLI must find it and answer "no rclone remote called ..." for an
   unknown remote, not "rclone was not found".

Everything runs in a temporary folder with its own ``PLUGBACK_HOME`` and keyring's
null backend, so the build machine's user state is never touched. Needs this
repository's ``core`` importable (for the IPC client): run it with the Python the
build used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = ".exe" if sys.platform == "win32" else ""
TREE = {
    "Docs/letter.txt": b"Dear Ada,\n",
    "Docs/Reports/2026 q3.csv": b"month,total\njul,1\n" * 500,
    "Docs/caf\u00e9 menu.txt": "cr\u00eape, galette".encode(),
    "Docs/empty.txt": b"",
    "Docs/Empty folder/": None,
    "Docs/random.bin": os.urandom(1 << 20),
}


class SmokeFailed(Exception):
    pass


def make_tree(root: Path) -> None:
    for rel, data in TREE.items():
        p = root / rel
        if data is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        if not dirs and not files and prefix:
            out[prefix] = None
        for name in files:
            out[prefix + name] = (Path(folder) / name).read_bytes()
    return out


class Smoke:
    def __init__(self, bin_dir: Path, work: Path):
        self.bin_dir, self.work = bin_dir, work
        self.env = {**os.environ, "PLUGBACK_HOME": str(work / "home"),
                    "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
        os.environ.update(self.env)   # the IPC client below finds the agent through PLUGBACK_HOME

    def exe(self, name: str) -> str:
        path = self.bin_dir / (name + EXE)
        if not path.is_file():
            raise SmokeFailed(f"{path} is missing")
        return str(path)

    def cli(self, *args: str, step: str, timeout: float = 300, ok=(0,)) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.exe("plugback"), *args], capture_output=True, text=True, env=self.env,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode not in ok:
            raise SmokeFailed(f"{step}: plugback {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        if step != "status":
            print(f"ok: {step}")
        return proc

    def status(self) -> dict:
        """``plugback status --json`` (exit 5 with the same JSON when no agent runs)."""
        return json.loads(self.cli("status", "--json", step="status", timeout=60, ok=(0, 5)).stdout)

    def run(self) -> None:
        self.cli("--version", step="version")
        agent = subprocess.Popen([self.exe("plugback-tray"), "--no-icon"], env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.wait_for_agent(agent)
            self.round_trip()
            self.quit(agent)
            self.bundled_rclone()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()

    def wait_for_agent(self, agent: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise SmokeFailed(f"plugback-tray --no-icon exited {agent.returncode} before answering")
            if self.status().get("agent"):
                print("ok: the agent started without an icon and answers status")
                return
            time.sleep(0.5)
        raise SmokeFailed("plugback-tray --no-icon never answered status")

    def round_trip(self) -> None:
        src, set_path, out = self.work / "src", self.work / "set", self.work / "out"
        make_tree(src)
        self.cli("backup", str(src / "Docs"), "--to", str(set_path), step="backup")
        self.cli("verify", str(set_path), "--read-all", step="verify --read-all")
        self.cli("restore", str(set_path), str(out), step="restore")
        if read_tree(out) != read_tree(src):
            raise SmokeFailed(f"restore: the restored tree differs from the source: "
                              f"{sorted(set(read_tree(out).items()) ^ set(read_tree(src).items()))[:5]}")
        print("ok: the restored tree equals the source")

    def quit(self, agent: subprocess.Popen) -> None:
        sys.path.insert(0, str(ROOT))
        from core.agent import ipc

        ipc.call("quit")
        try:
            code = agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise SmokeFailed("quit: the agent was asked to quit and did not within 60 s") from None
        if code != 0:
            raise SmokeFailed(f"quit: the agent exited {code}")
        if self.status().get("agent"):
            raise SmokeFailed("quit: status still reports an agent")
        print("ok: the agent quit (exit 0) and status reports no agent")


    def bundled_rclone(self) -> None:
        """Step 5: the frozen CLI reaches the rclone next to it (PATH empty, so no other one)."""
        if not (self.bin_dir / ("rclone" + EXE)).is_file():
            if sys.platform in ("win32", "darwin"):
                raise SmokeFailed(f"rclone: {self.bin_dir} holds no rclone{EXE} (scripts/fetch_rclone.py puts it there)")
            print("skip: no bundled rclone (Linux uses the system's)")
            return
        empty = self.work / "empty-path"
        empty.mkdir(exist_ok=True)
        config = self.work / "rclone.conf"
        config.write_text("")
        env = {**self.env, "PATH": str(empty), "RCLONE_CONFIG": str(config), "PLUGBACK_PASSPHRASE": "smoke"}
        proc = subprocess.run([self.exe("plugback"), "snapshots", "rclone:plugback-smoke-none:x"], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
        said = proc.stdout + proc.stderr
        if proc.returncode != 2 or "no rclone remote called 'plugback-smoke-none'" not in said:
            raise SmokeFailed(f"rclone: the frozen CLI did not use the bundled rclone (exit {proc.returncode}):\n{said}")
        print("ok: the frozen CLI finds the bundled rclone")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="plugback-smoke-") as work:
        try:
            Smoke(Path(argv[0]).resolve(), Path(work)).run()
        except (SmokeFailed, subprocess.TimeoutExpired) as err:
            print(f"SMOKE TEST FAILED: {err}", file=sys.stderr)
            return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
