"""scripts/smoke_frozen.py — the release workflow's smoke test of each OS's frozen app — run here
against the Linux build (the same cached build as test_frozen.py), so the script cannot rot unseen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.test_frozen import BUILD_DIST, build  # noqa: F401 - `build` is the module-scoped build fixture
from tests.support.env import repo_root

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux build; the release workflow runs "
                       "the script on Windows and macOS"),
]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_release_smoke_script_passes_on_the_frozen_linux_build(build):  # noqa: F811 - the fixture
    proc = subprocess.run([sys.executable, str(repo_root() / "scripts" / "smoke_frozen.py"), str(BUILD_DIST / "plugback")],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in ("the agent started without an icon", "verify --read-all", "the restored tree equals the source",
                 "the agent quit (exit 0)"):
        assert f"ok: {step}" in proc.stdout, proc.stdout
