"""``plugback upgrade SET [--yes]``: move a set to the newest format (issue #11), only when asked."""

from __future__ import annotations

import sys

from core.cli.backup_cmds import add_unlock_options, unlocker_from
from core.errors import EXIT_OK, EXIT_USAGE

WARNING = ("Format {new} stores older versions of big files (16 MiB and more) as chunks, so a small change "
           "to a big file no longer stores the whole file again. After the upgrade, Plugback versions that "
           "know only format {old} can no longer read this set, on this computer or any other that shares "
           "the drive: update Plugback there first. There is no way back to format {old}.")


def register(sub) -> None:
    p = sub.add_parser("upgrade", help="upgrade a backup set to the newest format",
                       description="Upgrade a backup set made by an older Plugback to the newest on-drive "
                                   "format. Older Plugback versions can then no longer read it.")
    p.add_argument("set", metavar="SET")
    p.add_argument("--yes", action="store_true", help="upgrade without asking (the warning is still printed)")
    add_unlock_options(p)
    p.set_defaults(func=cmd_upgrade)


def cmd_upgrade(args) -> int:
    from core.engine.layout import SET_VERSION
    from core.engine.repo import BackupSet
    from core.engine.upgrade import check_upgradable, upgrade

    bset = BackupSet.open(args.set, unlocker_from(args))
    check_upgradable(bset)   # a clear refusal before any question
    print("plugback: " + WARNING.format(new=SET_VERSION, old=bset.version), file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            print("plugback: nothing was changed. Run again with --yes to upgrade.", file=sys.stderr)
            return EXIT_USAGE
        if input(f"Upgrade {bset.root} to format {SET_VERSION}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing was changed.")
            return EXIT_OK
    before = upgrade(bset)
    print(f"Upgraded {bset.root} from format {before} to format {SET_VERSION}.")
    return EXIT_OK
