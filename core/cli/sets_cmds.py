"""``plugback sets [MOUNT] [--json]``: the backup sets found on connected drives or in a folder (issue #15).

On a new computer this is how one finds ``Plugback/<computer>/<job>`` on the old
drive before restoring from it (``plugback restore SET TARGET``).
"""

from __future__ import annotations

import sys

from core.cli.render import print_json
from core.errors import EXIT_OK, EXIT_USAGE, PlugbackError


def register(sub) -> None:
    p = sub.add_parser("sets", help="list the backup sets on connected drives (or in a folder)",
                       description="List the backup sets on every connected drive, or in MOUNT (a drive, "
                                   "a Plugback folder or a set), grouped by computer and job. Restore "
                                   "from one with 'plugback restore SET TARGET'.")
    p.add_argument("mount", nargs="?", metavar="MOUNT", help="a drive or folder to look in (default: all drives)")
    p.add_argument("--json", action="store_true", help="print the sets as JSON")
    p.set_defaults(func=cmd_sets)


def cmd_sets(args) -> int:
    from core.agent.config import Paths
    from core.agent.config_file import read_config
    from core.agent.drives import list_volumes
    from core.agent.sets import find_sets

    try:
        jobs = read_config(Paths.default().config_file).jobs
    except (OSError, PlugbackError):   # listing sets works without (or with a broken) config
        jobs = []
    found = find_sets([] if args.mount else list_volumes(), [args.mount] if args.mount else [], jobs)
    if args.json:
        print_json(found.to_dict())
        return EXIT_OK if found.sets or not args.mount else EXIT_USAGE
    if not found.sets:
        print("No backup sets found." + ("" if args.mount else " Plug in the backup drive, or name its folder: "
                                              "plugback sets MOUNT"))
    computer = None
    for s in found.sets:
        if s.computer != computer:
            computer = s.computer
            print(f"Computer {computer}:")
        lock = "encrypted, " if s.encrypted else ""
        newest = f"newest {s.newest_time[:16].replace('T', ' ')} UTC" if s.newest_time else "no snapshots"
        used = f"; used by job {', '.join(s.used_by)}" if s.used_by else ""
        print(f"  {s.job}  ({lock}{s.snapshots} snapshot(s), {newest}{used})")
        print(f"    {s.path}")
    for p in found.problems:
        print(f"plugback: {p['path']}: {p['message']}", file=sys.stderr)
    return EXIT_OK if found.sets or not args.mount else EXIT_USAGE
