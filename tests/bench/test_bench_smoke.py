"""The benchmark code must not rot: run it end to end on a tiny data set.

Speed is never asserted here (that is what ``bench/run.py`` reports); these
tests only check that the generators are deterministic, that peak RSS sees a
grandchild's memory, and that whole runs (standard, small-files at two tiny
sizes, big-file-changed) produce a report with every phase.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import measure
from tests.bench.kept import deleted_between, run_watched
from tests.support.env import subprocess_env
from tests.support.tools import need

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


def test_small_files_data_set_is_deterministic_and_mutator_changes_it(tmp_path):
    for name in ("a", "b"):
        result = _bench("make_scale.py", "small", tmp_path / name, "--files", "120", "--seed", "7")
        assert result.returncode == 0, result.stderr
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert a == b
    files = [k for k, v in a.items() if v[0] == "f"]
    assert len(files) == 120 and all(len(a[f][1]) <= 4096 for f in files)
    folders = {str(Path(f).parent) for f in files}
    assert len(folders) == 3  # 50 files a folder

    result = _bench("make_scale.py", "small", tmp_path / "a", "--files", "120", "--mutate", "1", "--seed", "7")
    assert result.returncode == 0, result.stderr
    changes = json.loads(result.stdout)
    after = _snapshot(tmp_path / "a")
    assert changes["modified"] >= 1 and changes["touched"] >= 1
    assert sorted(after) == sorted(a) and after != a


def test_peak_rss_counts_the_whole_process_tree(tmp_path):
    # A grandchild holds 80 MB for half a second: the sampler or wait4 must see it.
    grandchild = "b = bytearray(80_000_000); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(0.5)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    result = measure.timed([sys.executable, "-c", child], tmp_path / "log", 60)
    assert result["rc"] == 0, (tmp_path / "log").read_text()
    assert result["rss"] >= 80_000_000, result
    assert result["wall"] >= 0.5


@pytest.mark.slow
def test_small_files_scenario_reports_every_phase_and_rss_growth(tmp_path):
    results = tmp_path / "results"
    run = _bench("run.py", "--scenario", "small-files", "--files", "120", "--tools", "plugback,cp,rsync",
                 "--warm", "--workdir", tmp_path / "work", "--results-dir", results, "--markdown")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    one = json.loads((results / "latest.json").read_text())
    assert one["dataset"]["files"] == 120
    cells = one["results"]["plugback"]
    for phase in ("full", "nochange", "changed", "restore", "verify-quick", "verify", "ls", "diff",
                  "snapshots", "forget"):
        assert cells[phase]["status"] == "ok", (phase, cells[phase])
        assert cells[phase]["rss"] > 1_000_000, (phase, cells[phase])
    assert one["results"]["cp -a"]["restore"]["status"] == "ok"
    assert one["results"]["rsync -a"]["nochange"]["status"] == "ok"
    assert one["restore_checks"]["plugback"].startswith("ok"), one["restore_checks"]
    assert {t["target"] for t in one["targets"]} >= {"snapshots <= 0.5 s", "peak RSS <= 200 MB on every phase"}
    assert "| forget --keep-last 1 --prune |" in run.stdout

    # What --scales writes: the runs at each size; the report ends with the RSS growth between them.
    # (Made from this run, so the test pays for one run only.)
    bigger = json.loads(json.dumps(one))
    bigger["meta"]["size"] = "240 files"
    bigger["results"]["plugback"]["full"]["rss"] += 5_000_000
    scales = results / "scales.json"
    scales.write_text(json.dumps({"scenario": "small-files", "runs": [one, bigger]}))
    again = _bench("report.py", scales)
    assert again.returncode == 0, again.stderr
    assert "Peak RSS growth, 120 files to 240 files" in again.stdout
    assert "+5 " in again.stdout


@pytest.mark.slow
def test_big_file_changed_scenario_reports_size_growth(tmp_path):
    results = tmp_path / "results"
    run = _bench("run.py", "--scenario", "big-file-changed", "--big-mib", "2", "--change-mib", "0.25",
                 "--tools", "plugback,rsync", "--warm", "--workdir", tmp_path / "work", "--results-dir", results)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((results / "latest.json").read_text())
    assert data["mutations"][0]["bytes_written"] == 256 * 1024
    for tool in ("plugback", "rsync -a"):
        assert set(data["sizes"][tool]) == {"full", "changed"}
    assert data["targets"][0]["target"] == "set size after the change <= rsync mirror + changed bytes"
    assert "the rsync mirror + the changed bytes" in run.stdout


def test_storage_rclone_benchmark_reports_every_way():
    """bench/storage_rclone.py (issue #13) end to end on three tiny blobs: every way, both remotes."""
    need("rclone")
    proc = _bench("storage_rclone.py", "--small", 3, "--big", 0, "--markdown", timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "seconds" not in line
            and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows] == [f"{remote} {way}" for remote in ("webdav", "local")
                                                       for way in ("rcd", "command", "batch")]
    assert all(r.split("|")[2].strip().replace(".", "").isdigit() for r in rows)    # put small was timed


def test_journal_scenario_splices_and_the_floor_script_runs(tmp_path):
    """The journal scenario (issue #12): its journal runs take the splice path (each backup gets a
    cache folder) and the closing full scan finds nothing to copy; the floor script reads its set."""
    results = tmp_path / "results"
    run = _bench("run.py", "--scenario", "journal", "--files", "300", "--changed", "3", "--repeat", "1", "--warm",
                 "--keep", "--workdir", tmp_path / "work", "--results-dir", results)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (out,) = results.glob("bench-journal-*-300.json")
    data = json.loads(out.read_text())
    assert [r["scan"] for r in data["runs"]["journal"]] == ["journal"] and data["failures"] == []
    set_path = tmp_path / "work" / "run-journal" / "set"
    assert list((tmp_path / "work" / "run-journal" / "cache" / "manifests").glob("*.json"))
    floor = _bench("journal_floor.py", set_path, "--repeat", "1")
    assert floor.returncode == 0, floor.stderr
    assert "floor (gunzip + sha256 + gzip + sha256)" in floor.stdout


def test_the_small_files_floor_script_times_every_phase(tmp_path):
    """bench/floor_small.py (issue #11): the peer, the floors and plugback per phase, all succeeding."""
    need("restic", "rsync")
    out = tmp_path / "floor.json"
    before = Path(__file__).resolve().parents[2]   # (this checkout timed as "before" too)
    run = _bench("floor_small.py", "--files", "60", "--warm", "--workdir", tmp_path / "work", "--json", out,
                 "--before", before)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data) == ["full", "nochange", "restore", "verify"]
    assert list(data["verify"]) == ["peer: restic check --read-data", "floor 1 process", "floor 2 processes",
                                  "floor 8 processes", "plugback before", "plugback", "restic check (quick)",
                                  "plugback before: quick verify", "plugback quick verify", "restic snapshots",
                                  "plugback before: snapshots", "plugback snapshots"]
    assert all(r["rc"] == 0 for by in data.values() for runs in by.values() for r in runs)
    assert "| full | floor serial |" in run.stdout
    assert list(data["full"]) == ["peer: cp -a", "floor serial", "floor overlapped", "floor beside", "plugback before",
                                  "plugback"]
    assert list(data["nochange"]) == ["peer: rsync -a", "floor", "plugback before", "plugback"]
    assert list((tmp_path / "work" / "set3" / "snapshots").glob("*.json.gz"))   # (the full backup before: its own set)
    restored = [p for p in (tmp_path / "work" / "out" / "plugback").rglob("*") if p.is_file()]
    assert len(restored) == 60   # the timed commands did their work
    beside = [p for p in (tmp_path / "work" / "floor-beside").rglob("*") if p.is_file()]
    assert len(beside) == 60   # (the floor with the read-back beside the copy copied every file)


