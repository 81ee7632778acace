"""The tools the benchmark times: plugback and its peers, one class each.

Each tool turns a phase into a ``Command`` (argv, environment, working folder,
plus untimed set-up before and clean-up after). ``run.py`` times only the
command itself (and one ``sync`` after it, for every tool alike).

What each phase means per tool (also in docs/performance.md):

=========  ==========================  ===================  ===========================  =====================
phase      cp -a                       rsync -a             restic                       borg
=========  ==========================  ===================  ===========================  =====================
full       cp -a SRC copy-1            rsync -a --delete    backup (repo made untimed)   create (init untimed)
no-change  cp -a SRC copy-2 (again)    same command again   backup again                 create again
changed    cp -a SRC copy-3 (again)    same command again   backup again                 create again
restore    cp -a copy back             rsync -a back        restore latest --target      extract (in target)
verify     diff -r SRC copy            rsync -anc (dry run  check --read-data            check --verify-data
                                       with checksums)
verify-q   -                           -                    check                        check
ls         -                           -                    ls latest                    list ::aN
diff       -                           -                    diff FIRST LAST              diff ::a1 aN
snapshots  -                           -                    snapshots                    list
forget     -                           -                    forget --keep-last 1 --prune prune --keep-last 1; compact
=========  ==========================  ===================  ===========================  =====================

plugback: ``backup SRC --to SET``, ``restore SET TARGET``, ``verify SET
--read-all`` (verify) or ``verify SET`` (verify-q), ``ls SET``, ``diff SET
FIRST LAST``, ``snapshots SET``, ``forget SET --keep-last 1 --prune``. It runs
as ``python -m core.cli`` with ``PYTHONPATH`` set to this checkout, so the
benchmark always measures the code beside it (not whatever ``plugback`` is
installed).

cp -a has no incremental mode, so its no-change and changed backups are a new
full copy (what a cp user does); the older copy is moved to the run's trash, untimed.

Nothing here deletes a tree between timed commands: :meth:`Tool.reset` and cp's older copies go
to the run's :class:`trash.Trash` (deleted when the run ends), because on ext4 without a journal
files created just after a big deletion cost more (see bench/trash.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trash import Trash, rmtree  # noqa: F401  (rmtree: imported from here by the other scripts)

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "plugback-bench"  # restic always encrypts; plugback --encrypt takes this too
# Phases that need snapshots in a repository: a plain copy has no equivalent.
REPOSITORY_PHASES = ("verify-quick", "ls", "diff", "snapshots", "forget")


@dataclass
class Command:
    """One timed invocation, with untimed work around it."""

    argv: list[str]
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    # Given the command's captured output, return a problem description or None.
    check_output: Callable[[str], str | None] | None = None


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except OSError as err:
        return f"unavailable ({err})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


class Tool:
    """Base: a tool keeps its backup under ``home`` (one folder per tool per run)."""

    name = "?"
    binary = "?"
    # Phases this tool cannot do as such (reported as n/a).
    unsupported: tuple[str, ...] = ()

    def __init__(self, home: Path, src: Path, trash: Trash | None = None):
        self.home = Path(home)
        self.src = Path(src)
        self.trash = trash   # where reset() and cp's older copies put what they replace

    def discard(self, path: Path) -> None:
        """Into the run's trash (deleted when the run ends), or deleted now without one."""
        if self.trash is not None:
            self.trash.put(path)
        else:
            rmtree(path)

    def missing(self) -> str | None:
        """Why the tool cannot run here, or None."""
        if shutil.which(self.binary) is None:
            return f"'{self.binary}' not found on PATH (Debian: apt-get install -y {self.package})"
        return None

    package = "?"

    def version_argv(self) -> list[str]:
        return [self.binary, "--version"]

    def version(self) -> str:
        return _version(self.version_argv())

    def base_env(self) -> dict:
        """Environment variables every command of this tool needs (added to os.environ)."""
        return {}

    def reset(self) -> None:
        """Start from an empty backup (untimed)."""
        self.discard(self.home)
        self.home.mkdir(parents=True)

    def backup_dir(self) -> Path:
        """What to measure for the backup's size on disk."""
        return self.home / "backup"

    def command(self, phase: str, *, target: Path | None = None, rep: int = 0) -> Command:
        raise NotImplementedError


