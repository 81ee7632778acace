"""``plugback job add --live`` and ``plugback job run --rehash`` as real subprocesses (issue #12)."""

from __future__ import annotations

import json

from core.agent.config import Paths
from core.agent.history import History
from tests.support.cli import run_cli
from tests.support.trees import make_tree


def test_job_add_live_and_a_full_check_without_the_agent(tmp_path):
    src = make_tree(tmp_path / "D", {"a.txt": b"a"})
    r = run_cli("job", "add", "Docs", "--source", src, "--to", tmp_path / "S", "--live")
    assert r.returncode == 0, r.stderr
    assert "continuously while the drive is connected" in r.stdout
    (job,) = json.loads(Paths.default().config_file.read_text())["jobs"]
    assert job["triggers"]["live"] is True
    assert run_cli("job", "run", "Docs").returncode == 0                    # no agent: here, a full scan
    r = run_cli("job", "run", "Docs", "--rehash")
    assert r.returncode == 0, r.stderr
    history = History(Paths.default().history_file)
    first, second = sorted(history.runs("Docs"), key=lambda run: run.id)
    assert "scan: every folder, because the folders are not being watched" in history.log(first.id)
    assert "scan: every folder, because a full check was asked for" in history.log(second.id)
    status = json.loads(run_cli("status", "--json").stdout)
    (js,) = status["jobs"]
    assert js["live"] is True and js["watching"] is False and js["next_scan"] == "full"
