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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_smoke_scripts_rclone_step_finds_an_rclone_next_to_the_frozen_cli(build, tmp_path, monkeypatch):  # noqa: F811
    """Step 5 as the Windows and macOS builds run it: an rclone beside the executables (here
    Debian's, copied in) must be the one the frozen CLI uses when PATH holds none."""
    import importlib.util
    import shutil

    from tests.support.tools import need

    need("rclone")
    rclone = shutil.which("rclone")
    assert rclone
    bundle = tmp_path / "plugback"
    try:
        subprocess.run(["cp", "-al", str(BUILD_DIST / "plugback"), str(bundle)], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        shutil.copytree(BUILD_DIST / "plugback", bundle, symlinks=True)
    spec = importlib.util.spec_from_file_location("plugback_smoke", repo_root() / "scripts" / "smoke_frozen.py")
    assert spec and spec.loader
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    for name in ("PLUGBACK_HOME", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.setenv(name, "")   # Smoke() sets them in os.environ; put them back afterwards
    work = tmp_path / "work"
    work.mkdir()
    runner = smoke.Smoke(bundle, work)
    with pytest.raises(smoke.SmokeFailed, match="did not use the bundled rclone"):
        (bundle / "rclone").write_text("#!/bin/sh\nexit 3\n")   # a broken program there is noticed
        (bundle / "rclone").chmod(0o755)
        runner.bundled_rclone()
    (bundle / "rclone").unlink()
    shutil.copy2(rclone, bundle / "rclone")
    runner.bundled_rclone()
