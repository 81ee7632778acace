"""The engine-at-scale scenarios (issue #11): which phases run, for which tools, in what order.

``small-files``: N tiny files (``make_scale.generate_small``). Phases: full
backup, no-change backup, changed (0.5% rewritten, 0.5% touched), restore into
an empty folder, verify (quick), verify --read-all, ls of the newest snapshot
(the whole tree), diff of the first and the newest snapshot, the snapshots
listing, and forget --keep-last 1 --prune, in that order.

``big-file-changed``: one 150 MiB random file backed up, then 1 MiB in its
middle overwritten and backed up again; the set's growth is what counts.

The standard (1 GiB) scenario is ``Bench.main_phases`` in run.py.
"""

from __future__ import annotations

import make_scale

SMALL_FILES_PHASES = ("full", "nochange", "changed", "restore", "verify-quick", "verify", "ls", "diff",
                      "snapshots", "forget")
BIG_FILE_PHASES = ("full", "changed")
# Phases a peer could run but that the goals do not compare: not run, to keep a
# million-file run within hours (cp has no incremental mode; rsync's "verify" is a checksum diff).
SMALL_FILES_NOT_RUN = {"cp -a": ("nochange", "changed", "verify"), "rsync -a": ("restore", "verify")}
BIG_FILE_NOT_RUN = {"cp -a": BIG_FILE_PHASES}


def make_source(scenario: str, src, args) -> dict:
    """Write the scenario's seeded source tree at ``src``; returns its stats."""
    if scenario == "small-files":
        return make_scale.generate_small(src, files=args.files, seed=args.seed)
    return make_scale.generate_big(src, mib=args.big_mib, seed=args.seed)


def run_small_files(bench, tools: list) -> None:
    """Every phase of the small-files scenario, for every tool, in order."""
    a = bench.args

    def change(rep: int) -> None:
        bench.mutations.append(make_scale.mutate_small(bench.src, files=a.files, day=rep + 1, seed=a.seed))

    bench.not_run = SMALL_FILES_NOT_RUN
    bench.backup_phase(tools, "full", reset=True)
    bench.backup_phase(tools, "nochange")
    bench.backup_phase(tools, "changed", before_rep=change)
    bench.restores(tools, "restore")
    for phase in SMALL_FILES_PHASES[4:-1]:
        bench.log_phase(phase)
        for rep in range(a.repeat):
            for tool in tools:
                bench.run_phase(tool, phase, rep, [tool.backup_dir()])
    bench.log_phase("forget")
    for tool in tools:  # destroys snapshots: once, whatever --repeat says
        bench.run_phase(tool, "forget", 0, [tool.backup_dir()])
    bench.record_sizes(tools, "forget")


def run_big_file(bench, tools: list) -> None:
    """Back up the big file, change 1 MiB of it, back it up again; sizes before and after."""
    a = bench.args

    def change(rep: int) -> None:
        bench.mutations.append(make_scale.mutate_big(bench.src, change_mib=a.change_mib, day=1, seed=a.seed))

    bench.not_run = BIG_FILE_NOT_RUN
    bench.backup_phase(tools, "full", reset=True, repeat=1)
    bench.backup_phase(tools, "changed", repeat=1, before_rep=change)
