"""The isolated environment every test runs in (installed by the autouse fixture).

Nothing a test does may touch the real user's Plugback state, keyring, config
or autostart entries, in-process or in a subprocess. ``isolated_env`` returns
the environment variables that achieve that for a temp folder ``root``:

* ``PLUGBACK_HOME`` -> ``root/home`` (not created: the app must create it)
* ``PLUGBACK_TESTONLY_WEAKEN_KDF=1``: core.engine.crypto makes scrypt cheap (borg does the same)
* ``PYTHON_KEYRING_BACKEND``: a file keyring, so a CLI subprocess stores
  passphrases in ``root/xdg-data/python_keyring/`` instead of the real keyring
* ``XDG_*_HOME`` and ``XDG_RUNTIME_DIR`` inside ``root``
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

FILE_KEYRING = "keyrings.alt.file.PlaintextKeyring"


@dataclass
class TestEnv:
    """Where a test's isolated state lives (the ``plugback_env`` fixture returns one)."""

    __test__ = False  # not a test class, despite the name

    root: Path
    vars: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        """``PLUGBACK_HOME`` of this test."""
        return Path(self.vars["PLUGBACK_HOME"])

    @property
    def keyring_file(self) -> Path:
        """Where a subprocess's file keyring (keyrings.alt PlaintextKeyring) stores passwords."""
        return Path(self.vars["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg"


def isolated_env(root: Path) -> TestEnv:
    """Environment variables that confine Plugback, keyring and XDG state to ``root``.

    ``root`` should be a short path: the agent's AF_UNIX socket lives under
    ``PLUGBACK_HOME`` and socket paths are limited to about 100 bytes.
    """
    runtime = root / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        "PLUGBACK_HOME": str(root / "home"),
        "PLUGBACK_TESTONLY_WEAKEN_KDF": "1",
        "PYTHON_KEYRING_BACKEND": FILE_KEYRING,
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "XDG_STATE_HOME": str(root / "xdg-state"),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    return TestEnv(root=root, vars=env)


def repo_root() -> Path:
    """The checkout the tests run from."""
    return Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repository root (screenshots, logs), created on demand."""
    path = repo_root() / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current (already isolated) environment plus ``extra``, for a child process."""
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env