def test_the_small_files_floor_script_bisects_several_checkouts_without_the_floors(tmp_path):
    """floor_small.py --also (issue #11, a bisect in one run): each checkout's full backup timed into its
    own set in each repetition, with user and sys CPU; --no-floors: the peer and plugback only."""
    need("restic", "rsync")
    out = tmp_path / "floor.json"
    here = Path(__file__).resolve().parents[2]
    other = tmp_path / "other"
    other.symlink_to(here)   # (another name for this checkout: a second code to time)
    run = _bench("floor_small.py", "--files", "40", "--warm", "--workdir", tmp_path / "work", "--json", out,
                 "--phases", "full", "--before", here, "--also", other, "--no-floors", "--repeat", "3")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data["full"]) == ["peer: cp -a", "plugback before", "plugback also other", "plugback"]
    assert all(len(runs) == 3 and all(r["rc"] == 0 and r["user"] > 0 for r in runs) for runs in data["full"].values())
    assert list((tmp_path / "work" / "set-other" / "snapshots").glob("*.json.gz"))   # (its own set)
    assert "| full | plugback also other |" in run.stdout and "user s | sys s" in run.stdout


def test_the_small_files_floor_script_turns_every_code_through_every_place():
    """rotated: with n codes compared, each runs in each of their places once in n repetitions (the
    peers stay first); with two it is the old swap."""
    from bench.floor_small import rotated

    by_name = {"peer: cp -a": "cp", "plugback before": "a", "plugback also x": "b", "plugback also y": "c",
               "plugback": "d"}
    orders = [[by_name[n] for n in rotated(by_name, rep)] for rep in range(4)]
    assert all(order[0] == "cp" for order in orders)
    assert all(sorted(order[i] for order in orders) == ["a", "b", "c", "d"] for i in range(1, 5))
    two = {"peer: cp -a": "cp", "plugback before": "a", "plugback": "d"}
    assert [list(rotated(two, rep)) for rep in range(2)] == [list(two), ["peer: cp -a", "plugback", "plugback before"]]


