"""Turn a benchmark result (the JSON that run.py writes) into tables and target checks.

    python bench/report.py bench/results/latest.json [--markdown]

A results file holds one run, or (``run.py --scales``) several runs of one
scenario at growing sizes; then the report ends with how each phase's peak RSS
grew between the smallest and the largest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PHASES = ("full", "nochange", "changed", "restore", "verify")
SCENARIO_PHASES = {
    "standard": PHASES,
    "small-files": ("full", "nochange", "changed", "restore", "verify-quick", "verify", "ls", "diff",
                    "snapshots", "forget"),
    "big-file-changed": ("full", "changed"),
}
PHASE_LABELS = {
    "full": "full backup",
    "nochange": "no-change backup",
    "changed": "backup after a day of changes",
    "restore": "restore",
    "verify": "full verify",
    "verify-quick": "quick verify",
    "ls": "ls (whole tree)",
    "diff": "diff (first, newest)",
    "snapshots": "snapshots",
    "forget": "forget --keep-last 1 --prune",
}
# Where a scenario names a phase differently from the standard one.
SCENARIO_LABELS = {
    "small-files": {"changed": "changed backup (1% of files)", "verify": "full verify (--read-all)"},
    "big-file-changed": {"changed": "backup after 1 MiB changed"},
}
PLUGBACK = "plugback"
ENCRYPTED = "plugback --encrypt"
NO_VERIFY = "plugback --no-verify"
VARIANTS = (PLUGBACK, NO_VERIFY, ENCRYPTED)
# (phase, peer, limit): plugback's wall time must be at most limit x the peer's.
RATIO_TARGETS = (("full", "cp -a", 1.2), ("nochange", "rsync -a", 1.0), ("restore", "cp -a", 1.2))
FASTER_THAN = ("restic", "borg")
# Issue #11's goals for many small files.
SMALL_FILES_RATIO_TARGETS = (("full", "cp -a", 1.5), ("nochange", "rsync -a", 1.0), ("restore", "cp -a", 1.2),
                             ("verify", "restic", 1.0))
SNAPSHOTS_SECONDS = 0.5
RSS_LIMIT_MB = 200  # peak RSS of the process tree, every phase
RSS_GROWTH_MB = 40  # from 20,000 to 1,000,000 files
MB = 1e6
MiB = 1024**2


def phases_of(data: dict) -> tuple[str, ...]:
    return SCENARIO_PHASES[data.get("scenario", "standard")]


def label(data: dict, phase: str) -> str:
    return SCENARIO_LABELS.get(data.get("scenario", "standard"), {}).get(phase, PHASE_LABELS[phase])


def _cell(results: dict, tool: str, phase: str) -> dict | None:
    return results.get(tool, {}).get(phase)


def wall(results: dict, tool: str, phase: str) -> float | None:
    """Median wall seconds of a tool's phase, or None when it did not run cleanly."""
    cell = _cell(results, tool, phase)
    if not cell or cell.get("status") != "ok":
        return None
    return cell["wall"]


def ratio(results: dict, phase: str, peer: str, tool: str = PLUGBACK) -> float | None:
    """tool's wall time / peer's wall time for a phase."""
    mine, theirs = wall(results, tool, phase), wall(results, peer, phase)
    if mine is None or not theirs:
        return None
    return mine / theirs


def rss(results: dict, tool: str, phase: str) -> float | None:
    """Peak RSS of a tool's phase in MB, or None (not run, failed, or an old results file)."""
    cell = _cell(results, tool, phase)
    if not cell or cell.get("status") != "ok" or not cell.get("rss"):
        return None
    return cell["rss"] / MB


def targets(data: dict) -> list[dict]:
    """Each target of the run's scenario, its measured value and whether it is met (None: not measured).

    ``unit`` says what ``measured`` is: "x" (a ratio), "s" or "MB"."""
    results = data["results"]
    scenario = data.get("scenario", "standard")
    if scenario == "big-file-changed":
        return _size_targets(data)
    out = []
    lab = lambda p: label(data, p)  # noqa: E731
    ratio_targets = SMALL_FILES_RATIO_TARGETS if scenario == "small-files" else RATIO_TARGETS
    for phase, peer, limit in ratio_targets:
        r = ratio(results, phase, peer)
        out.append({"target": f"{lab(phase)} <= {limit:g}x {peer}", "measured": r, "unit": "x",
                    "limit": limit, "met": None if r is None else r <= limit})
    if scenario == "small-files":
        w = wall(results, PLUGBACK, "snapshots")
        out.append({"target": f"snapshots <= {SNAPSHOTS_SECONDS:g} s", "measured": w, "unit": "s",
                    "limit": SNAPSHOTS_SECONDS, "met": None if w is None else w <= SNAPSHOTS_SECONDS})
    else:
        for peer in FASTER_THAN:
            rs = {p: ratio(results, p, peer) for p in PHASES}
            measured = [r for r in rs.values() if r is not None]
            slower = [f"{lab(p)} ({r:.2f}x)" for p, r in rs.items() if r is not None and r >= 1]
            out.append({"target": f"faster than {peer} on every phase", "unit": "x",
                        "measured": max(measured) if measured else None, "limit": 1.0,
                        "met": None if not measured else not slower,
                        "slower_phases": slower})
    peaks = {p: rss(results, PLUGBACK, p) for p in phases_of(data)}
    peaks = {p: v for p, v in peaks.items() if v is not None}
    worst = max(peaks.values(), default=None)
    over = [f"{lab(p)} ({v:.0f} MB)" for p, v in peaks.items() if v > RSS_LIMIT_MB]
    out.append({"target": f"peak RSS <= {RSS_LIMIT_MB} MB on every phase", "measured": worst, "unit": "MB",
                "limit": RSS_LIMIT_MB, "met": None if worst is None else not over, "slower_phases": over})
    return out


