"""Summarise a py-spy profile (``--format raw``): where the time goes, by function.

    py-spy record -r 250 -f raw -o full.raw -- .venv/bin/python -m core.cli backup SRC --to SET
    .venv/bin/python bench/hotspots.py full.raw [--top 25]

Prints each function's share of all samples: "self" (the function itself was
running) and "total" (it was on the stack). py-spy samples every thread, so
with a thread pool the shares are of thread-samples, not of wall time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\((?P<file>[^)]*?)(?::\d+)?\)$")
_CHECKOUTS = (str(Path(__file__).resolve().parent.parent) + "/", "/work/main/")   # paths shown from there


def _function(frame: str) -> str:
    """'read (core/store.py:97)' -> 'read (core/store.py)': one row per function, not per line."""
    m = _LINE.search(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = "..." + path[path.index(marker):]
    for checkout in _CHECKOUTS:
        if checkout in path:
            path = path.split(checkout, 1)[1]
            break
    return f"{frame[:m.start()].strip()} ({path})"


def summarise(raw: str) -> tuple[int, Counter, Counter]:
    """(total samples, self counts, inclusive counts) per function."""
    total, own, incl = 0, Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return total, own, incl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    total, own, incl = summarise(args.raw.read_text(errors="replace"))
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples\n\nself %  function")
    for fn, n in own.most_common(args.top):
        print(f"{100 * n / total:6.1f}  {fn}")
    print("\ntotal %  function (on the stack)")
    for fn, n in incl.most_common(args.top):
        print(f"{100 * n / total:6.1f}  {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
