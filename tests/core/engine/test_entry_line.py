"""The manifest's line encoder and Latest.sha256's line builder (issue #11's faster forms) write
exactly the bytes the generic JSON encoder and GNU sha256sum's escaping give, on awkward names."""

from __future__ import annotations

import os

import pytest

from core.engine.manifest import DIR, FILE, LINK, Entry, Manifest
from core.engine.manifest_io import _ENCODER, decode, encode, entry_line
from core.engine.sums import sums_line

SHA = "0123456789abcdef" * 4

NAMES = [
    "Docs/report.txt", "a", 'quote"and\\backslash', "new\nline\ttab\rcr\x00nul\x1f\x7f",
    "é/ü/ß/日本語/ファイル", "emoji 😀 pair", "lone \udcff surrogate", "\u2028line sep\u2029",
    "</script>&<>'", " leading and trailing ", "x" * 5000, "dir/", "~$lock.docx", "\ud800",
]


def entries() -> list[Entry]:
    out = []
    for i, name in enumerate(NAMES):
        out += [
            Entry(name, FILE, size=i * 4097, mtime_ns=1_764_166_000_123_456_789 + i, mode=0o644, sha256=SHA),
            Entry(name, FILE, size=0, mtime_ns=-1, mode=0, sha256=SHA, ino=2**63 - 1, ctime_ns=-(10**18)),
            Entry(name, DIR, mtime_ns=0, mode=0o755, ino=i + 1, ctime_ns=5),
            Entry(name, LINK, mtime_ns=7, mode=0o777, target=name + "/../target"),
            Entry(name, LINK, mtime_ns=7, mode=0o777, target=None),
            Entry(name, FILE, size=2**40, mtime_ns=3, mode=0o600, sha256=SHA, mirror=name + "~1", parts=3,
                  obj="ff" * 32, attrs=6, stored=123),
            Entry(name, FILE, size=1, mode=0o644, sha256=SHA, obj="ab" * 32),
            Entry(name, DIR, mode=0o700, attrs=2),
            Entry(name, FILE, size=1, mode=0o644, sha256=SHA, stored=9),
        ]
    return out


@pytest.mark.parametrize("e", entries(), ids=lambda e: f"{e.type}:{e.path[:20]!r}")
def test_a_line_is_what_the_json_encoder_writes(e):
    assert entry_line(e) == (_ENCODER.encode(e.to_dict()) + "\n").encode("ascii")


def test_a_written_manifest_reads_back_the_same_entries():
    names = ['quote"and\\backslash', "é ü ß 日本語", "emoji 😀 pair", "</script>&<>'", " spaced ", "tab\tname"]
    files = [Entry(f"S/{n}", FILE, size=i, mtime_ns=i, mode=0o644, sha256=SHA, ino=i + 1, ctime_ns=i)
             for i, n in enumerate(names)]
    entries_ = sorted([Entry("S", DIR, mode=0o755), *files, Entry("S/~link", LINK, target="../x")],
                      key=lambda e: e.path.split("/"))
    m = Manifest(snapshot_id="20261126T120000Z-abcd", time="2026-11-26T12:00:00Z", host="host",
                 sources=[{"path": "/s", "name": "S"}], entries=entries_)
    back = decode(encode(m))
    assert [e.to_dict() for e in back.entries] == [e.to_dict() for e in entries_]


def _sums_line_reference(sha256: str, mirror_path: str) -> bytes:
    """The line as it was built before (issue #11): the bytes of the name, escaped as GNU sha256sum does."""
    name = os.fsencode(mirror_path)
    if b"\\" in name or b"\n" in name:
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + sha256.encode() + b"  " + name + b"\n"
    return sha256.encode() + b"  " + name + b"\n"


@pytest.mark.parametrize("name", [n for n in NAMES if n != "\ud800" or os.name == "nt"] + ["\\", "\n", "a\\b\nc"])
def test_a_sums_line_is_gnu_sha256sums(name):
    line = sums_line(SHA, name)
    assert line == _sums_line_reference(SHA, name)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b"\\") == ("\\" in name or "\n" in name)
