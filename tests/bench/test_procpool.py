"""bench/procpool.py's readback mode: both ways of reading a set's Latest/ back check every file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import subprocess_env

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "procpool.py"


def _procpool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


@pytest.mark.parametrize("mode", ["thread", "pool"])
def test_readback_passes_a_good_copy_and_fails_on_a_changed_file(tmp_path, mode):
    latest = tmp_path / "Latest"
    for i in range(150):   # more than one batch of 64 and more than AHEAD files
        folder = latest / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_bytes(b"x" * i)
    items = tmp_path / "items.txt"
    assert _procpool("--items", latest, items).returncode == 0
    assert len(items.read_text().splitlines()) == 150

    good = _procpool(latest, items, "readback", mode, 2)
    assert good.returncode == 0, good.stderr
    assert "readback" in good.stdout

    (latest / "d2" / "f149").write_bytes(b"y" * 149)   # same size, other bytes
    bad = _procpool(latest, items, "readback", mode, 2)
    assert bad.returncode != 0
    assert "1 files read back wrong" in bad.stderr
