"""Engine commands: backup, snapshots, ls, diff, restore, verify, forget."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from core.cli import remote_cmds
from core.cli.render import (
    JsonArray,
    ProgressBar,
    ask_new_passphrase,
    human_size,
    print_json,
    prompt_secret,
    warn,
)
from core.engine.manifest import DIR, FILE, LINK, Entry, sort_key
from core.errors import EXIT_DAMAGE, EXIT_OK, EXIT_WARNINGS, DiskFull, UsageError

if TYPE_CHECKING:
    from core.engine.repo import BackupSet

# The engine's modules are imported by the command that uses them (issue #11): `plugback snapshots`
# need not load the restore, verify and backup engines, nor `plugback backup` the agent's.

RESTORE_WAIT = 3600.0   # seconds `plugback restore` waits for a backup of the same set (--wait)


def add_unlock_options(p) -> None:
    """Options every command that opens a (possibly encrypted) set takes."""
    p.add_argument("--recovery-key-file", metavar="FILE",
                   help="open an encrypted set with its recovery key instead of the passphrase "
                        "(or set PLUGBACK_RECOVERY_KEY)")


def unlocker_from(args):
    """How the CLI opens an encrypted set: recovery key, keyring, PLUGBACK_PASSPHRASE, then a prompt."""

    def unlock(enc: dict, set_id: str):
        from core.agent.keys import make_unlocker  # keyring is slow to import: only an encrypted set needs it

        return make_unlocker(recovery_key_file=getattr(args, "recovery_key_file", None),
                             prompt=prompt_secret, warn=warn)(enc, set_id)

    return unlock


def register(sub) -> None:
    _register_backup(sub)
    for add in (_register_browsing, _register_restore, _register_verify, _register_forget):
        add(sub)


def _register_backup(sub) -> None:
    p = sub.add_parser("backup", help="back up folders into a set (created if new)",
                       description="Back up SRC folders into SET. Each source appears in the set as a "
                                   "top-level folder named after it.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="a folder to back up")
    p.add_argument("--to", required=True, metavar="SET",
                   help="the backup set (a folder, or rclone:REMOTE:PATH on a cloud or network location, "
                        "always encrypted; created if new)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="gitignore-style pattern to leave out (repeatable), e.g. '*.tmp' or 'node_modules/'")
    p.add_argument("--rehash", action="store_true", help="read every file, even unchanged ones")
    p.add_argument("--no-verify", action="store_true", help="skip reading back what was written")
    p.add_argument("--make-room", action="store_true",
                   help="when the backup would not fit, forget the oldest snapshots (never the newest) "
                        "until it does; without it a backup that does not fit stops before writing")
    p.add_argument("--encrypt", action="store_true",
                   help="create the set encrypted (passphrase from PLUGBACK_PASSPHRASE or a prompt)")
    p.add_argument("--remember", action="store_true",
                   help="keep the passphrase in the system keyring for unattended backups")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    add_unlock_options(p)
    p.set_defaults(func=cmd_backup)


def _register_browsing(sub) -> None:
    p = sub.add_parser("snapshots", help="list the snapshots in a set")
    p.add_argument("set", metavar="SET")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_snapshots)

    p = sub.add_parser("ls", help="list files in a snapshot")
    p.add_argument("set", metavar="SET")
    p.add_argument("snapshot", nargs="?", default="latest", metavar="SNAPSHOT",
                   help="snapshot id, a unique prefix of one, or 'latest' (default)")
    p.add_argument("path", nargs="?", default="", metavar="PATH", help="only below this path")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("diff", help="what changed between two snapshots")
    p.add_argument("set", metavar="SET")
    p.add_argument("a", metavar="SNAP_A")
    p.add_argument("b", metavar="SNAP_B")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_diff)


def _register_restore(sub) -> None:
    p = sub.add_parser("restore", help="restore files from a snapshot",
                       description="Restore into TARGET/<source folder name>/... Every byte is checked "
                                   "against the snapshot; damaged files are named and not written.")
    p.add_argument("set", metavar="SET")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--snapshot", default="latest", metavar="ID", help="snapshot id or 'latest' (default)")
    p.add_argument("--path", action="append", default=[], metavar="P",
                   help="restore only this file or folder (repeatable), e.g. Documents/report.txt")
    # The same default as the window: nothing already there is lost, and the restored version is written.
    p.add_argument("--on-conflict", type=_on_conflict, default="keep-both", metavar="WHAT",
                   help="when a file already exists: keep-both (default: the restored copy gets a new "
                        "name, \"name (restored).ext\"), skip, or overwrite")
    p.add_argument("--wait", type=float, default=RESTORE_WAIT, metavar="SECONDS",
                   help="when a backup (or another restore) is using the set, wait this long for it to finish "
                        f"(default {RESTORE_WAIT:.0f}; 0: fail at once; Ctrl-C stops waiting)")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_restore)


def _on_conflict(text: str) -> str:
    """``--on-conflict``'s check, against the restore engine's own spellings (loaded only when given)."""
    from core.engine.restore import CONFLICTS

    if text not in CONFLICTS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(CONFLICTS)})")
    return text


def _register_verify(sub) -> None:
    p = sub.add_parser("verify", help="check a set for damage")
    p.add_argument("set", metavar="SET")
    p.add_argument("--read-all", action="store_true", help="read and check every byte (slower)")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_verify)


def _register_forget(sub) -> None:
    p = sub.add_parser("forget", help="forget old snapshots by a retention policy")
    p.add_argument("set", metavar="SET")
    for kind in ("last", "hourly", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{kind}", type=int, metavar="N",
                       help=f"keep the {kind} snapshots of the last N {'' if kind == 'last' else 'periods'}"
                            f" (-1: no limit)")
    p.add_argument("--keep-within-hours", type=int, metavar="H", help="keep everything from the last H hours")
    p.add_argument("--prune", action="store_true", help="also delete content no snapshot needs any more")
    p.add_argument("--dry-run", action="store_true", help="only show what would be forgotten")
    p.add_argument("--json", action="store_true")
    add_unlock_options(p)
    p.set_defaults(func=cmd_forget)


def _backup_set(args) -> tuple[BackupSet, str | None]:
    """The set ``--to`` names (a folder: remote sets are remote_cmds.cmd_backup's), opened, or created
    (encrypted with ``--encrypt``) when new: (the set, the new set's passphrase or None)."""
    from core.engine.backup import check_sources
    from core.engine.progress import Clock
    from core.engine.repo import BackupSet

    root = Path(os.path.abspath(args.to))
    if BackupSet.exists(root):
        bset = BackupSet.open(root, unlocker_from(args))
        if args.encrypt and not bset.encrypted:
            raise UsageError(f"The set at {root} is not encrypted; encryption is chosen when a set is "
                             "created. Back up to a new folder with --encrypt.")
        return bset, None
    check_sources(args.sources, root)   # before anything is created
    passphrase = ask_new_passphrase("this backup set") if args.encrypt else None
    # Only the set's own folder is created: a missing parent is most often an absent drive.
    return BackupSet.create(root, Clock().now(), passphrase=passphrase), passphrase


def cmd_backup(args) -> int:
    if remote_cmds.is_remote(args.to):
        return remote_cmds.cmd_backup(args, unlocker_from(args), _report_backup)
    ahead = _read_ahead(args)
    try:
        return _backup(args, ahead)
    finally:
        if ahead is not None:
            ahead.stop()


def _read_ahead(args):
    """The sources' folders read ahead while the engine loads (a set on a drive: the scan is a full
    one): by a child process where that is done (core/engine/scan_ahead.py), else by threads when
    they are turned on (core/engine/prefetch.py)."""
    from core.engine.prefetch import Prefetch
    from core.engine.scan_ahead import start, take_early

    sources, to = [os.path.abspath(p) for p in args.sources], os.path.abspath(args.to)
    if (child := take_early(sources, args.exclude, to) or start(sources, args.exclude, to)):   # (early: core.cli.main)
        return child
    skip = set()
    try:   # (the set is not read ahead if it lies in a source: the scan skips it too)
        st = os.stat(args.to)
        skip.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return Prefetch([os.path.abspath(p) for p in args.sources], skip=skip)


def _backup(args, ahead) -> int:
    from core.agent.config import Paths
    from core.engine.backup import BackupOptions
    from core.engine.cache import engine_cache
    from core.engine.space import backup_with_room

    bset, passphrase = _backup_set(args)
    bar = ProgressBar(enabled=None if not args.json else False)
    options = BackupOptions(excludes=args.exclude, rehash=args.rehash, verify=not args.no_verify, progress=bar,
                            cache=engine_cache(Paths.default()), prefetch=ahead)
    try:
        result, room = backup_with_room(bset, args.sources, options, thin=args.make_room)
    except DiskFull as err:
        raise type(err)(**{**err.details, "hint": _room_hint(bset.root, args.make_room)}) from None
    finally:
        bar.done()
    return _report_backup(args, bset, result, room, passphrase)


def _report_backup(args, bset, result, room, passphrase: str | None) -> int:
    """What ``plugback backup`` prints, and its exit code."""
    if room is not None and room.removed:
        print(f"Made room: forgot the {len(room.removed)} oldest snapshot(s) ({', '.join(room.removed)}), "
              f"{human_size(room.bytes_freed)} freed.", file=sys.stderr)
    if passphrase:
        # Said once, when the set is made: without the passphrase only the recovery key opens it.
        print(f"This backup set is encrypted. If the passphrase is lost, only its recovery key opens it: "
              f"print it now with 'plugback key export {bset.root}' and keep it on paper, away from the "
              "drive.", file=sys.stderr)
    if passphrase and args.remember:
        from core.agent import keys

        try:
            keys.store_passphrase(bset.set_id, passphrase)
        except Exception as err:  # noqa: BLE001 - a missing keyring must not fail a finished backup
            warn(str(err))
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"Snapshot {result.snapshot_id}: {result.files_scanned} files ({human_size(result.bytes_scanned)}),"
              f" {result.files_copied} copied ({human_size(result.bytes_copied)}).")
        for w in result.warnings:
            print(f"  warning: {w.path}: {w.message}", file=sys.stderr)
        for path, why in result.damaged:
            print(f"  DAMAGED: {path}: {why}", file=sys.stderr)
    if result.damaged:
        if not args.json:
            print("plugback: reading back the backup found damage: the drive may be failing. "
                  "Run 'plugback verify SET --read-all' and use another drive.", file=sys.stderr)
        return EXIT_DAMAGE
    if result.warnings:
        if not args.json:
            print(f"Completed with {len(result.warnings)} warning(s): the files listed above were not "
                  "backed up (or kept their previous version).", file=sys.stderr)
        return EXIT_WARNINGS
    return EXIT_OK


def _room_hint(root: Path, made_room: bool) -> str:
    """What the CLI adds to a full-drive message: the real set, and the flag or command that makes room."""
    if made_room:
        return ""
    where = shlex.quote(str(root)) if os.name != "nt" else f'"{root}"'
    return (f"To let Plugback forget the oldest snapshots of {root} when needed, run the backup again with "
            f"--make-room; or choose yourself: 'plugback forget {where} --keep-last 3 --prune' keeps the 3 newest.")


def open_set(args) -> BackupSet:
    """The set SET names, opened: a folder, or a remote set (which reads like one)."""
    from core.engine.repo import BackupSet

    if remote_cmds.is_remote(args.set):
        return remote_cmds.open_remote(args.set, unlocker_from(args))   # type: ignore[return-value]
    return BackupSet.open(args.set, unlocker_from(args))


def _engine(args, local, remote_name: str):
    """The engine function for the SET argument: ``local``, or core.engine.remote's ``remote_name``."""
    if not remote_cmds.is_remote(args.set):
        return local
    from core.engine.remote import check as remote_check
    from core.engine.remote import restore as remote_restore

    return {"restore": remote_restore.restore, "verify": remote_check.verify,
            "forget": remote_check.forget}[remote_name]


def cmd_snapshots(args) -> int:
    snaps = open_set(args).snapshots()
    if args.json:
        print_json([s.to_dict() for s in snaps])
        return EXIT_OK
    if not snaps:
        print("No snapshots yet.")
    for s in snaps:
        print(f"{s.id}  {_local(s.time)}  {s.files:>8} files  {human_size(s.bytes):>10}  {s.host}")
    return EXIT_OK


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def cmd_ls(args) -> int:
    """The entries of a snapshot (below PATH), printed as they stream from the manifest."""
    bset = open_set(args)
    sid = bset.resolve_id(args.snapshot)
    prefix = args.path.strip("/")
    with bset.open_manifest(sid) as reader:
        entries = (e for e in reader if not prefix or e.path == prefix or e.path.startswith(prefix + "/"))
        if args.json:
            with JsonArray() as out:
                for e in entries:
                    out.add(e.to_dict())
                shown = out.count
        else:
            shown = 0
            for e in entries:
                sys.stdout.write(_ls_line(e))
                shown += 1
    if prefix and not shown:
        raise UsageError(f"Nothing at '{prefix}' in snapshot {sid}.")
    return EXIT_OK


def _ls_line(e) -> str:
    when = datetime.fromtimestamp(e.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    extra = f" -> {e.target}" if e.type == LINK else ""
    size = human_size(e.size) if e.type == FILE else ""
    return f"{e.type} {oct(e.mode)[2:]:>4} {size:>10} {when}  {e.path}{'/' if e.type == DIR else ''}{extra}\n"


def diff_entries(a: Iterable[Entry], b: Iterable[Entry]) -> Iterator[tuple[str, str]]:
    """(change, path) between two snapshots' entries, both in manifest order: a merge-join of the
    two streams (``+`` added, ``-`` removed, ``T`` type, ``M`` content or target, ``U`` mode)."""
    a, b = iter(a), iter(b)
    ea, eb = next(a, None), next(b, None)
    while ea is not None or eb is not None:
        if eb is None or (ea is not None and sort_key(ea.path) < sort_key(eb.path)):
            assert ea is not None   # the loop's condition: one side is left
            yield "-", ea.path
            ea = next(a, None)
            continue
        if ea is None or sort_key(eb.path) < sort_key(ea.path):
            yield "+", eb.path
            eb = next(b, None)
            continue
        if ea.type != eb.type:
            yield "T", ea.path
        elif (ea.sha256, ea.target) != (eb.sha256, eb.target):
            yield "M", ea.path
        elif ea.mode != eb.mode:
            yield "U", ea.path
        ea, eb = next(a, None), next(b, None)


def cmd_diff(args) -> int:
    bset = open_set(args)
    counts = {"+": 0, "-": 0, "M": 0, "T": 0, "U": 0}
    with bset.open_manifest(bset.resolve_id(args.a)) as a, bset.open_manifest(bset.resolve_id(args.b)) as b:
        changes = diff_entries(a, b)
        if args.json:
            with JsonArray() as out:
                for c, p in changes:
                    out.add({"change": c, "path": p})
            return EXIT_OK
        for c, p in changes:
            counts[c] += 1
            sys.stdout.write(f"{c} {p}\n")
    print(f"{counts['+']} added, {counts['-']} removed, {counts['M'] + counts['T'] + counts['U']} changed.")
    return EXIT_OK


def _waiting(bset: BackupSet):
    """What ``plugback restore`` prints while another process holds the set (once per holder)."""
    job = None if bset.encrypted else bset.meta.get("job")

    def say(holder: dict) -> None:
        what = holder.get("purpose") or "backup"
        who = f"process {holder.get('pid')} on {holder.get('host')}" if holder.get("pid") else "another process"
        print(f"plugback: waiting for the {what}{f' of {job}' if job else ''} to finish ({who}); "
              "Ctrl-C stops waiting.", file=sys.stderr, flush=True)
    return say


def cmd_restore(args) -> int:
    from core.engine.restore import RestoreOptions, restore

    if args.wait < 0:
        raise UsageError("--wait takes a number of seconds, 0 or more.")
    bset = open_set(args)
    bar = ProgressBar(enabled=None if not args.json else False)
    try:
        result = _engine(args, restore, "restore")(bset, args.target, RestoreOptions(
            snapshot=args.snapshot, paths=args.path, on_conflict=args.on_conflict, progress=bar,
            lock_wait=args.wait, on_lock_wait=_waiting(bset)))
    finally:
        bar.done()
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"Restored {result.files_restored} files ({human_size(result.bytes_restored)}) from snapshot "
              f"{result.snapshot_id} into {result.target}"
              + (f"; {result.skipped} skipped (already there)." if result.skipped else "."))
        if result.kept_both:
            print(f"{result.kept_both} file(s) were already there and were kept; the restored copies have "
                  "new names:")
            for _path, wanted, kept in result.kept_as:
                print(f"  {kept}  (next to {os.path.basename(wanted)})")
            if result.kept_both > len(result.kept_as):
                print(f"  … and {result.kept_both - len(result.kept_as)} more")
        for w in result.warnings:
            print(f"  warning: {w.path}: {w.message}", file=sys.stderr)
        for path, why in result.damaged:
            print(f"  DAMAGED: {path}: {why}", file=sys.stderr)
    if result.damaged:
        return EXIT_DAMAGE
    return EXIT_WARNINGS if result.warnings else EXIT_OK


def cmd_verify(args) -> int:
    from core.agent.config import Paths
    from core.engine.cache import engine_cache
    from core.engine.verify import VerifyOptions, verify

    bar = ProgressBar(enabled=None if not args.json else False)
    try:
        bset = open_set(args)
        # (the cache holds the record of the manifests written here: verify reads those lines undecoded)
        options = VerifyOptions(read_all=args.read_all, progress=bar, cache=engine_cache(Paths.default()))
        result = _engine(args, verify, "verify")(bset, options)
    finally:
        bar.done()
    if args.json:
        print_json(result.to_dict())
    else:
        for n in result.notices:
            print(f"note: {n}")
        for path, why in result.damaged:
            print(f"DAMAGED: {path}: {why}")
        what = f"read {human_size(result.bytes_read)}" if args.read_all else "checked sizes (add --read-all to read every byte)"
        if result.ok:
            print(f"No damage found: {result.snapshots} snapshots, {result.contents} files; {what}.")
        else:
            print(f"{len(result.damaged)} damaged item(s) found in {result.snapshots} snapshots. Restore "
                  "them from another snapshot, and consider replacing the drive.", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_DAMAGE


def cmd_forget(args) -> int:
    from core.engine.retention import RetentionPolicy, forget

    policy = RetentionPolicy(last=args.keep_last, hourly=args.keep_hourly, daily=args.keep_daily,
                             weekly=args.keep_weekly, monthly=args.keep_monthly,
                             within_hours=args.keep_within_hours)
    bset = open_set(args)
    result = _engine(args, forget, "forget")(bset, policy, prune=args.prune, dry_run=args.dry_run)
    if args.json:
        print_json(result.to_dict())
        return EXIT_OK
    verb = "Would forget" if args.dry_run else "Forgot"
    print(f"{verb} {len(result.forgotten)} snapshot(s), keeping {len(result.kept)}.")
    for sid in result.forgotten:
        print(f"  - {sid}")
    if args.prune and not args.dry_run:
        print(f"Pruned {result.objects_removed} unused file version(s), freeing {human_size(result.bytes_freed)}.")
    return EXIT_OK
