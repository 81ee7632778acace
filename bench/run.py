"""The engine benchmark: plugback against cp -a, rsync -a, restic and borg, in one run.

    .venv/bin/python bench/run.py                      # about 1 GiB, every tool, 1 run per phase
    .venv/bin/python bench/run.py --scale 0.05         # a quick run
    .venv/bin/python bench/run.py --repeat 3 --markdown
    .venv/bin/python bench/run.py --scenario small-files --scales 20000,100000 --workdir /tmp/pb
    .venv/bin/python bench/run.py --scenario big-file-changed
    .venv/bin/python bench/run.py --scenario journal --files 100000 --repeat 3

Scenarios: ``standard`` (below), and the engine-at-scale ones of issue #11,
``small-files`` and ``big-file-changed`` (see scenarios.py), and issue #12's
``journal`` (a hint-driven backup against a full scan, see journal.py). Every timed
command also reports the peak RSS of its whole process tree (see measure.py).

For the standard scenario it makes (or reuses) the seeded data set, copies it to a work folder, then
times, for every tool under the same conditions: a full backup, a no-change
backup, a backup after a day of changes, a restore and a full verify (and,
when plugback has ``--encrypt``, an encrypted full backup and restore). Before
each timed command the page cache is dropped (root on Linux) or, where that is
not allowed, every tool's inputs are read first ("warm cache"). Each timed
command is followed by a ``sync`` that counts in its time, so data written is
data on disk for every tool alike. Nothing is deleted between timed commands: older copies,
restored trees and replaced backups go to WORKDIR/trash, deleted when the run ends, and a run
first waits until the last big deletion on its file system is out of the way of new files
(``--settle``; ext4 without a journal only: see trash.py).

It reports only: no thresholds fail it. The exit code is 0 unless a tool failed
(crashed, or its verify found differences).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import make_dataset
import measure
import report
import scenarios
import trash
from measure import du
from tools import TOOLS, PlugbackEncrypted, Tool, plugback_argv, plugback_env, rmtree

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKDIR = Path("/var/tmp/plugback-bench")
SCENARIOS = ("standard", "small-files", "big-file-changed", "journal")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=SCENARIOS, default="standard")
    p.add_argument("--scale", type=float, default=1.0, help="standard: data set size; 1.0 is about 1 GiB")
    p.add_argument("--files", type=int, default=100_000, help="small-files, journal: how many tiny files")
    p.add_argument("--changed", type=int, default=10, help="journal: files changed before each backup")
    p.add_argument("--big-mib", type=float, default=150, help="big-file-changed: the file's size")
    p.add_argument("--change-mib", type=float, default=1, help="big-file-changed: how much changes")
    p.add_argument("--scales", default=None,
                   help="comma-separated sizes to run one after the other, reporting how peak RSS "
                        "grows between them: file counts for small-files (e.g. 20000,100000), "
                        "--scale values for standard, --big-mib values for big-file-changed")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1, help="runs per phase; the median is reported")
    p.add_argument("--tools", default="plugback,cp,rsync,restic,borg",
                   help=f"comma-separated, from: {','.join(TOOLS)}")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help="where the data set, backups and restores go (use a disk, not tmpfs)")
    p.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--warm", action="store_true", help="do not drop the page cache; warm every tool's inputs")
    p.add_argument("--no-encryption", action="store_true", help="skip the encrypted plugback phases")
    p.add_argument("--profile", action="store_true",
                   help="after the benchmark, profile one plugback full backup (py-spy if installed, "
                        "else cProfile)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a command counts as hung")
    p.add_argument("--keep", action="store_true", help="keep the backups and the source copy afterwards")
    p.add_argument("--settle", type=float, default=trash.SHADOW_SECONDS,
                   help="before the first timed command, wait until this many seconds after the last "
                        "big deletion noted on WORKDIR's file system (ext4 without a journal only; 0: do not wait)")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- machine and file system ---------------------------------------------------------------------

def _mount_of(path: Path) -> tuple[str, str, str]:
    """(mount point, device, fs type) of the file system holding ``path``."""
    best = ("/", "?", "?")
    path = str(path.resolve())
    with open("/proc/mounts") as mounts:
        for line in mounts:
            dev, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, dev, fstype)
    return best


def _disk_kind(device: str) -> str:
    name = Path(device).name
    rot = Path(f"/sys/block/{name}/queue/rotational")
    if not rot.exists():
        return "disk kind unknown"
    # Virtual disks (virtio) often report rotational=1 whatever backs them.
    return "reports rotational" if rot.read_text().strip() == "1" else "reports non-rotational (SSD)"


def machine_info(workdir: Path) -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    mnt, dev, fstype = _mount_of(workdir)
    return {"cpu": cpu, "nproc": os.cpu_count(), "mem_gib": round(mem / 1024**2, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "fs": fstype, "device": dev, "mount": mnt, "disk": _disk_kind(dev)}


# -- page cache ----------------------------------------------------------------------------------

def can_drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _read_all(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            try:
                with open(p, "rb") as f:
                    while f.read(4 * 1024 * 1024):
                        pass
            except OSError:
                pass


def prepare_cache(cold: bool, inputs: list[Path]) -> None:
    """Same cache state for every tool: dropped when allowed, else the inputs read in."""
    os.sync()
    if cold:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    else:
        for path in inputs:
            _read_all(path)


# -- timing --------------------------------------------------------------------------------------

def cold_start(tool: Tool, cold: bool, logs: Path) -> float | None:
    """Seconds for ``tool --version`` from a cold cache: the fixed cost every run pays."""
    argv = tool.version_argv()
    prepare_cache(cold, [])
    result = measure.timed(argv, logs / f"startup-{tool.name.replace(' ', '_')}.log", 120,
                           env={**os.environ, **tool.base_env()})
    return result["wall"] if result["rc"] == 0 else None


def _git_describe() -> str:
    out = subprocess.run(["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


# -- restore check -------------------------------------------------------------------------------

def _listing(root: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d",)
            else:
                out[rel] = ("f", st.st_size)
    return out


def find_tree(target: Path, src: Path) -> Path | None:
    """The folder under target that holds the restored source (tools nest it differently)."""
    want = sorted(os.listdir(src))
    queue = [target]
    while queue:
        d = queue.pop(0)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        if names == want:
            return d
        if len(d.relative_to(target).parts) < 12:
            queue += [d / n for n in names if (d / n).is_dir() and not (d / n).is_symlink()]
    return None


def check_restore(target: Path, src: Path, seed: int) -> tuple[bool, str]:
    """Compare a restored tree with the source: names, types, sizes, links, 200 sampled contents."""
    root = find_tree(target, src)
    if root is None:
        return False, f"no folder under {target} looks like the source"
    want, got = _listing(src), _listing(root)
    problems = [f"missing {p}" for p in sorted(set(want) - set(got))]
    problems += [f"extra {p}" for p in sorted(set(got) - set(want))]
    problems += [f"differs {p}: {want[p]} vs {got[p]}" for p in sorted(set(want) & set(got))
                 if want[p] != got[p]]
    files = sorted(p for p, v in want.items() if v[0] == "f" and got.get(p) == v)
    for rel in random.Random(seed).sample(files, min(200, len(files))):
        if (src / rel).read_bytes() != (root / rel).read_bytes():
            problems.append(f"content differs {rel}")
    if problems:
        return False, f"{len(problems)} problems, e.g. {problems[:4]}"
    return True, f"ok ({len(want):,} entries at {root.relative_to(target) or '.'})"


# -- the run -------------------------------------------------------------------------------------

class Bench:
    """One benchmark run: the tools, the source tree and everything measured."""

    def __init__(self, args):
        self.args = args
        self.run_dir = args.workdir / "run"
        self.src = self.run_dir / "src"
        self.logs = self.run_dir / "logs"
        self.results: dict = {}
        self.sizes: dict = {}
        self.failed: list[str] = []
        self.broken: set[str] = set()
        self.cold = False
        self.restore_checks: dict = {}
        self.loads: list[float] = []  # 1-minute load average after each timed command
        self.mutations: list[dict] = []
        self.not_run: dict[str, tuple] = {}  # tool name -> phases this scenario does not run
        # What the run replaces or is done with, deleted when it ends (never between timed commands).
        self.trash = trash.Trash(args.workdir / "trash")

    def dataset_dir(self) -> Path:
        """Where the data set for (scale, seed, generator version) is cached."""
        a = self.args
        return a.workdir / "datasets" / f"scale{a.scale:g}-seed{a.seed}-v{make_dataset.GENERATOR_VERSION}"

    def dataset(self) -> dict:
        """The cached data set for (scale, seed), made once."""
        a = self.args
        base = self.dataset_dir()
        stats_file = base / "stats.json"
        if stats_file.exists():
            log(f"reusing data set {base}")
            return json.loads(stats_file.read_text())
        rmtree(base)
        base.mkdir(parents=True)
        log(f"making data set at scale {a.scale:g} in {base} ...")
        stats = make_dataset.generate(base / "tree", scale=a.scale, seed=a.seed).as_dict()
        stats_file.write_text(json.dumps(stats, ensure_ascii=False))  # written last: marks it complete
        return stats

    def run_phase(self, tool: Tool, phase: str, rep: int, inputs: list[Path], target: Path | None = None):
        """Time one tool's phase once and record it."""
        cell = self.results.setdefault(tool.name, {}).setdefault(phase, {"runs": [], "status": "ok"})
        if tool.name in self.broken:
            cell["status"] = "skipped"
            return
        if phase in tool.unsupported:
            cell["status"] = "n/a"
            return
        if phase in self.not_run.get(tool.name, ()):
            cell["status"] = "not run"
            return
        cmd = tool.command(phase, target=target, rep=rep)
        if cmd.before:
            cmd.before()
        prepare_cache(self.cold, inputs)
        logfile = self.logs / f"{tool.name.replace(' ', '_')}-{phase}-{rep}.log"
        result = measure.timed(cmd.argv, logfile, self.args.timeout, env={**os.environ, **cmd.env},
                               cwd=cmd.cwd)
        output = logfile.read_text(errors="replace")
        problem = None
        if result["rc"] != 0:
            problem = f"exit code {result['rc']}: {output.strip()[-600:]}"
        elif cmd.check_output:
            problem = cmd.check_output(output)
        cell["runs"].append(result)
        if problem:
            cell["status"] = "failed"
            cell["error"] = problem
            self.failed.append(f"{tool.name} {phase}: {problem}")
            self.broken.add(tool.name)
            log(f"  {tool.name:18} {phase:9} FAILED: {problem[:400]}")
            return
        if cmd.after:
            cmd.after()
        runs = cell["runs"]
        cell["wall"] = statistics.median(r["wall"] for r in runs)
        cell["cpu"] = statistics.median(r["cpu"] for r in runs)
        cell["rss"] = max(r["rss"] for r in runs)  # memory: the worst run, not the median
        self.loads.append(os.getloadavg()[0])
        log(f"  {tool.name:18} {phase:12} {result['wall']:8.2f} s wall {result['cpu']:8.2f} s cpu"
            f" {result['rss'] / 1e6:7.1f} MB peak RSS  (load {self.loads[-1]:.1f})")

    def log_phase(self, phase: str) -> None:
        log(f"phase: {report.label({'scenario': self.args.scenario}, phase)}")

    def backup_phase(self, tools: list[Tool], phase: str, *, reset: bool = False, repeat: int | None = None,
                     before_rep=None) -> None:
        """Time a backup phase for every tool (tools interleaved per repeat), then record set sizes.

        ``reset`` starts every tool from an empty backup before each repeat; ``before_rep(rep)``
        changes the source (untimed) before each repeat."""
        self.log_phase(phase)
        for rep in range(repeat or self.args.repeat):
            if before_rep:
                before_rep(rep)
            for tool in tools:
                if reset:
                    tool.reset()
                inputs = [self.src] if reset else [self.src, tool.backup_dir()]
                self.run_phase(tool, phase, rep, inputs)
        self.record_sizes(tools, phase)

    def record_sizes(self, tools: list[Tool], phase: str) -> None:
        """Each tool's backup size on disk after ``phase`` (tools that ran it cleanly)."""
        for tool in tools:
            cell = self.results.get(tool.name, {}).get(phase, {})
            if cell.get("status") == "ok":
                self.sizes.setdefault(tool.name, {})[phase] = du(tool.backup_dir())

    def main_phases(self, tools: list[Tool]) -> None:
        """The standard scenario: full, no-change, a day of changes, restore, full verify."""
        a = self.args

        def day_of_changes(rep: int) -> None:
            self.mutations.append(make_dataset.mutate(self.src, day=rep + 1, seed=a.seed))

        self.backup_phase(tools, "full", reset=True)
        self.backup_phase(tools, "nochange")
        self.backup_phase(tools, "changed", before_rep=day_of_changes)
        self.restores(tools, "restore")
        self.log_phase("verify")
        for rep in range(a.repeat):
            for tool in tools:
                self.run_phase(tool, "verify", rep, [self.src, tool.backup_dir()])

    def restores(self, tools: list[Tool], phase: str) -> None:
        """Time each tool's restore into an empty folder, then compare the result with the source."""
        self.log_phase(phase)
        checks = self.restore_checks
        for rep in range(self.args.repeat):
            for tool in tools:
                target = self.run_dir / "restore" / tool.name.replace(" ", "_")
                self.trash.put(target)
                target.mkdir(parents=True)
                self.run_phase(tool, phase, rep, [tool.backup_dir()], target=target)
                ran = self.results.get(tool.name, {}).get(phase, {}).get("status") == "ok"
                if ran and self.results[tool.name].get("changed", {}).get("status") == "not run":
                    checks[tool.name] = "not compared (its last backup predates the changes)"
                elif rep == self.args.repeat - 1 and ran:
                    ok, detail = check_restore(target, self.src, self.args.seed)
                    checks[tool.name] = detail
                    if not ok:
                        self.failed.append(f"{tool.name} restore check: {detail}")
                        log(f"  {tool.name}: restored tree differs from the source: {detail}")
                self.trash.put(target)

    def encryption(self) -> None:
        tool = PlugbackEncrypted(self.run_dir / "plugback-enc", self.src, self.trash)
        log("phase: encrypted full backup (plugback --encrypt)")
        for rep in range(self.args.repeat):
            tool.reset()
            self.run_phase(tool, "full", rep, [self.src])
        self.restores([tool], "restore")

    def profile(self) -> Path:
        """One extra (untimed) plugback full backup under py-spy (every thread) or, without it,
        cProfile (main thread only); writes the top functions to the results folder."""
        home = self.run_dir / "profile"
        rmtree(home)
        home.mkdir(parents=True)
        env = {**os.environ, "PLUGBACK_HOME": str(home / "home"), **plugback_env()}
        backup_args = ["-m", "core.cli", "backup", str(self.src), "--to", str(home / "set")]
        out = self.args.results_dir / "profile-full-backup.txt"
        py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        prepare_cache(self.cold, [self.src])
        if py_spy:
            raw = home / "backup.raw"
            subprocess.run([py_spy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--",
                            sys.executable] + backup_args, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            summary = subprocess.run([sys.executable, str(BENCH_DIR / "hotspots.py"), str(raw)],
                                     capture_output=True, text=True)
            out.write_text("py-spy, all threads\n\n" + summary.stdout + summary.stderr)
            return out
        import io
        import pstats
        stats_file = home / "backup.prof"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats_file)] + backup_args,
                       env=env, stdout=subprocess.DEVNULL, check=False)
        text = io.StringIO()
        st = pstats.Stats(str(stats_file), stream=text)
        st.sort_stats("tottime").print_stats(25)
        st.sort_stats("cumulative").print_stats(30)
        out.write_text("cProfile, main thread only (install py-spy for every thread)\n\n" + text.getvalue())
        return out