def test_crypto_stream_throughput_reports_both_formats():
    proc = _bench("crypto_stream.py", "--mb", 1, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("format ")]
    assert len(lines) == 4 and all("MB/s" in line for line in lines)
    assert "stored 1.000" in lines[0] and "stored 1.000" not in lines[3]   # format 2 compresses the text


def test_the_standard_floor_script_times_device_full_and_restore(tmp_path):
    """bench/floor_standard.py (issue #11): the machine's speeds, then cp -a, the floors and plugback
    for the full backup and the restore of the standard data set, all succeeding."""
    out = tmp_path / "floor.json"
    run = _bench("floor_standard.py", "--scale", "0.002", "--warm", "--device-mib", "8",
                 "--workdir", tmp_path / "work", "--json", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data) == ["device", "full", "restore"]
    assert list(data["restore"]) == ["peer: cp -a", "floor serial", "floor overlapped", "plugback"]
    assert all(r["rc"] == 0 for by in data.values() for runs in by.values() for r in runs)
    assert "read 8 MiB cold (dd): " in run.stdout and " MB/s" in run.stdout
    restored = [p for p in (tmp_path / "work" / "src").rglob("*") if p.is_file()]
    assert len(restored) > 50 and not (tmp_path / "work" / "copy").exists()   # made, then cleared


def test_floor_standard_full_without_floors_times_the_peer_and_both_checkouts(tmp_path):
    """floor_standard.py --phases full --no-floors --before DIR: an A/B under the lock, shorter:
    cp -a, the before's plugback (here this checkout) and this one's, nothing else."""
    out = tmp_path / "floor.json"
    run = _bench("floor_standard.py", "--scale", "0.002", "--warm", "--phases", "full", "--no-floors",
                 "--before", BENCH.parent, "--workdir", tmp_path / "work", "--json", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data["full"]) == ["peer: cp -a", "plugback before", "plugback"]
    assert all(r["rc"] == 0 for runs in data["full"].values() for r in runs)


def test_floor_standard_times_no_change_and_a_day_of_changes_before_and_after(tmp_path):
    """bench/floor_standard.py --phases nochange,changed (issue #11): rsync, another checkout's plugback
    (here this one) into its own set, and plugback; a day of changes before each changed repetition."""
    out = tmp_path / "floor.json"
    run = _bench("floor_standard.py", "--scale", "0.002", "--warm", "--phases", "nochange,changed",
                 "--before", BENCH.parent, "--workdir", tmp_path / "work", "--json", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data) == ["nochange", "changed"]
    assert list(data["changed"]) == ["peer: rsync -a", "plugback before", "plugback"]
    assert all(r["rc"] == 0 for by in data.values() for runs in by.values() for r in runs)
    assert (tmp_path / "work" / "days").read_text() == "1"
    assert (tmp_path / "work" / "set-before" / "Latest").is_dir() and (tmp_path / "work" / "mirror").is_dir()


