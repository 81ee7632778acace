"""What Windows' listing by handle costs in Python per entry (issue #11, core/engine/winscan.py).

On Windows the scan lists a folder through its handle (``GetFileInformationByHandleEx`` with a
directory class) and parses the entries in Python, where ``os.scandir`` built its ``DirEntry``\\ s in
C. Windows is not available here: this times ``winscan._parse`` (each entry's fields unpacked, its
name decoded, its ``os.stat_result`` built) over a buffer packed as Windows packs one call's
entries, for each class the scan uses, and, for scale, ``os.scandir`` and ``DirEntry.stat`` of a
real folder of as many files on this system (its ``lstat`` calls included, which Windows' find data
spares). Best of ``--rounds`` rounds, microseconds per entry.

    flock /tmp/pb/bench.lock nice -n 5 python bench/winscan_parse.py --workdir /var/tmp/pb-NAME/parse
"""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.engine import winscan  # noqa: E402

_FILETIME = 116444736000000000 + 17_000_000_000_000_000   # some day in 2023, in FILETIME units


def packed(layout: winscan.Layout, names: list[str]) -> ctypes.Array:
    """One call's buffer of regular files ``names``, as Windows packs it for ``layout``'s class."""
    buffer = ctypes.create_string_buffer(winscan.BUFFER)
    at, previous = 0, None
    for i, name in enumerate(names):
        raw = name.encode("utf-16-le")
        head = struct.pack("<II6qII", 0, 0, *([_FILETIME + i] * 4), 1000 + i, 4096, 0x20, len(raw))
        if layout is winscan.EXTD:
            record = head + struct.pack("<II", 0, 0) + (5000 + i).to_bytes(16, "little") + raw
        elif layout is winscan.BOTH:
            record = head + struct.pack("<IB27xq", 0, 0, 5000 + i) + raw
        else:
            record = head + struct.pack("<I", 0) + raw
        if previous is not None:
            struct.pack_into("<I", buffer, previous, at - previous)
        buffer[at:at + len(record)] = record
        previous, at = at, at + (len(record) + 7) // 8 * 8
    return buffer


def best_per_entry(run, entries: int, rounds: int, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            run()
        best = min(best, (time.perf_counter() - start) / repeat / entries)
    return best * 1e6


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=400, help="entries in one call's buffer (and in the folder)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workdir", default="/var/tmp/pb-winscan-parse")
    args = ap.parse_args(argv)
    names = [f"IMG_{i:05d}_holiday.jpg" for i in range(args.entries)]
    results = {}
    for label, layout in (("FileIdBothDirectoryInfo", winscan.BOTH), ("FileIdExtdDirectoryInfo", winscan.EXTD),
                          ("FileFullDirectoryInfo", winscan.FULL)):
        view = memoryview(packed(layout, names))
        out: list = []
        winscan._parse(view, layout, 7, out)
        assert [n for n, _ in out] == names
        results[label] = best_per_entry(lambda v=view, lay=layout: winscan._parse(v, lay, 7, []), len(names), args.rounds)
    os.makedirs(args.workdir, exist_ok=True)
    for name in names:
        open(os.path.join(args.workdir, name), "ab").close()

    def scandir() -> None:
        with os.scandir(args.workdir) as it:
            sorted((e.name, e.stat(follow_symlinks=False)) for e in it)

    results["os.scandir + DirEntry.stat (this system)"] = best_per_entry(scandir, len(names), args.rounds)
    for label, us in results.items():
        print(f"{label:42} {us:6.2f} us per entry")
    return results


if __name__ == "__main__":
    main()
