"""The bench scripts that had no smoke test must not rot either: each runs on tiny data and what it
prints is parsed (the table, the numbers, the JSON). Speed is never asserted. Root-only scripts (they
drop the page cache or mount a loop drive) skip with that reason elsewhere; restic comes from
``need``, which fails rather than skips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import EXIT_DAMAGE
from tests.bench.kept import deleted_between, run_watched
from tests.support.drives import DriveUnavailable, check_available
from tests.support.env import subprocess_env
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
NOT_ROOT = not hasattr(os, "geteuid") or os.geteuid() != 0


def _bench(script: str, *args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env({"PYTHONPATH": str(ROOT), **env}), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _tree(root: Path, folders: int = 3, files: int = 5) -> Path:
    for d in range(folders):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}.txt").write_bytes(b"%d-%d " % (d, f) * (50 * f + 1))
    return root


def test_full_timeline_help_names_its_arguments():
    out = _bench("full_timeline.py", "--help").stdout
    usage = " ".join(out.split("\n\n")[0].split())
    assert re.search(r"^usage: full_timeline\.py .*--window WINDOW.*--room-walk \{on,off\}.*--big BIG.*--every EVERY.* SRC SET$",
                     usage), out
    bad = subprocess.run([sys.executable, str(BENCH / "full_timeline.py"), "a", "b", "--room-walk", "maybe"],
                         capture_output=True, text=True, env=subprocess_env({"PYTHONPATH": str(ROOT)}), timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'maybe'" in bad.stderr, bad.stderr


def test_hotspots_summarises_a_raw_profile_by_function(tmp_path):
    raw = tmp_path / "full.raw"
    here = f"{ROOT}/core"
    raw.write_text(
        f'process 1:"python";thread (0x1);<module> ({here}/cli.py:5);main ({here}/cli.py:120);'
        f"digest (/usr/lib/python3.11/hashlib.py:10) 6\n"
        f'process 1:"python";thread (0x1);<module> ({here}/cli.py:5);main ({here}/cli.py:121) 2\n'
        f'process 1:"python";thread (0x2);copy (/v/lib/python3.11/site-packages/zz/io.py:3) 2\n'
        "not a sample line\n")
    out = _bench("hotspots.py", raw, "--top", 5).stdout
    own, total = out.split("total %")
    assert out.startswith("10 samples\n")
    assert re.findall(r"^\s*([\d.]+)  (.+)$", own, re.M) == [
        ("60.0", "digest (.../lib/python3.11/hashlib.py)"), ("20.0", "main (core/cli.py)"),
        ("20.0", "copy (.../site-packages/zz/io.py)")]
    rows = dict((name, pct) for pct, name in re.findall(r"^\s*([\d.]+)  (.+)$", total, re.M))
    assert rows == {"<module> (core/cli.py)": "80.0", "main (core/cli.py)": "80.0",
                    "digest (.../lib/python3.11/hashlib.py)": "60.0", "copy (.../site-packages/zz/io.py)": "20.0"}
    (tmp_path / "empty.raw").write_text("")
    empty = subprocess.run([sys.executable, str(BENCH / "hotspots.py"), str(tmp_path / "empty.raw")],
                           capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert empty.returncode == 1 and "no samples" in empty.stderr


def test_gil_primitives_times_every_piece_in_one_and_two_threads():
    out = _bench("gil_primitives.py", "--scale", "0.01").stdout
    assert re.match(r"1-minute load [\d.]+\n", out), out
    rows = re.findall(r"^(.+) x(\d+): one thread ([\d.]+) s wall \(([\d.]+) CPU\); twice in two threads ([\d.]+) s "
                      r"wall \(([\d.]+) CPU\); speed-up ([\d.]+)x$", out, re.M)
    assert [(r[0], int(r[1])) for r in rows] == [("sha256 1 MiB", 10), ("aes-gcm 1 MiB", 10),
                                                   ("zstd text 1 MiB", 3), ("seal_whole 8 KB", 200)], out
    assert all(float(r[-1]) > 0 for r in rows), out   # (the times print to 1 ms: too coarse here to check the ratio)


def test_manifest_zstd_packs_a_synthetic_manifest_with_each_codec():
    out = _bench("manifest_zstd.py", "--entries", 3000, "--repeat", 1).stdout
    head = re.match(r"3000 entries, ([\d.]+) MB of JSON lines\n", out)
    assert head and 0.5 < float(head.group(1)) < 2, out
    rows = [line.split("|")[1:-1] for line in out.splitlines()[3:]]
    assert [r[0].strip() for r in rows] == ["gzip (ISA-L level 1, today)", "zstd level 1", "zstd level 3"], out
    for _, size, ratio, _pack, _unpack in rows:
        # Random hex hashes are most of the bytes: each codec packs the text to a third or so.
        assert 1.5 < float(ratio) < 5 and abs(float(size) * float(ratio) - float(head.group(1))) < 0.06 * float(ratio) + 0.05, out


def test_journal_backup_prints_a_full_scan_then_a_hinted_one(tmp_path):
    src, set_path, cache = _tree(tmp_path / "src"), tmp_path / "set", tmp_path / "cache"
    first = json.loads(_bench("journal_backup.py", src, set_path, "--cache", cache).stdout)
    assert (first["scan"], first["files"], first["copied"], first["status"]) == ("full", 15, 15, "ok"), first
    assert set(first["steps"]) == {"parent read", "pass", "commit", "read-back"}
    (src / "d1" / "f2.txt").write_bytes(b"changed")
    hint = tmp_path / "hint.json"
    hint.write_text(json.dumps({"dirs": [str(src / "d1")]}))
    second = json.loads(_bench("journal_backup.py", src, set_path, "--cache", cache, "--hint", hint).stdout)
    assert (second["scan"], second["files"], second["copied"], second["status"]) == ("journal", 15, 1, "ok"), second
    assert (set_path / "Latest" / "src" / "d1" / "f2.txt").read_bytes() == b"changed"


def test_seal_procs_seals_every_small_file_in_each_worker_count(tmp_path):
    data = _tree(tmp_path / "data", folders=2, files=10)
    (data / "link").symlink_to("d0/f1.txt")           # (not a file: left out)
    out = _bench("seal_procs.py", "--data", data, "--workdir", tmp_path / "work", "--procs", "0,2", "--repeat", 1,
                 "--warm").stdout
    size = sum(p.stat().st_size for p in data.rglob("*.txt"))
    assert out.startswith(f"20 files, {size} bytes\n"), out
    rows = re.findall(r"^rep 1 workers (\d): [\d.]+ s wall, [\d.]+ s CPU, (\d+) objects, load [\d.]+$", out, re.M)
    assert rows == [("0", "20"), ("2", "20")], out
    assert not (tmp_path / "work").exists()


def test_agent_journal_idle_measures_an_agent_with_and_without_a_watched_source(tmp_path):
    out = _bench("agent_journal.py", "idle", "--files", 120, "--seconds", 0.3, "--warmup", 0,
                 "--workdir", tmp_path / "w").stdout
    rows = dict(re.findall(r"^(no job|one job, 120 files watched): (\{.*\})$", out, re.M))
    assert len(rows) == 2, out
    none, watch = json.loads(rows["no job"]), json.loads(rows["one job, 120 files watched"])
    folders = 1 + sum(1 for p in (tmp_path / "w" / "src-120").rglob("*") if p.is_dir())
    assert none["inotify_watches"] == 0 and watch["inotify_watches"] == folders, (out, folders)
    for row in (none, watch):
        assert row["ready_s"] > 0 and 5 < row["rss_mb"] < 200 and row["threads"] >= 1 and row["cpu_percent"] >= 0


@pytest.mark.realdrive
@pytest.mark.skipif(NOT_ROOT, reason="mounts a loop-device ext4 drive: root only")
def test_agent_journal_plugin_backs_up_the_changed_files_through_the_journal(tmp_path):
    try:
        check_available("ext4")
    except DriveUnavailable as err:
        if os.environ.get("PLUGBACK_REQUIRE_REALDRIVE") == "1":
            pytest.fail(f"PLUGBACK_REQUIRE_REALDRIVE=1 but: {err}", pytrace=False)
        pytest.skip(str(err))
    out = _bench("agent_journal.py", "plugin", "--files", 60, "--repeat", 1, "--drive-mb", 64,
                 "--workdir", tmp_path / "w").stdout
    assert re.search(r"^first backup: [\d.]+ s$", out, re.M), out
    again = re.findall(r"^plug-in -> run recorded, 10 changed: [\d.]+ s \(ok, (\d+) copied; scan: (.*)\); phases", out, re.M)
    assert len(again) == 1 and again[0][0] == "10" and again[0][1].endswith("(change journal)"), out


def test_floor_encrypted_times_restic_and_plugback_backup_and_restore(tmp_path):
    """Two repetitions: the first one's repository, sets and restored tree are kept (moved to the
    trash) until the last command ran (the old script deleted them inside its timed commands)."""
    need("restic")
    work = tmp_path / "work"
    proc, events = run_watched(tmp_path, work, 1, "floor_small:timed", "floor_encrypted.py", "--workdir", work,
                               "--scale", "0.001", "--repeat", 2, "--warm")
    assert deleted_between(events, 1) == [] and len(events) == 2 * 4 * 2, events
    out = proc.stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| encrypted ")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("encrypted full", "restic backup"), ("encrypted full", "plugback after"),
        ("encrypted restore", "restic restore"), ("encrypted restore", "plugback after")], out
    assert all(float(r[2]) > 0 and r[-1].strip() == "2" for r in rows), out   # (runs: the last column)
    assert len(re.findall(r" rc 0  load ", out)) == 8, out
    assert (work / "set-after" / "plugback.json").exists() and not (work / "out").exists()
    assert not (work / "trash").exists()


@pytest.mark.skipif(NOT_ROOT, reason="drops the page cache: root only")
def test_verify_ab_verifies_with_restic_and_plugback_and_reports_a_failure(tmp_path):
    need("restic")
    src, set_path, repo, home = _tree(tmp_path / "src"), tmp_path / "set", tmp_path / "restic", tmp_path / "home"
    env = subprocess_env({"PYTHONPATH": str(ROOT), "PLUGBACK_HOME": str(home), "RESTIC_PASSWORD": "bench"})
    for cmd in ([sys.executable, "-P", "-m", "core.cli", "backup", str(src), "--to", str(set_path)],
                ["restic", "-q", "init", "-r", str(repo)], ["restic", "-q", "-r", str(repo), "backup", str(src)]):
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=60)

    def verify_ab(**more: str) -> list[tuple[str, str]]:
        proc = subprocess.run(["sh", str(BENCH / "verify_ab.sh"), str(set_path), str(home), str(repo), "bench",
                               str(ROOT)], capture_output=True, text=True, timeout=120,
                              env=subprocess_env({"ROUNDS": "1", "PYTHON": sys.executable, **more}))
        assert proc.returncode == 0, proc.stderr
        lines = re.findall(r"^1 (\S+) [\d.]+ s wall [\d.]+ user [\d.]+ sys \d+ KB rc (\d+) [\d.]+$", proc.stdout, re.M)
        assert len(lines) == 2, proc.stdout
        return lines

    assert verify_ab() == [("restic", "0"), (str(ROOT), "0")]
    (set_path / "Latest" / "src" / "d2" / "f4.txt").write_bytes(b"bit rot")   # plugback's verify must see it
    assert verify_ab() == [("restic", "0"), (str(ROOT), str(EXIT_DAMAGE))]
    assert verify_ab(QUICK="1") == [("restic", "0"), (str(ROOT), str(EXIT_DAMAGE))]   # (another size: seen too)


def test_restore_threads_times_a_restore_per_thread(tmp_path):
    from tests.support.engine import backup_path

    src = _tree(tmp_path / "Docs")
    (src / "big.bin").write_bytes(b"B" * (1 << 20))
    backup_path(tmp_path / "set", [src], job="Docs")
    out = _bench("restore_threads.py", tmp_path / "set", tmp_path / "out", "--profile", "5").stdout
    assert re.search(r"^wall [\d.]+ s, CPU [\d.]+ s, 16 files, 0 damaged$", out, re.M), out
    assert re.search(r"^ +[\d.]+ s  manifest read and checked$", out, re.M), out
    assert re.search(r"^small files: \d+ batches, the first from [\d.]+ s", out, re.M), out
    assert re.search(r"^big +[\d.]+ -> +[\d.]+ s +1\.0 MiB  Docs/big\.bin$", out, re.M), out
    assert "== restoring thread" in out and "== writer" in out, out
    assert (tmp_path / "out" / "Docs" / "big.bin").read_bytes() == b"B" * (1 << 20)