class Cp(Tool):
    name, binary, package = "cp -a", "cp", "coreutils"
    unsupported = REPOSITORY_PHASES

    def __init__(self, home, src, trash=None):
        super().__init__(home, src, trash)
        self._copies = 0

    def reset(self):
        super().reset()
        (self.home / "backup").mkdir()
        self._copies = 0

    def _latest(self) -> Path:
        return self.home / "backup" / f"copy-{self._copies}"

    def command(self, phase, *, target=None, rep=0):
        if phase in ("full", "nochange", "changed"):
            old = self._latest() if self._copies else None
            self._copies += 1
            after = (lambda: self.discard(old)) if old else None
            return Command(["cp", "-a", str(self.src), str(self._latest())], after=after)
        if phase == "restore":
            return Command(["cp", "-a", str(self._latest()), str(target / "tree")])
        if phase == "verify":
            return Command(["diff", "-r", "--no-dereference", str(self.src), str(self._latest())])
        raise ValueError(phase)


class Rsync(Tool):
    name, binary, package = "rsync -a", "rsync", "rsync"
    unsupported = REPOSITORY_PHASES

    def command(self, phase, *, target=None, rep=0):
        dest = f"{self.home / 'backup'}/"
        src = f"{self.src}/"
        if phase in ("full", "nochange", "changed"):
            return Command(["rsync", "-a", "--delete", src, dest])
        if phase == "restore":
            return Command(["rsync", "-a", dest, f"{target}/"])
        if phase == "verify":
            # A dry run comparing checksums: any itemized line is a difference.
            def differences(output: str) -> str | None:
                lines = [ln for ln in output.splitlines() if ln.strip()]
                return f"{len(lines)} differences, e.g. {lines[:3]}" if lines else None
            return Command(["rsync", "-a", "--delete", "--checksum", "--dry-run",
                            "--itemize-changes", src, dest], check_output=differences)
        raise ValueError(phase)


class Restic(Tool):
    name, binary, package = "restic", "restic", "restic"

    def version_argv(self):
        return ["restic", "version"]

    def _env(self):
        return {"RESTIC_REPOSITORY": str(self.home / "backup"), "RESTIC_PASSWORD": PASSWORD,
                "RESTIC_CACHE_DIR": str(self.home / "cache")}

    def reset(self):
        super().reset()
        subprocess.run(["restic", "init"], env={**os.environ, **self._env()}, check=True,
                       capture_output=True)

    def command(self, phase, *, target=None, rep=0):
        env = self._env()
        if phase in ("full", "nochange", "changed"):
            return Command(["restic", "backup", "--host", "bench", str(self.src)], env=env)
        if phase == "restore":
            return Command(["restic", "restore", "latest", "--target", str(target)], env=env)
        if phase == "verify":
            return Command(["restic", "check", "--read-data"], env=env)
        if phase == "verify-quick":
            return Command(["restic", "check"], env=env)
        if phase == "ls":
            return Command(["restic", "ls", "latest"], env=env)
        if phase == "snapshots":
            return Command(["restic", "snapshots"], env=env)
        if phase == "diff":
            ids = self._snapshot_ids()
            return Command(["restic", "diff", ids[0], ids[-1]], env=env)
        if phase == "forget":
            return Command(["restic", "forget", "--keep-last", "1", "--prune"], env=env)
        raise ValueError(phase)

    def _snapshot_ids(self) -> list[str]:
        out = subprocess.run(["restic", "snapshots", "--json"], env={**os.environ, **self._env()},
                             capture_output=True, text=True, check=True)
        return [s["short_id"] for s in sorted(json.loads(out.stdout), key=lambda s: s["time"])]