def test_the_standard_floor_script_times_a_before_checkout_and_restic_beside_the_restore(tmp_path):
    """floor_standard.py --before DIR --restic: main's restore (here: this checkout's, as DIR) right
    before this one's, restic's after, each succeeding."""
    need("restic")
    out = tmp_path / "floor.json"
    run = _bench("floor_standard.py", "--scale", "0.002", "--warm", "--phases", "restore", "--before", BENCH.parent,
                 "--restic", "--workdir", tmp_path / "work", "--json", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data["restore"]) == ["peer: cp -a", "floor serial", "floor overlapped", "plugback before",
                                     "plugback", "restic"]
    assert all(r["rc"] == 0 for runs in data["restore"].values() for r in runs)


def test_the_standard_floor_script_times_the_full_backup_before_and_after_beside_restic_and_borg(tmp_path):
    """floor_standard.py --phases full --before DIR --full-peers restic,borg: cp -a, main's full backup
    (here this checkout's, as DIR), this one's, restic's and borg's into new repositories, the floors."""
    need("restic", "borg")
    out = tmp_path / "floor.json"
    run = _bench("floor_standard.py", "--scale", "0.002", "--warm", "--phases", "full", "--before", BENCH.parent,
                 "--full-peers", "restic,borg", "--workdir", tmp_path / "work", "--json", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert list(data["full"]) == ["peer: cp -a", "plugback before", "plugback", "restic", "borg", "floor serial",
                                  "floor overlapped", "floor beside"]
    assert all(r["rc"] == 0 for runs in data["full"].values() for r in runs)
    assert not (tmp_path / "work" / "rfull").exists() and not (tmp_path / "work" / "set2-before").exists()


def test_the_standard_floor_script_runs_before_and_after_in_turn():
    """floor_standard.py: the code before and this one swap places every other repetition (a fixed
    order flattered the second), the peers and floors stay where they are."""
    from bench.floor_standard import rotated

    by_name = {"peer: cp -a": "cp", "plugback before": "old", "plugback": "new", "floor beside": "f"}
    assert list(rotated(by_name, 0)) == ["peer: cp -a", "plugback before", "plugback", "floor beside"]
    assert list(rotated(by_name, 1)) == ["peer: cp -a", "plugback", "plugback before", "floor beside"]
    assert rotated(by_name, 1)["plugback"] == "new" and list(rotated({"plugback": "new"}, 1)) == ["plugback"]


def test_full_timeline_times_a_backups_steps(tmp_path):
    """bench/full_timeline.py (issue #11): a backup run in-process, its pass, flushes, commit and
    read-back timed; --window sets the pass's window; --room-walk on makes the room check's walk;
    --big marks each copy of a file that size or more; the drive's and cores' rows are printed; each
    flush names its thread, the pass's thread's CPU and every thread's are printed; --content-ahead."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(30):
        (src / "d" / f"f{i}.txt").write_bytes(b"x" * (i * 100))
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    run = _bench("full_timeline.py", src, tmp_path / "set", "--window", 16, "--room-walk", "on",
                 "--big", 2 << 20, "--every", 0.1, "--content-ahead", 0, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for step in ("room check", "pass (scan + copies)", "flush_volume [", "commit (flush + manifest)", "read-back", "waited",
                 "copy of 3 MiB", "drive busy  cores busy", "the pass's thread: CPU", "  thread "):
        assert step in run.stdout, step
    assert run.stdout.rstrip().endswith("rc 0") and (tmp_path / "set" / "Latest" / "src" / "big.bin").exists()


def test_size_rules_reports_every_rule(tmp_path):
    """bench/size_rules.py (issue #13): an incompressible and a text file, counted once each."""
    (tmp_path / "random.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "text.txt").write_bytes(b"the same words again " * 20_000)
    (tmp_path / "copy.txt").write_bytes(b"the same words again " * 20_000)
    run = _bench("size_rules.py", tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "2 distinct contents, 0.7 MB" in run.stdout
    rows = {line.split("|")[1].strip(): line for line in run.stdout.splitlines() if line.startswith("| ")}
    assert {"sample", "sample-else-1", "always-3"} <= set(rows)
    stored = float(rows["sample"].split("|")[2])
    assert 0.300 <= stored < 0.301   # the random file as is (plus header and tag), the text packed to little


def test_the_remote_timeline_stamps_a_backup_and_counts_its_webdav_requests(tmp_path):
    """bench/remote_timeline.py (issue #13) on a tiny source: the backup's steps, and its requests."""
    need("rclone")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_bytes(os.urandom(100 + i))
    (src / "big.bin").write_bytes(os.urandom(1 << 20))
    proc = _bench("remote_timeline.py", "--source", src, timeout=120)
    assert proc.returncode == 0, proc.stderr
    head, *steps = proc.stdout.splitlines()
    requests = re.search(r"^backup: [\d.]+ s .*; WebDAV requests (\d+) ", head)
    assert requests and int(requests.group(1)) > 10, head
    labels = {line[:42].strip() for line in steps}
    assert {"scrypt (the new set's key)", "small files read, packed", "pack stored (put, read back, index)",
            "manifest put and read back"} <= labels, labels
    # (A put in a new set's first backup may be two steps: "put objects: to tmp/", then ": moved".)
    assert {"put objects: to tmp/", "put objects: moved"} <= labels or "put objects" in labels, labels


@pytest.mark.parametrize("mode", ["first", "existing"])
def test_remote_full_times_a_first_backup_or_one_into_an_existing_set(tmp_path, mode):
    """bench/remote_full.py (issue #13): both ways a set comes to be, each tool's medians and ratios;
    a first backup also reports restic's init + backup (the work plugback's first run does)."""
    need("rclone", "restic")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, events = run_watched(tmp_path, tmp, 3, ":timed", "remote_full.py", "--checkout", BENCH.parent, "--rounds", 1,
                               "--dataset", "0.002", "--mode", mode, env={"TMPDIR": str(tmp)})
    # Each backup's remote folder kept until the last round ended (the old script deleted each one).
    assert deleted_between(events, 3) == [] and len(events) >= 2 * 3, events
    assert os.listdir(tmp) == []
    tools = {line.split()[0] for line in proc.stdout.splitlines() if " wall median " in line}
    assert tools == ({"before", "plugback", "restic", "restic+init"} if mode == "first" else {"before", "plugback", "restic"})
    assert re.search(r"^plugback/restic wall: median [\d.]+", proc.stdout, re.M), proc.stdout
    assert ("plugback/restic+init wall" in proc.stdout) == (mode == "first")


def test_the_remote_timeline_of_a_backup_into_an_existing_set_shows_its_unlock(tmp_path):
    """bench/remote_timeline.py --existing: the set is made first, so the timed run unlocks it."""
    need("rclone")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(os.urandom(200))
    proc = _bench("remote_timeline.py", "--source", src, "--existing", timeout=120)
    assert proc.returncode == 0, proc.stderr
    labels = {line[:42].strip() for line in proc.stdout.splitlines()[1:]}
    assert "unlock (scrypt, an existing set)" in labels and "scrypt (the new set's key)" not in labels, labels


def test_readback_share_times_the_backup_with_and_without_its_read_back(tmp_path):
    """bench/readback_share.py (issue #11) on a tiny tree: every line it measures is reported."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}.txt").write_bytes(os.urandom(300))
    proc = _bench("readback_share.py", src, tmp_path / "work", "--repeat", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for label in ("cp -a + sync 1", "backup 1", "backup, no read-back 1", "no read-back, then read-back process 1",
                  "the two at once 1"):
        assert re.search(rf"^{re.escape(label)} load [\d.]+: wall [\d.]+ s", out, re.M), (label, out)
    assert re.search(r"^  read-back wall [\d.]+ s, CPU [\d.]+ s", out, re.M), out