def size_growth(data: dict) -> dict:
    """Per tool: (size after full, size after the change, growth) in bytes, plus the reference."""
    out = {}
    for tool, sizes in data.get("sizes", {}).items():
        if "full" in sizes and "changed" in sizes:
            out[tool] = (sizes["full"], sizes["changed"], sizes["changed"] - sizes["full"])
    return out


def _size_targets(data: dict) -> list[dict]:
    growth = size_growth(data)
    changed = sum(m.get("bytes_written", 0) for m in data.get("mutations") or [])
    mine, mirror = growth.get(PLUGBACK), growth.get("rsync -a")
    if mine is None or mirror is None:
        return [{"target": "set size after the change <= rsync mirror + changed bytes", "measured": None,
                 "unit": "MiB", "limit": None, "met": None}]
    limit = (mirror[1] + changed) / MiB
    return [{"target": "set size after the change <= rsync mirror + changed bytes", "measured": mine[1] / MiB,
             "unit": "MiB", "limit": limit, "met": mine[1] / MiB <= limit}]


def _fmt_time(cell: dict | None) -> str:
    if cell is None:
        return "-"
    status = cell.get("status")
    if status == "ok":
        return f"{cell['wall']:.2f} s ({cell['cpu']:.1f})"
    return status or "-"


def _fmt_rss(cell: dict | None) -> str:
    if cell is None:
        return "-"
    if cell.get("status") != "ok":
        return cell.get("status") or "-"
    return f"{cell['rss'] / MB:.0f}" if cell.get("rss") else "?"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _fmt_measured(t: dict) -> str:
    m, unit = t["measured"], t.get("unit", "x")
    if m is None:
        return "-"
    return {"x": f"{m:.2f}x", "s": f"{m:.2f} s", "MB": f"{m:,.0f} MB", "MiB": f"{m:,.1f} MiB"}[unit]


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024**2:,.1f} MiB" if n < 10 * 1024**2 else f"{n / 1024**2:,.0f} MiB"


def _verdict(t: dict) -> str:
    if t["met"] is None:
        return "not measured"
    if t["met"]:
        return "met"
    over = (t["measured"] / t["limit"] - 1) * 100
    worse = "over on" if t.get("unit") in ("MB", "MiB") else "slower on"
    extra = f"; {worse}: {', '.join(t['slower_phases'])}" if t.get("slower_phases") else ""
    return f"MISSED by {over:.0f}%{extra}"


def _table(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(rows[0]), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows[1:]])


def render(data: dict, *, markdown: bool = False) -> str:
    """The whole report: one run's, or each run's and then the RSS growth between them."""
    if "runs" in data:
        parts = [render_run(run, markdown=markdown) for run in data["runs"]]
        return "\n\n".join(parts + [render_growth(data, markdown=markdown)])
    return render_run(data, markdown=markdown)


def _dataset_line(data: dict) -> str:
    meta, ds = data["meta"], data["dataset"]
    scenario = data.get("scenario", "standard")
    if scenario == "small-files":
        return (f"Data set: {ds['files']:,} tiny files (0-4 KiB) in {ds['dirs']:,} folders, "
                f"{ds['bytes'] / 1024**2:,.0f} MiB (seed {meta['seed']}); changed: {_changes(data)}.")
    if scenario == "big-file-changed":
        m = (data.get("mutations") or [{}])[0]
        return (f"Data set: one random file of {ds['bytes'] / 1024**2:,.0f} MiB (seed {meta['seed']}); "
                f"then {m.get('bytes_written', 0) / 1024**2:g} MiB overwritten in its middle.")
    return (f"Data set: {ds['files']:,} files, {ds['dirs']:,} folders, {ds['symlinks']} symlinks, "
            f"{ds['bytes'] / 1024**3:.2f} GiB (scale {meta['scale']}, seed {meta['seed']}); "
            f"day of changes: {_changes(data)}.")


