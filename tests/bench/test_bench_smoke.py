"""The benchmark code must not rot: run it end to end on a tiny data set.

Speed is never asserted here (that is what ``bench/run.py`` reports); these
tests only check that the generator is deterministic and that a whole run with
plugback and cp produces a report with every phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"
PHASES = ("full", "nochange", "changed", "restore", "verify")
LABELS = ("full backup", "no-change backup", "backup after a day of changes", "restore", "full verify")


def _bench(script: str, *args, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True,
                          text=True, env=subprocess_env(), timeout=timeout)


def _snapshot(root: Path) -> dict:
    """Every entry under root with its type, bytes or link target, and mtime."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_symlink():
                value = ("l", os.readlink(p))
            elif p.is_dir():
                value = ("d",)
            else:
                value = ("f", p.read_bytes())
            out[str(p.relative_to(root))] = (*value, st.st_mtime_ns)
    return out


def test_data_set_is_deterministic_and_mutator_changes_it(tmp_path):
    for name in ("a", "b"):
        result = _bench("make_dataset.py", tmp_path / name, "--scale", "0.002", "--seed", "7")
        assert result.returncode == 0, result.stderr
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert a == b
    kinds = {v[0] for v in a.values()}
    assert kinds == {"f", "d", "l"}
    assert any(not k.isascii() for k in a), "expected non-ASCII names"

    result = _bench("make_dataset.py", tmp_path / "a", "--mutate", "1", "--seed", "7")
    assert result.returncode == 0, result.stderr
    changes = json.loads(result.stdout)
    after = _snapshot(tmp_path / "a")
    old, new = changes["renamed_folder"]
    assert old not in after and new in after
    assert changes["modified"] >= 1 and changes["added"] >= 1 and changes["deleted"] >= 1
    assert after != a


@pytest.mark.slow
def test_whole_benchmark_reports_every_phase(tmp_path):
    results = tmp_path / "results"
    run = _bench("run.py", "--scale", "0.002", "--tools", "plugback,cp", "--warm",
                 "--workdir", tmp_path / "work", "--results-dir", results, "--markdown")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    data = json.loads((results / "latest.json").read_text())
    assert "plugback" not in data["skipped_tools"], data["skipped_tools"]
    for tool in ("plugback", "cp -a"):
        for phase in PHASES:
            cell = data["results"][tool][phase]
            assert cell["status"] == "ok", (tool, phase, cell)
            assert cell["wall"] > 0 and len(cell["runs"]) == 1
        assert data["restore_checks"][tool].startswith("ok"), data["restore_checks"]
    assert {t["target"] for t in data["targets"]} >= {"full backup <= 1.2x cp -a"}
    assert "Cache: warm" in run.stdout
    for label in LABELS:
        assert label in run.stdout
    # The encryption section is either measured or says why not.
    assert "Encryption" in run.stdout
    assert data["encryption_skipped"] or data["results"]["plugback --encrypt"]["full"]["status"] == "ok"
    assert "| phase | plugback | cp -a |" in run.stdout
    assert not (tmp_path / "work" / "run").exists(), "the run folder should be cleaned up"

    again = _bench("report.py", results / "latest.json", "--markdown")
    assert again.returncode == 0 and "| full backup |" in again.stdout
