"""The ``plugback`` command line.

This package is the terminal edge of the app: the only place in ``core`` that
prints. Each command group lives in its own module exposing
``register(subparsers)``; every command function returns an exit code
(``core.errors.EXIT_*``). Expected errors (``PlugbackError``) become one clear
line on stderr and their exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from core import __version__
from core.errors import EXIT_FAILURE, EXIT_USAGE, PlugbackError

#: The command modules, in the order ``--help`` lists their commands.
COMMAND_MODULES = ("backup_cmds", "versions_cmd", "key_cmds", "sets_cmds", "upgrade_cmd", "agent_cmds")
#: Which module registers each command: ``plugback backup …`` imports only backup_cmds (and what it
#: needs), not the agent's configuration and the other commands' modules (~30-50 ms of a start that
#: a no-change backup, ~1 s in all, waits for). tests/core/cli checks it against the modules.
COMMAND_MODULE = {
    **dict.fromkeys(("backup", "snapshots", "ls", "diff", "restore", "verify", "forget"), "backup_cmds"),
    "versions": "versions_cmd", "key": "key_cmds", "sets": "sets_cmds", "upgrade": "upgrade_cmd",
    **dict.fromkeys(("job", "drives", "drive", "status"), "agent_cmds"),
}


def columns() -> int:
    """The terminal's width, as ``shutil.get_terminal_size((80, 20))`` says it (``COLUMNS``, then
    the terminal of ``sys.__stdout__``, else 80), without importing shutil: its import loads the
    bz2 and lzma modules, ~10 ms of a day of changes' backup on a cold cache."""
    try:
        width = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns   # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            width = 0
    return width or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, its width from :func:`columns` (argparse asks shutil)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2) and a hint."""

    def __init__(self, *args, formatter_class=_Formatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (a known command's name) only that command's module's."""
    parser = _Parser(prog="plugback", description="Snapshot backups to a drive or folder.")
    parser.add_argument("--version", action="version", version=f"plugback {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    names = (COMMAND_MODULE[command],) if command in COMMAND_MODULE else COMMAND_MODULES
    for name in names:
        importlib.import_module(f"core.cli.{name}").register(sub)
    _describe(parser)
    return parser


#: Help for arguments that many commands share, in one place; an argument's own help wins.
SHARED_HELP = {
    "set": "the backup set: the folder that holds plugback.json (on a drive, or any folder), "
           "or rclone:REMOTE:PATH for a set on a cloud or network location",
    "target": "the folder to restore into (created if missing)",
    "json": "machine-readable output (JSON) instead of text",
    "name": "the job's name ('plugback job list' shows them)",
    "a": "the older snapshot's id, or 'latest'", "b": "the newer snapshot's id, or 'latest'",
    "keep_last": "keep the N newest snapshots", "keep_hourly": "keep one snapshot per hour for the last N hours",
    "keep_daily": "keep one snapshot per day for the last N days",
    "keep_weekly": "keep one snapshot per week for the last N weeks",
    "keep_monthly": "keep one snapshot per month for the last N months",
}


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every argument without a help text the shared one (``--help`` then lists all of them)."""
    for action in parser._actions:   # argparse has no public walk over its arguments
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _describe(sub)
        elif action.help is None and action.dest in SHARED_HELP:
            action.help = SHARED_HELP[action.dest]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``plugback`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["backup"]:   # its sources read ahead from now on, before the parser and the engine load
        from core.engine.scan_ahead import drop_early, start_early

        start_early(argv)
        try:
            return _run(argv)
        finally:
            drop_early()   # (a child the backup did not take: the parser or the command failed first)
    return _run(argv)


def _run(argv: list[str]) -> int:
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PlugbackError as err:
        print(f"plugback: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("plugback: interrupted. What was saved so far is kept; run the command again to finish.",
              file=sys.stderr)
        return EXIT_FAILURE
