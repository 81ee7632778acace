"""Scratch tables on this computer's disk, for commands that must not hold every entry in memory.

A command that needs a lookup over a whole manifest (content in ``Latest/`` by hash)
or over every manifest (the object names a set still references; the distinct
contents verify checks) keeps it in a private temporary SQLite database: SQLite
deletes its file when the connection closes (or the process ends), and its page
cache is capped, so memory stays flat whatever the file count (issue #11).

Nothing here is trusted more than the manifests it came from: every reader of
content still checks size and SHA-256 against the manifest entry.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from core.engine.manifest import FILE
from core.errors import DamagedSet

if TYPE_CHECKING:
    import sqlite3

CACHE_KIB = 8192      # SQLite's page cache per scratch database (it spills to its temp file beyond)
BATCH = 512           # rows per executemany batch (a batch is in memory at once)


def connect() -> sqlite3.Connection:
    """A private temporary database (the empty file name), deleted when it is closed."""
    import sqlite3  # (here: a backup that needs no database does not load SQLite, ~5 ms on a cold cache)

    db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
    # The rollback journal stays on: a manifest found damaged at its end rolls its rows back.
    for pragma in (f"cache_size=-{CACHE_KIB}", "synchronous=OFF", "temp_store=FILE"):
        db.execute(f"PRAGMA {pragma}")
    return db


def path_key(path: str) -> bytes:
    """A manifest path as bytes that round-trip exactly (names from POSIX may hold lone surrogates,
    which SQLite text cannot)."""
    return path.encode("utf-8", "surrogatepass")


def path_of(key: bytes) -> str:
    return bytes(key).decode("utf-8", "surrogatepass")


def batches(rows: Iterable, size: int = BATCH) -> Iterator[list]:
    """``rows`` in lists of at most ``size`` (one executemany call each)."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class LatestIndex:
    """Where content is in ``Latest/`` by SHA-256: ``(mirror path, parts)`` of the first file
    with that hash in the newest intact snapshot (plain sets; docs/format.md, "Where a file's
    content is").

    ``readers`` yields the set's manifest readers newest first; the first one read to
    its end without damage (``DamagedSet``) is the one indexed (a damaged newer one is
    verify's to report). Built on the first lookup, so a command whose content is all
    in ``objects/`` never reads a manifest for it. Thread-safe (restore's workers ask).
    """

    def __init__(self, readers: Callable[[], Iterator]):
        self._readers = readers
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def lookup(self, sha256: str) -> tuple[str, int] | None:
        with self._lock:
            if self._db is None:
                self._db = self._build()
            row = self._db.execute("SELECT mirror, parts FROM latest WHERE sha = ? ORDER BY rowid LIMIT 1",
                                   (bytes.fromhex(sha256),)).fetchone()
        return None if row is None else (path_of(row[0]), row[1])

    def _build(self) -> sqlite3.Connection:
        db = connect()
        db.execute("CREATE TABLE latest (sha BLOB NOT NULL, mirror BLOB NOT NULL, parts INTEGER NOT NULL)")
        for reader in self._readers():
            db.execute("BEGIN")
            try:
                with reader:
                    rows = ((bytes.fromhex(e.sha256), path_key(e.mirror_path), e.parts)
                            for e in reader if e.type == FILE)
                    for batch in batches(rows):
                        db.executemany("INSERT INTO latest VALUES (?, ?, ?)", batch)
            except DamagedSet:
                db.execute("ROLLBACK")   # only a manifest read to its checked end is used
                continue
            db.execute("COMMIT")
            break
        # Indexed after the inserts: SQLite sorts once (external merge) instead of a random
        # B-tree insert per file.
        db.execute("CREATE INDEX latest_sha ON latest (sha)")
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