def render_run(data: dict, *, markdown: bool = False) -> str:
    """One run's report: header, times, peak RSS, ratios, targets, sizes, encryption, notes."""
    results = data["results"]
    phases = phases_of(data)
    # A tool the scenario runs in no phase (cp in big-file-changed) gets no column.
    tools = [t for t in data["tools"] if t != ENCRYPTED
             and any((_cell(results, t, p) or {}).get("status") != "not run" for p in phases)]
    scenario = data.get("scenario", "standard")
    meta = data["meta"]
    out = []
    h = "### " if markdown else "== "
    title = "Engine benchmark" if scenario == "standard" else f"Engine benchmark, {scenario}"
    size = f", {meta['size']}" if scenario != "standard" and meta.get("size") else ""
    out.append(f"{h}{title}{size} ({meta['started']})")
    out.append("")
    out.append(_dataset_line(data))
    m = meta["machine"]
    out.append(f"Machine: {m['cpu']} x {m['nproc']}, {m['mem_gib']} GiB RAM, kernel {m['kernel']}; "
               f"work folder {meta['workdir']} on {m['fs']} ({m['device']}, "
               f"{m['disk']}).")
    if meta.get("cold_start"):
        starts = ", ".join(f"{t} {v:.2f} s" for t, v in meta["cold_start"].items() if v is not None)
        out.append(f"Cold start (`--version` with the cache dropped): {starts}.")
    load = meta.get("load") or {}
    if load.get("median") is not None:
        out.append(f"Machine load (1-min average after each command): median {load['median']:.1f}, "
                   f"max {load['max']:.1f} on {m['nproc']} CPUs; other work on the machine adds noise.")
    out.append(f"Cache: {meta['cache']}. Runs per phase: {meta['repeat']} (median shown). "
               "Times are wall seconds (CPU seconds in brackets), each including a final sync.")
    out.append("")
    rows = [["phase"] + tools]
    for phase in phases:
        rows.append([label(data, phase)] + [_fmt_time(_cell(results, t, phase)) for t in tools])
    out.append(_table(rows, markdown))
    errors = [f"{t} {label(data, p)}: {c['error'][:300]}" for t in tools
              for p, c in results.get(t, {}).items() if c.get("error")]
    if errors:
        out.append("")
        out += [f"* failed: {e}" for e in errors]

    if any(rss(results, t, p) for t in tools for p in phases):
        out.append("")
        out.append(f"Peak RSS in MB (10^6 bytes), highest of the runs; {meta.get('rss_method', '')}:")
        out.append("")
        rows = [["phase"] + tools]
        for phase in phases:
            rows.append([label(data, phase)] + [_fmt_rss(_cell(results, t, phase)) for t in tools])
        out.append(_table(rows, markdown))

    if PLUGBACK in tools:
        peers = [t for t in tools if t not in VARIANTS]
        out.append("")
        out.append("plugback time / peer time (below 1 = plugback faster):")
        out.append("")
        rows = [["phase"] + [f"vs {p}" for p in peers]]
        for phase in phases:
            ratios = [ratio(results, phase, p) for p in peers]
            if any(r is not None for r in ratios):
                rows.append([label(data, phase)] + [_fmt_ratio(r) for r in ratios])
        out.append(_table(rows, markdown))
        out.append("")
        out.append("Targets:")
        out.append("")
        rows = [["target", "measured", "verdict"]]
        for t in data.get("targets") or targets(data):
            rows.append([t["target"], _fmt_measured(t), _verdict(t)])
        if NO_VERIFY in tools:
            for phase, peer, limit in RATIO_TARGETS[:2]:
                r = ratio(results, phase, peer, NO_VERIFY)
                rows.append([f"(for comparison) {label(data, phase)} without read-back vs {peer}",
                             _fmt_ratio(r), "-" if r is None else ("within" if r <= limit else
                                                                   f"{r / limit - 1:+.0%} over {limit:g}x")])
        out.append(_table(rows, markdown))

    out.append("")
    out.append(_sizes(data, tools, markdown))

    checks = data.get("restore_checks", {})
    if checks:
        out.append("")
        out.append("Restored trees compared with the source (names, types, sizes, link targets, "
                   "sampled contents):")
        out += [f"* {t}: {c}" for t, c in checks.items()]

    if scenario == "standard" and (ENCRYPTED in data["tools"] or data.get("encryption_skipped")):
        out.append("")
        out.append(f"{h}Encryption")
        out.append("")
        out.append(_encryption(data, markdown))

    if data.get("skipped_tools"):
        out.append("")
        out += [f"* skipped {t}: {why.strip().splitlines()[-1] if why.strip() else why}"
                for t, why in data["skipped_tools"].items()]
    return "\n".join(out)


