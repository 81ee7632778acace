"""``plugback versions SET PATH``: the versions of one file across the snapshots."""

from __future__ import annotations

from datetime import datetime

from core.cli.backup_cmds import add_unlock_options, open_set
from core.cli.render import human_size, print_json
from core.errors import EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("versions", help="list the versions of one file across the snapshots",
                       description="List the distinct versions of one file, oldest first: the first "
                                   "snapshot that holds each content, its time, size and SHA-256. "
                                   "Restore one with: plugback restore SET TARGET --snapshot ID --path PATH")
    p.add_argument("set", metavar="SET", help="the backup set (a folder on the drive, or rclone:REMOTE:PATH)")
    p.add_argument("path", metavar="PATH", help="the file as 'plugback ls' shows it, e.g. Documents/letter.txt")
    p.add_argument("--json", action="store_true", help="print a JSON array of {snapshot, time, size, sha256, mtime_ns}")
    add_unlock_options(p)
    p.set_defaults(func=cmd_versions)


def cmd_versions(args) -> int:
    from core.engine.versions import versions

    found = versions(open_set(args), args.path)
    if args.json:
        print_json([v.to_dict() for v in found])
        return EXIT_OK
    for v in found:
        when = datetime.fromisoformat(v.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{v.snapshot_id}  {when}  {human_size(v.size):>10}  {v.sha256}")
    return EXIT_OK
