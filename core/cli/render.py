"""What the CLI shows people: a progress bar on a terminal, sizes, tables, JSON."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time

from core.agent.words import plural, size
from core.cli import columns
from core.engine.progress import Progress

PHASES = {"scan": "Scanning", "copy": "Copying", "commit": "Saving snapshot", "verify": "Verifying",
          "restore": "Restoring", "prune": "Pruning"}


def human_size(n: float) -> str:
    """1536 -> "1.5 KB" (core.agent.words.size, the one size helper)."""
    return size(n)


def run_summary(job: str, snapshot_id: str | None, counts: dict) -> str:
    """The last line of ``job run`` (in this process or through the agent, the same words):
    "Backed up 'Docs': snapshot 2026…, 43 files checked, 1 file copied (5.0 KB), 1 warning."."""
    text = (f"Backed up '{job}': snapshot {snapshot_id}, {plural(counts.get('files_scanned') or 0, 'file')} checked,"
            f" {plural(counts.get('files_copied') or 0, 'file')} copied ({size(counts.get('bytes_copied') or 0)})")
    warnings = counts.get("warnings") or 0
    return text + (f", {plural(warnings, 'warning')}." if warnings else ".")


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second; silent off a terminal."""

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._drawn = False

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and p.files_done != p.files_total:
            return
        self._last = now
        width = columns()
        label = PHASES.get(p.phase, p.phase)
        if p.files_total:
            frac = (p.bytes_done / p.bytes_total) if p.bytes_total else (p.files_done / p.files_total)
            bar = "#" * int(frac * 20)
            text = (f"{label} [{bar:<20}] {frac * 100:3.0f}%  {p.files_done:,}/{plural(p.files_total, 'file')}  "
                    f"{human_size(p.bytes_done)}/{human_size(p.bytes_total)}  {p.current}")
        else:
            text = f"{label}… {plural(p.files_done, 'item')}  {p.current}"
        self.stream.write("\r" + text[: width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (columns() - 1) + "\r")
            self.stream.flush()
            self._drawn = False


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


class JsonArray:
    """Prints a JSON array item by item, laid out as :func:`print_json` lays out a list, so a
    listing of a million entries is never a list in memory. Use with ``with``; after an
    error the array stays unclosed (the exit code says the output is incomplete)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.count = 0

    def add(self, obj) -> None:
        text = json.dumps(obj, indent=2, ensure_ascii=False, default=str).replace("\n", "\n  ")
        self.stream.write(("[\n  " if not self.count else ",\n  ") + text)
        self.count += 1

    def __enter__(self) -> "JsonArray":
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.stream.write("\n]\n" if self.count else "[]\n")


def warn(message: str) -> None:
    print(f"plugback: {message}", file=sys.stderr)


def ask_new_passphrase(what: str, env_var: str = "PLUGBACK_PASSPHRASE") -> str:
    """A new passphrase: from ``env_var`` if set, else asked twice on the terminal.

    The one new-passphrase prompt of the CLI (a new encrypted set, an encrypted
    job, a changed passphrase). Raises PassphraseNeeded without a terminal and
    UsageError when the two answers differ, so nothing half-made is left.
    """
    from core.errors import PassphraseNeeded, UsageError

    passphrase = os.environ.get(env_var)
    if passphrase:
        return passphrase
    passphrase = prompt_secret(f"New passphrase for {what}: ")
    if not passphrase:
        raise PassphraseNeeded(f"{what[0].upper()}{what[1:]} needs a passphrase: set {env_var}, or run this "
                               "in a terminal to be asked.")
    if prompt_secret("Type it again: ") != passphrase:
        raise UsageError("The two passphrases differ. Nothing was changed; try again.")
    return passphrase


def prompt_secret(message: str) -> str | None:
    """A no-echo prompt on the terminal; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    try:
        return getpass.getpass(message)
    except (EOFError, KeyboardInterrupt):
        return None
