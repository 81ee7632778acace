"""Run the real ``plugback`` command line as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env


def plugback_executable() -> Path:
    """The ``plugback`` console script of the venv running the tests."""
    scripts = Path(sys.executable).parent
    name = "plugback.exe" if os.name == "nt" else "plugback"
    path = scripts / name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run ./dev setup (pip install -e '.[test]') first")
    return path


def run_cli(*args: str | os.PathLike, input: str | None = None,  # noqa: A002 - subprocess.run's name
            env: dict[str, str] | None = None,
            cwd: str | os.PathLike | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``plugback ARGS...`` with the test environment; return the finished process.

    stdout and stderr are captured as text. stdin is ``input`` when given, else
    empty (so a command that prompts fails instead of hanging the suite).
    ``env`` adds to / overrides the isolated test environment. The exit code is
    not checked: assert on ``.returncode`` yourself.
    """
    return subprocess.run(
        [str(plugback_executable()), *map(str, args)],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=subprocess_env(env),
        cwd=cwd,
        timeout=timeout,
    )
