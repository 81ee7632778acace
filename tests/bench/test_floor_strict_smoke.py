"""bench/floor_strict.py must not rot: on tiny data, warm (not root), every command of a round runs
and succeeds, the order rotates per round, each cold reader reads the tree the round wrote last, and
the reader's shell command reads every byte of every file (speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.env import subprocess_env
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "floor_strict.py"
sys.path.insert(0, str(ROOT / "bench"))

import floor_strict  # noqa: E402


def _run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env({"PYTHONPATH": str(ROOT)}), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_rounds_run_every_command_rotated_each_reading_the_last_copy(tmp_path):
    out = tmp_path / "r.json"
    proc = _run("--warm", "--dataset", "small", "--files", "60", "--rounds", "2", "--device", "--device-mib", "8",
                "--workdir", tmp_path / "w", "--json", out)
    result = json.loads(out.read_text())
    names = [*floor_strict.COPIES, "plugback this"]
    first, second = (sorted(r, key=lambda n: r[n]["position"]) for r in result["rounds"])
    assert first == names and second == names[1:] + names[:1]
    assert all(list(r) == names for r in result["rounds"])   # (stored in one order: the peer first)
    assert all(r["rc"] == 0 and r["wall"] > 0 for rnd in result["rounds"] for r in rnd.values())
    # Round 0 runs cp -a first, so every reader of round 0 reads the copy made just before it.
    order = first
    for i, name in enumerate(order):
        old = result["rounds"][0][name]["old"]
        if old:
            made = [n for n in order[:i] if n in floor_strict.COPIES][-1]
            assert Path(old).name == "r0-" + "".join(c if c.isalnum() else "-" for c in made).strip("-"), (name, old)
    # The copies with a sync: it ended after the copy; the readers are timed beside it.
    b = result["rounds"][0][floor_strict.B]["ends"]
    assert b["sync"] >= b["copy"] and "reader0" in b
    assert set(result["rounds"][0][floor_strict.C]["ends"]) == {"copy", "sync", "reader0", "reader1"}
    assert len(result["device"]) == 5
    assert "| plugback this |" in proc.stdout and "| (b) cp -a + cold read; sync |" in proc.stdout
    # The copies and sets are gone at the end (through the trash); the source and the first copy stay.
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["home", "logs", "old0", "src"]
    merged = _run("--report", out, out).stdout
    row = next(line for line in merged.splitlines() if line.startswith("| cp -a |"))
    assert row.count("1.00") >= 4   # four rounds against themselves


def test_verify_times_restic_the_cold_reads_and_plugback(tmp_path):
    need("restic")
    out = tmp_path / "v.json"
    proc = _run("--warm", "--verify", "--files", "120", "--rounds", "1", "--workdir", tmp_path / "w", "--json", out,
                timeout=240)
    (rnd,) = json.loads(out.read_text())["rounds"]
    assert list(rnd) == [floor_strict.VERIFY_PEER, "cold read of the set's files (cat, 2 processes)",
                         "cold read of the set's files (cat, 8 processes)",
                         "SHA-256 of the set's files (openssl, 8 processes)", "plugback this"]
    assert all(r["rc"] == 0 for r in rnd.values())
    assert "| plugback this |" in proc.stdout and "/ restic check --read-data" in proc.stdout


def test_the_reader_reads_every_byte_of_every_file(tmp_path):
    tree = tmp_path / "t"
    (tmp_path / "t" / "a b" / "c").mkdir(parents=True)
    files = {"x": b"1" * 70_000, "a b/y\nz": b"22", "a b/c/-n": b"333", "a b/c/empty": b""}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    (tree / "link").symlink_to(tree / "x")   # not a regular file: not read twice
    cmd = floor_strict.reader(tree, 2, False).replace("> /dev/null", f"> {tmp_path / 'out'}")
    subprocess.run(["sh", "-c", cmd], check=True)
    assert (tmp_path / "out").stat().st_size == sum(map(len, files.values()))
    hashed = floor_strict.reader(tree, 1, True).replace("> /dev/null", f"> {tmp_path / 'sums'}")
    subprocess.run(["sh", "-c", hashed], check=True)
    assert (tmp_path / "sums").read_text().count(")= ") == len(files)   # (a name may hold a newline)