def _make_tools(keys: list[str], run_dir: Path, src: Path, trashcan: trash.Trash) -> tuple[list[Tool], dict]:
    tools, skipped = [], {}
    for key in keys:
        tool = TOOLS[key](run_dir / key, src, trashcan)
        why = tool.missing()
        if why:
            skipped[tool.name] = why
            log(f"skipping {tool.name}: {why}")
        else:
            tools.append(tool)
    return tools, skipped


def _size_of_run(args) -> str:
    if args.scenario == "small-files":
        return f"{args.files:,} files"
    if args.scenario == "big-file-changed":
        return f"a {args.big_mib:g} MiB file"
    return f"scale {args.scale:g}"


def run_once(args, keys: list[str]) -> tuple[dict, list[str]]:
    """One benchmark run of args.scenario at one size: (the results record, the failures)."""
    bench = Bench(args)
    machine = machine_info(args.workdir)
    if machine["fs"] in ("tmpfs", "ramfs"):
        log(f"WARNING: {args.workdir} is on {machine['fs']}: this measures memory, not a disk; "
            "pass --workdir on a disk")
    bench.cold = not args.warm and can_drop_caches()
    started = datetime.now(timezone.utc)
    log(f"{args.scenario} scenario, {_size_of_run(args)}")
    bench.trash.put(bench.run_dir)   # (left by --keep)
    bench.logs.mkdir(parents=True)
    if args.scenario == "standard":
        stats = bench.dataset()
        log("copying the data set to the source folder (untimed) ...")
        subprocess.run(["cp", "-a", str(bench.dataset_dir() / "tree"), str(bench.src)], check=True)
    else:  # written straight into the source folder: no cached copy (a million files is 4+ GiB)
        log("making the source folder (untimed) ...")
        stats = scenarios.make_source(args.scenario, bench.src, args)

    tools, skipped = _make_tools(keys, bench.run_dir, bench.src, bench.trash)
    settled = trash.settle(args.workdir, args.settle, log, source=bench.src)
    if args.scenario == "small-files":
        scenarios.run_small_files(bench, tools)
    elif args.scenario == "big-file-changed":
        scenarios.run_big_file(bench, tools)
    else:
        bench.main_phases(tools)

    enc_skipped = None
    names = [t.name for t in tools]
    if args.scenario != "standard":
        enc_skipped = "measured in the standard scenario only"
    elif "plugback" in names and not args.no_encryption:
        why = PlugbackEncrypted(bench.run_dir / "plugback-enc", bench.src).missing()
        if why:
            enc_skipped = why
        else:
            bench.encryption()
            names.append(PlugbackEncrypted.name)
    elif "plugback" not in names:
        enc_skipped = "plugback did not run"
    else:
        enc_skipped = "--no-encryption"

    log("cold start of each tool (--version, cache dropped) ...")
    startup = {t.name: cold_start(t, bench.cold, bench.logs) for t in tools}

    profile_file = None
    if args.profile and "plugback" in names:
        log("profiling one plugback full backup (untimed) ...")
        profile_file = str(bench.profile())

    data = {
        "scenario": args.scenario,
        "meta": {"started": started.strftime("%Y-%m-%d %H:%M UTC"),
                 "stamp": started.strftime("%Y%m%dT%H%M%SZ"),
                 "ended": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "scale": args.scale, "files": args.files, "big_mib": args.big_mib,
                 "change_mib": args.change_mib, "size": _size_of_run(args),
                 "seed": args.seed, "repeat": args.repeat,
                 "cache": "cold (page cache dropped before every timed command)" if bench.cold
                 else "warm (page cache not dropped; every tool's inputs read in first)",
                 "rss_method": measure.RSS_METHOD,
                 "workdir": str(args.workdir), "machine": machine,
                 "versions": {t.name: t.version() for t in tools},
                 "plugback_cli": plugback_argv(), "profile": profile_file,
                 "plugback_commit": _git_describe(), "cold_start": startup, "settled_s": round(settled, 1),
                 "load": {"median": statistics.median(bench.loads) if bench.loads else None,
                          "max": max(bench.loads, default=None)}},
        "dataset": stats, "mutations": bench.mutations, "tools": names, "results": bench.results,
        "sizes": bench.sizes, "restore_checks": bench.restore_checks,
        "encryption_skipped": enc_skipped, "skipped_tools": skipped, "failures": bench.failed,
    }
    data["targets"] = report.targets(data)
    if not args.keep:
        bench.trash.put(bench.run_dir)   # deleted by main() when every size has run
    return data, bench.failed


