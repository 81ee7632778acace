"""The benchmarks delete no tree between timed commands (issue #11, branch benchfair).

On ext4 without a journal, files created just after a big deletion cost more kernel time: a timed
command right after the harness deleted a tree paid for the harness. ``bench/trash.py`` moves such
trees aside and deletes them when the run ends; ``bench/deletion_shadow.py`` measures the effect.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench import trash
from tests.support.env import subprocess_env

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Runs bench/run.py in a child with measure.timed and shutil.rmtree wrapped: the order of every
# timed command and every tree deleted (by the harness; the tools' own deletions are theirs).
DRIVER = r"""
import json, shutil, sys
sys.path.insert(0, sys.argv[1])
import measure, run
events, real_timed, real_rmtree = [], measure.timed, shutil.rmtree
def timed(argv, *args, **kwargs):
    events.append(["timed", " ".join(map(str, argv[-3:]))])
    return real_timed(argv, *args, **kwargs)
def rmtree(path, *args, **kwargs):
    events.append(["rmtree", str(path)])
    return real_rmtree(path, *args, **kwargs)
measure.timed, shutil.rmtree = timed, rmtree
rc = run.main(sys.argv[3:])
open(sys.argv[2], "w").write(json.dumps(events))
sys.exit(rc)
"""


def _tree(root: Path, files: int = 5) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(files):
        (root / "sub" / f"f{i}").write_bytes(b"x" * i)
    return root


def test_the_benchmark_deletes_no_tree_between_its_timed_commands(tmp_path):
    """cp's older copies and every restored tree used to be deleted between timed commands."""
    events_file, work = tmp_path / "events.json", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(BENCH), str(events_file), "--scale", "0.002", "--tools", "cp,rsync",
         "--warm", "--no-encryption", "--workdir", str(work), "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, env=subprocess_env(), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = json.loads(events_file.read_text())
    timed = [i for i, (kind, _) in enumerate(events) if kind == "timed"]
    assert len(timed) >= 10, events   # full, no-change, changed, restore, verify for both tools
    between = [what for kind, what in events[timed[0]:timed[-1]] if kind == "rmtree"]
    assert between == [], between
    # Everything is deleted at the end, once (too few files to note for the next run).
    assert [what for kind, what in events[timed[-1]:] if kind == "rmtree"] == [str(work / "trash")]
    assert sorted(os.listdir(work)) == ["datasets"]
    data = json.loads((tmp_path / "results" / "latest.json").read_text())
    assert data["restore_checks"]["cp -a"].startswith("ok"), data["restore_checks"]
    assert data["meta"]["settled_s"] == 0


def test_the_trash_renames_now_and_deletes_at_the_end_without_following_links(tmp_path):
    outside = _tree(tmp_path / "outside")
    work = tmp_path / "work"
    tree = _tree(work / "run" / "copy-1")
    (work / "run" / "link").symlink_to(outside, target_is_directory=True)
    stamp = tmp_path / "stamp"
    bin_ = trash.Trash(work / "trash", stamp)
    inode = tree.stat().st_ino
    bin_.put(tree)
    bin_.put(work / "run" / "link")
    bin_.put(work / "run" / "absent")          # nothing to do
    _tree(work / "run" / "copy-1")              # the same name again: both kept
    bin_.put(work / "run" / "copy-1")
    held = sorted(os.listdir(work / "trash"))
    assert [re.sub(r"^\d+-", "", n) for n in held] == ["copy-1", "link", "copy-1"]
    assert (work / "trash" / held[0]).stat().st_ino == inode   # moved, not copied
    assert os.listdir(work / "run") == []
    assert bin_.empty() == 15 and not stamp.exists()   # 7 + 1 + 7 entries: too few to note
    assert os.listdir(work) == ["run"]
    assert sorted(p.name for p in outside.rglob("*")) == ["f0", "f1", "f2", "f3", "f4", "sub"]
    big = work / "run" / "big"
    big.mkdir()
    for i in range(trash.BIG_DELETION):
        (big / f"f{i}").touch()
    bin_.put(big)
    assert bin_.empty() == trash.BIG_DELETION + 1
    assert abs(float(stamp.read_text()) - time.time()) < 60
    assert os.listdir(work) == ["run"]


def test_the_stamp_is_one_per_file_system():
    assert trash.stamp_of(Path("/proc/self")) != trash.stamp_of(Path("/"))
    assert trash.stamp_of(Path("/no/such/folder/yet")) == trash.stamp_of(Path("/"))


def test_settle_waits_out_a_recent_deletion_only_on_ext4_without_a_journal(tmp_path):
    said: list[str] = []
    stamp = tmp_path / "stamp"
    assert trash.settle(tmp_path, 5, said.append, stamp) == 0   # nothing deleted yet
    trash.note_deletion(tmp_path, stamp)
    assert trash.settle(tmp_path, 0, said.append, stamp) == 0   # --settle 0
    assert trash.settle(tmp_path, 5, said.append, stamp, source=_tree(tmp_path / "small")) == 0   # a smoke test's
    big = _tree(tmp_path / "big", files=trash.SMALL_RUN)
    trash.note_deletion(tmp_path, stamp)   # (again: making the tree may take longer than the window on a loaded machine)
    start = time.monotonic()
    waited = trash.settle(tmp_path, 0.6, said.append, stamp, source=big)
    if trash.journalless_ext4(tmp_path):
        assert 0.3 < waited <= 0.6 and time.monotonic() - start >= waited - 0.01
        assert said and "ext4 without a journal" in said[0]
    else:
        assert waited == 0 and said == []
    stamp.write_text(f"{time.time() - 10:.3f}\n")
    assert trash.settle(tmp_path, 5, said.append, stamp) == 0    # long enough ago


def test_journalless_ext4_matches_proc(tmp_path):
    """The check reads /proc/mounts and /proc/fs/jbd2 as they are on this machine."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    where = max((m for m in mounts if str(tmp_path).startswith(m[1].rstrip("/") + "/")), key=lambda m: len(m[1]))
    jbd2 = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    dev = Path(os.path.realpath(where[0])).name
    want = where[2] == "ext4" and not any(name.startswith(dev + "-") for name in jbd2)
    assert trash.journalless_ext4(tmp_path) is want


def test_the_deletion_shadow_script_times_each_condition(tmp_path):
    work = tmp_path / "shadow"
    proc = subprocess.run([sys.executable, str(BENCH / "deletion_shadow.py"), "--files", "300,120", "--warm",
                           "--conditions", "fresh,rm,rm-nosync", "--workdir", str(work)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = re.findall(r"^\| vda \| ([\d,]+) \| ([\w-]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|", proc.stdout, re.M)
    assert [(n, c) for n, c, *_ in rows] == [("300", "fresh"), ("300", "rm"), ("300", "rm-nosync"),
                                             ("120", "fresh"), ("120", "rm"), ("120", "rm-nosync")]
    assert all(float(wall) > 0 for _, _, wall, *_ in rows)
    assert os.listdir(work) == []   # every tree it made is gone
    bad = subprocess.run([sys.executable, str(BENCH / "deletion_shadow.py"), "--conditions", "rm,later", "--warm"],
                         capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert bad.returncode == 2 and "--conditions from" in bad.stderr
