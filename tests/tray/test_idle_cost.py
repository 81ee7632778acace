"""The resident agent's idle cost: two jobs configured, no drive connected (docs/tray.md has the numbers)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.agent.config import Paths
from tests.support.agent import wait_for
from tests.support.env import subprocess_env

pytestmark = pytest.mark.slow
SECONDS = 30


def test_idle_agent_is_small_and_quiet(tmp_path):
    paths = Paths.default()
    paths.ensure()
    src = tmp_path / "src"
    src.mkdir()
    jobs = [{"name": name, "sources": [str(src)], "destination": {"drive_id": drive_id},
             "triggers": {"on_connect": True, "schedule": spec}}
            for name, drive_id, spec in (("Docs", "11111111-1111-4111-8111-111111111111", "daily@09:30"),
                                         ("Photos", "22222222-2222-4222-8222-222222222222", "hourly"))]
    paths.config_file.write_text(json.dumps({
        "version": 1, "jobs": jobs, "prefs": {"start_at_login": False},
        "drives": [{"drive_id": j["destination"]["drive_id"], "label": j["name"]} for j in jobs]}))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "plugback-tray"), "--no-icon"],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: paths.agent_log.exists() and "agent started" in paths.agent_log.read_text(), 30,
                 "the agent to start")
        time.sleep(3)
        p = psutil.Process(proc.pid)
        cpu0, t0 = sum(p.cpu_times()[:2]), time.monotonic()
        time.sleep(SECONDS)
        cpu = 100 * (sum(p.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
        rss_mb = p.memory_info().rss / 2**20
        assert proc.poll() is None
        print(f"idle agent: {rss_mb:.1f} MB RSS, {cpu:.3f}% of one core over {SECONDS} s")
        assert rss_mb < 60, f"{rss_mb:.1f} MB resident"
        assert cpu < 0.5, f"{cpu:.3f}% of one core"
    finally:
        proc.terminate()
        proc.wait(30)
