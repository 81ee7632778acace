"""The ``plugback`` command line.

This package is the terminal edge of the app: the only place in ``core`` that
prints. Each command group lives in its own module exposing
``register(subparsers)``; every command function returns an exit code
(``core.errors.EXIT_*``). Expected errors (``PlugbackError``) become one clear
line on stderr and their exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from core import __version__
from core.cli import agent_cmds, backup_cmds, key_cmds, sets_cmds, versions_cmd
from core.errors import EXIT_FAILURE, EXIT_USAGE, PlugbackError

COMMAND_MODULES = (backup_cmds, versions_cmd, key_cmds, sets_cmds, agent_cmds)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code (2) and a hint."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plugback", description="Snapshot backups to a drive or folder.")
    parser.add_argument("--version", action="version", version=f"plugback {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``plugback`` console script."""
    parser = build_parser()
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
