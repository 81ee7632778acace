"""Turn a benchmark result (the JSON that run.py writes) into tables and target checks.

    python bench/report.py bench/results/latest.json [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PHASES = ("full", "nochange", "changed", "restore", "verify")
PHASE_LABELS = {
    "full": "full backup",
    "nochange": "no-change backup",
    "changed": "backup after a day of changes",
    "restore": "restore",
    "verify": "full verify",
}
PLUGBACK = "plugback"
ENCRYPTED = "plugback --encrypt"
NO_VERIFY = "plugback --no-verify"
VARIANTS = (PLUGBACK, NO_VERIFY, ENCRYPTED)
# (phase, peer, limit): plugback's wall time must be at most limit x the peer's.
RATIO_TARGETS = (("full", "cp -a", 1.2), ("nochange", "rsync -a", 1.0), ("restore", "cp -a", 1.2))
FASTER_THAN = ("restic", "borg")


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


def targets(results: dict) -> list[dict]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    out = []
    for phase, peer, limit in RATIO_TARGETS:
        r = ratio(results, phase, peer)
        out.append({"target": f"{PHASE_LABELS[phase]} <= {limit:g}x {peer}", "measured": r,
                    "limit": limit, "met": None if r is None else r <= limit})
    for peer in FASTER_THAN:
        rs = {p: ratio(results, p, peer) for p in PHASES}
        measured = [r for r in rs.values() if r is not None]
        slower = [f"{PHASE_LABELS[p]} ({r:.2f}x)" for p, r in rs.items() if r is not None and r >= 1]
        out.append({"target": f"faster than {peer} on every phase",
                    "measured": max(measured) if measured else None, "limit": 1.0,
                    "met": None if not measured else not slower,
                    "slower_phases": slower})
    return out


def _fmt_time(cell: dict | None) -> str:
    if cell is None:
        return "-"
    status = cell.get("status")
    if status == "ok":
        return f"{cell['wall']:.2f} s ({cell['cpu']:.1f})"
    return status or "-"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024**2:,.0f} MiB"


def _verdict(t: dict) -> str:
    if t["met"] is None:
        return "not measured"
    if t["met"]:
        return "met"
    over = (t["measured"] / t["limit"] - 1) * 100
    extra = f"; slower on: {', '.join(t['slower_phases'])}" if t.get("slower_phases") else ""
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
    """The whole report: header, times, ratios, targets, sizes, encryption, notes."""
    results = data["results"]
    tools = [t for t in data["tools"] if t != ENCRYPTED]
    meta, ds = data["meta"], data["dataset"]
    out = []
    h = "### " if markdown else "== "
    out.append(f"{h}Engine benchmark ({meta['started']})")
    out.append("")
    out.append(f"Data set: {ds['files']:,} files, {ds['dirs']:,} folders, {ds['symlinks']} symlinks, "
               f"{ds['bytes'] / 1024**3:.2f} GiB (scale {meta['scale']}, seed {meta['seed']}); "
               f"day of changes: {_changes(data)}.")
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
    for phase in PHASES:
        rows.append([PHASE_LABELS[phase]] + [_fmt_time(_cell(results, t, phase)) for t in tools])
    out.append(_table(rows, markdown))
    errors = [f"{t} {PHASE_LABELS[p]}: {c['error'][:300]}" for t in tools
              for p, c in results.get(t, {}).items() if c.get("error")]
    if errors:
        out.append("")
        out += [f"* failed: {e}" for e in errors]

    if PLUGBACK in tools:
        peers = [t for t in tools if t not in VARIANTS]
        out.append("")
        out.append("plugback time / peer time (below 1 = plugback faster):")
        out.append("")
        rows = [["phase"] + [f"vs {p}" for p in peers]]
        for phase in PHASES:
            rows.append([PHASE_LABELS[phase]] + [_fmt_ratio(ratio(results, phase, p)) for p in peers])
        out.append(_table(rows, markdown))
        out.append("")
        out.append("Targets:")
        out.append("")
        rows = [["target", "measured", "verdict"]]
        for t in data.get("targets") or targets(results):
            rows.append([t["target"], _fmt_ratio(t["measured"]), _verdict(t)])
        if NO_VERIFY in tools:
            for phase, peer, limit in RATIO_TARGETS[:2]:
                r = ratio(results, phase, peer, NO_VERIFY)
                rows.append([f"(for comparison) {PHASE_LABELS[phase]} without read-back vs {peer}",
                             _fmt_ratio(r), "-" if r is None else ("within" if r <= limit else
                                                                   f"{r / limit - 1:+.0%} over {limit:g}x")])
        out.append(_table(rows, markdown))

    out.append("")
    out.append("Backup size on disk after the full backup / after the day of changes:")
    out.append("")
    rows = [["tool", "after full", "after changes"]]
    for t in tools:
        sizes = data.get("sizes", {}).get(t, {})
        rows.append([t, _fmt_size(sizes.get("full")), _fmt_size(sizes.get("changed"))])
    out.append(_table(rows, markdown))

    checks = data.get("restore_checks", {})
    if checks:
        out.append("")
        out.append("Restored trees compared with the source (names, types, sizes, link targets, "
                   "sampled contents):")
        out += [f"* {t}: {c}" for t, c in checks.items()]

    if ENCRYPTED in data["tools"] or data.get("encryption_skipped"):
        out.append("")
        out.append(f"{h}Encryption")
        out.append("")
        out.append(_encryption(data, markdown))

    if data.get("skipped_tools"):
        out.append("")
        out += [f"* skipped {t}: {why.strip().splitlines()[-1] if why.strip() else why}"
                for t, why in data["skipped_tools"].items()]
    return "\n".join(out)


def _changes(data: dict) -> str:
    muts = data.get("mutations") or []
    if not muts:
        return "none applied"
    m = muts[0]
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
