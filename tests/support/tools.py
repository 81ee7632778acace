"""The benchmark peers and rclone that tests run for real. scripts/setup.sh installs every one of
them, so a missing one is a machine set up wrong, not a reason to pass quietly: the test fails and
says what to install."""

from __future__ import annotations

import shutil

import pytest

PACKAGES = {"rclone": "rclone", "restic": "restic", "borg": "borgbackup", "rsync": "rsync"}


def need(*tools: str) -> None:
    """Fail the calling test, naming what to install, unless every one of ``tools`` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run scripts/setup.sh (Debian: apt-get install "
                    f"{' '.join(PACKAGES.get(t, t) for t in missing)})", pytrace=False)