class Borg(Tool):
    name, binary, package = "borg", "borg", "borgbackup"

    def __init__(self, home, src, trash=None):
        super().__init__(home, src, trash)
        self._archives = 0

    def _env(self):
        return {"BORG_REPO": str(self.home / "backup"), "BORG_BASE_DIR": str(self.home / "base"),
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    def reset(self):
        super().reset()
        self._archives = 0
        subprocess.run(["borg", "init", "--encryption=none"], env={**os.environ, **self._env()},
                       check=True, capture_output=True)

    def command(self, phase, *, target=None, rep=0):
        env = self._env()
        if phase in ("full", "nochange", "changed"):
            self._archives += 1
            return Command(["borg", "create", f"::a{self._archives}", str(self.src)], env=env)
        if phase == "restore":
            return Command(["borg", "extract", f"::a{self._archives}"], env=env, cwd=target)
        if phase == "verify":
            return Command(["borg", "check", "--verify-data"], env=env)
        if phase == "verify-quick":
            return Command(["borg", "check"], env=env)
        if phase == "ls":
            return Command(["borg", "list", f"::a{self._archives}"], env=env)
        if phase == "snapshots":
            return Command(["borg", "list"], env=env)
        if phase == "diff":
            return Command(["borg", "diff", "::a1", f"a{self._archives}"], env=env)
        if phase == "forget":
            # borg 1.2 frees space only in compact; both count, as restic's --prune does.
            return Command(["sh", "-c", "borg prune --keep-last 1 && borg compact"], env=env)
        raise ValueError(phase)


def plugback_argv() -> list[str]:
    """The plugback CLI, run by the benchmark's interpreter (the project's venv), with plugback_env()."""
    return [sys.executable, "-m", "core.cli"]


def plugback_env() -> dict:
    """Makes ``python -m core.cli`` load this checkout's code, not an installed (editable) copy."""
    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # Bytecode cached as an installed app has it (pip and PyInstaller compile it): a shell that sets
    # PYTHONDONTWRITEBYTECODE made every timed command compile the engine anew (~0.1 s CPU each).
    return {"PYTHONPATH": os.pathsep.join(paths), "PYTHONDONTWRITEBYTECODE": ""}


class Plugback(Tool):
    name, binary, package = "plugback", "plugback", "the project (pip install -e .)"
    encrypt = False

    def missing(self):
        out = subprocess.run(plugback_argv() + ["backup", "--help"], capture_output=True, text=True,
                             env={**os.environ, **self.base_env()})
        if out.returncode != 0:
            return f"'plugback backup --help' failed: {(out.stderr or out.stdout).strip()[-300:]}"
        if self.encrypt and "--encrypt" not in out.stdout:
            return "'plugback backup' has no --encrypt option yet"
        return None

    def version_argv(self):
        return plugback_argv() + ["--version"]

    def version(self) -> str:
        out = subprocess.run(self.version_argv(), capture_output=True, text=True,
                             env={**os.environ, **self.base_env()})
        return (out.stdout or out.stderr).strip() or "?"

    def base_env(self):
        return plugback_env()

    def _env(self):
        env = {"PLUGBACK_HOME": str(self.home / "home"), **plugback_env()}
        if self.encrypt:
            env["PLUGBACK_PASSPHRASE"] = PASSWORD
        return env

    def command(self, phase, *, target=None, rep=0):
        cli = plugback_argv()
        env = self._env()
        set_path = str(self.home / "backup")
        if phase in ("full", "nochange", "changed"):
            extra = ["--encrypt"] if self.encrypt else []
            return Command(cli + ["backup", str(self.src), "--to", set_path] + extra, env=env)
        if phase == "restore":
            return Command(cli + ["restore", set_path, str(target)], env=env)
        if phase == "verify":
            return Command(cli + ["verify", set_path, "--read-all"], env=env)
        if phase == "verify-quick":
            return Command(cli + ["verify", set_path], env=env)
        if phase == "ls":
            return Command(cli + ["ls", set_path], env=env)
        if phase == "snapshots":
            return Command(cli + ["snapshots", set_path], env=env)
        if phase == "diff":
            ids = self._snapshot_ids()
            return Command(cli + ["diff", set_path, ids[0], ids[-1]], env=env)
        if phase == "forget":
            return Command(cli + ["forget", set_path, "--keep-last", "1", "--prune"], env=env)
        raise ValueError(phase)

    def _snapshot_ids(self) -> list[str]:
        out = subprocess.run(plugback_argv() + ["snapshots", str(self.home / "backup"), "--json"],
                             env={**os.environ, **self._env()}, capture_output=True, text=True, check=True)
        return [s["id"] for s in sorted(json.loads(out.stdout), key=lambda s: s["time"])]


class PlugbackNoVerify(Plugback):
    """Backups without the read-back that plugback does by default: what the read-back costs."""

    name = "plugback --no-verify"
    unsupported = ("restore", "verify") + REPOSITORY_PHASES  # the same as plugback's

    def command(self, phase, *, target=None, rep=0):
        cmd = super().command(phase, target=target, rep=rep)
        cmd.argv.append("--no-verify")
        return cmd


class PlugbackEncrypted(Plugback):
    name = "plugback --encrypt"
    encrypt = True


TOOLS = {"plugback": Plugback, "plugback-noverify": PlugbackNoVerify, "cp": Cp, "rsync": Rsync, "restic": Restic, "borg": Borg}