def _scale_args(args) -> list:
    """One argparse namespace per --scales value (or just args)."""
    if not args.scales:
        return [args]
    field, kind = {"small-files": ("files", int), "big-file-changed": ("big_mib", float)}.get(
        args.scenario, ("scale", float))
    out = []
    for value in args.scales.split(","):
        one = argparse.Namespace(**vars(args))
        setattr(one, field, kind(value))
        out.append(one)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    if args.scenario == "journal":   # plugback alone (a hint is plugback's): bench/journal.py
        import journal
        return journal.run(args)
    keys = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [k for k in keys if k not in TOOLS]
    if unknown:
        print(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    runs, failed = [], []
    try:
        for one in _scale_args(args):
            data, problems = run_once(one, keys)
            runs.append(data)
            failed += problems
            stamp = data["meta"]["stamp"]
            size = "".join(c for c in data["meta"]["size"] if c.isalnum() or c == ".")
            out = args.results_dir / f"bench-{args.scenario}-{stamp}-{size}.json"
            out.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    finally:
        held = args.workdir / "trash"
        log(f"deleting the run's trees, {du(held) / 1e9 if held.exists() else 0:.2f} GB (untimed) ...")
        trash.Trash(held).empty()
    data = runs[0] if len(runs) == 1 else {"scenario": args.scenario, "runs": runs}
    if len(runs) > 1:
        out = out.with_name(f"bench-{args.scenario}-{stamp}-scales.json")
        out.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    shutil.copyfile(out, args.results_dir / "latest.json")

    print(report.render(data))
    if args.markdown:
        print("\n---- Markdown ----\n")
        print(report.render(data, markdown=True))
    print(f"\nresults: {out}")
    if failed:
        print("\nFAILURES:\n" + "\n".join(f"* {f}" for f in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