def _sizes(data: dict, tools: list[str], markdown: bool) -> str:
    scenario = data.get("scenario", "standard")
    if scenario == "big-file-changed":
        changed = sum(m.get("bytes_written", 0) for m in data.get("mutations") or [])
        rows = [["tool", "after full", "after the change", "growth"]]
        for t, (full, after, growth) in size_growth(data).items():
            rows.append([t, _fmt_size(full), _fmt_size(after), f"{growth / 1024**2:+,.1f} MiB"])
        mirror = size_growth(data).get("rsync -a")
        ref = (f"Reference (the goal): the rsync mirror + the changed bytes = "
               f"{_fmt_size(mirror[1] + changed)} after the change." if mirror else
               "Reference: rsync did not run.")
        return ("Backup size on disk (du) after the full backup and after the change:\n\n"
                + _table(rows, markdown) + "\n\n" + ref)
    after = ["full", "changed"] + (["forget"] if scenario == "small-files" else [])
    heads = {"full": "after full", "changed": "after changes", "forget": "after forget --prune"}
    rows = [["tool"] + [heads[p] for p in after]]
    for t in tools:
        sizes = data.get("sizes", {}).get(t, {})
        rows.append([t] + [_fmt_size(sizes.get(p)) for p in after])
    return ("Backup size on disk after the full backup / after the day of changes:\n\n"
            if scenario == "standard" else "Backup size on disk (du):\n\n") + _table(rows, markdown)


def render_growth(data: dict, *, markdown: bool = False) -> str:
    """How each phase's peak RSS grew from the smallest run to the largest (the flatness goal)."""
    runs = data["runs"]
    first, last = runs[0], runs[-1]
    h = "### " if markdown else "== "
    tools = [t for t in last["tools"] if t != ENCRYPTED]
    peers = [t for t in tools if t != PLUGBACK]
    sizes = [r["meta"]["size"] for r in runs]
    out = [f"{h}Peak RSS growth, {sizes[0]} to {sizes[-1]} ({data['scenario']})", ""]
    out.append(f"Peak RSS in MB at each size, and growth from the first to the last; the goal is at most "
               f"+{RSS_GROWTH_MB} MB for plugback from 20,000 to 1,000,000 files, and at most "
               f"{RSS_LIMIT_MB} MB everywhere.")
    out.append("")
    rows = [["phase"] + [f"plugback @ {s}" for s in sizes] + ["plugback growth"]
            + [f"{p} growth" for p in peers]]
    worst = None
    for phase in phases_of(last):
        mine = [rss(r["results"], PLUGBACK, phase) for r in runs]
        growth = None if None in (mine[0], mine[-1]) else mine[-1] - mine[0]
        if growth is not None:
            worst = growth if worst is None else max(worst, growth)
        cells = ["-" if v is None else f"{v:.0f}" for v in mine]
        cells.append("-" if growth is None else f"{growth:+.0f}")
        for p in peers:
            a, b = rss(first["results"], p, phase), rss(last["results"], p, phase)
            cells.append("-" if None in (a, b) else f"{b - a:+.0f}")
        rows.append([label(last, phase)] + cells)
    out.append(_table(rows, markdown))
    if worst is not None:
        verdict = "within" if worst <= RSS_GROWTH_MB else "over"
        out += ["", f"Largest plugback growth: {worst:+.0f} MB ({verdict} +{RSS_GROWTH_MB} MB over this range)."]
    return "\n".join(out)


def _changes(data: dict) -> str:
    muts = data.get("mutations") or []
    if not muts:
        return "none applied"
    m = muts[0]
    if "touched" in m:
        return f"{m['modified']:,} rewritten, {m['touched']:,} touched (mtime only)"
    return (f"{m['modified']} modified, {m['added']} added, {m['deleted']} deleted, "
            f"1 folder renamed")


def _encryption(data: dict, markdown: bool) -> str:
    if data.get("encryption_skipped"):
        return f"Not measured: {data['encryption_skipped']}"
    results = data["results"]
    rows = [["phase", "plugback", "plugback --encrypt", "restic", "encrypted / plain",
             "encrypted / restic"]]
    for phase in ("full", "restore"):
        rows.append([PHASE_LABELS[phase]]
                    + [_fmt_time(_cell(results, t, phase)) for t in (PLUGBACK, ENCRYPTED, "restic")]
                    + [_fmt_ratio(ratio(results, phase, PLUGBACK, ENCRYPTED)),
                       _fmt_ratio(ratio(results, phase, "restic", ENCRYPTED))])
    note = ("\n\nThe encrypted runs back up the tree after the day of changes (about 1% different "
            "from the one the plain and restic full backups saw); restic always encrypts.")
    return _table(rows, markdown) + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a saved benchmark result.")
    parser.add_argument("result", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(render(json.loads(args.result.read_text()), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
