"""The in-flight run's journal: what a run already placed, so an interrupted run resumes.

JSON lines in ``<set>/journal.json``: a header naming the planned snapshot and
its parent, one line per file placed, and checkpoint lines. A checkpoint is
written only after the volume was flushed, and says how many entry lines
before it are durable; only those are trusted on resume. Losing the journal
costs a re-copy, never correctness: content is always checked by its size and
the source's unchanged stat before it is reused.

Encrypted sets never write a path or a plain SHA-256 in the clear: the records
of each checkpoint are sealed together (``crypto.encrypt_bytes`` under the
set's keys) into one ``{"sealed": base64}`` line. Only the header (snapshot ids,
which are file names in ``snapshots/`` anyway) and checkpoint counts are clear.

The journal is read from the drive, so it is untrusted: :func:`load` reads it
through ``safeio`` and checks every record; anything it cannot use ends the
trusted part (as a torn last line does), it never raises.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import NamedTuple

from core.engine import manifest as mf
from core.engine import safeio
from core.engine.fs import FileSystem
from core.engine.sums import LatestSums
from core.errors import PlugbackError

log = logging.getLogger(__name__)
MAX_JOURNAL_BYTES = 1 * safeio.GIB   # about 4 million records; more is not a journal Plugback wrote
_DUMP = json.JSONEncoder(separators=(",", ":")).encode
_STR = json.encoder.encode_basestring_ascii   # a JSON string, as _DUMP writes it (ensure_ascii)
BATCH_RECORDS = 1024   # records written (unsynced) at a time between checkpoints


class Placed(NamedTuple):
    """One file a run placed: its set path, its path in ``Latest/``, its content and the stat
    of the source it was read from (reused only while that stat is unchanged). A named tuple:
    a run makes one per file it copies, and a frozen dataclass cost several times more to make."""

    path: str
    mirror: str
    sha256: str
    obj: str | None = None
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    ctime_ns: int = 0
    parts: int = 0
    stored: int = 0   # Entry.stored: a compressed object's bytes on the drive (0: what size gives)

    def to_dict(self) -> dict:
        return {"p": self.path, "m": self.mirror, "sha": self.sha256, "obj": self.obj, "size": self.size,
                "mtime_ns": self.mtime_ns, "ino": self.ino, "ctime_ns": self.ctime_ns, "parts": self.parts,
                **({"stored": self.stored} if self.stored else {})}

    @classmethod
    def from_dict(cls, d) -> "Placed":
        """A record read from the drive, checked like a manifest entry; ValueError if unusable."""
        if not isinstance(d, dict):
            raise ValueError("not a record")
        for key in ("p", "m"):
            if mf.path_problem(d.get(key)):
                raise ValueError(f"'{key}' is not a path inside the set")
        ints = {"size": (0, (1 << 63) - 1), "mtime_ns": (-(1 << 63), (1 << 63) - 1), "ino": (0, (1 << 64) - 1),
                "ctime_ns": (-(1 << 63), (1 << 63) - 1), "parts": (0, mf.MAX_PARTS),
                "stored": (0, (1 << 63) - 1)}
        for key, (lo, hi) in ints.items():
            v = d.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"'{key}' is invalid")
        if not mf.is_hex64(d.get("sha")) or not (d.get("obj") is None or mf.is_hex64(d.get("obj"))):
            raise ValueError("a content name is invalid")
        return cls(d["p"], d["m"], d["sha"], d.get("obj"), d.get("size", 0), d.get("mtime_ns", 0),
                   d.get("ino", 0), d.get("ctime_ns", 0), d.get("parts", 0), d.get("stored", 0))


def _record_line(p: Placed) -> str:
    """``_DUMP(p.to_dict()) + "\\n"``, the same text, without the dict and the encoder's setup per
    record (one per file a run copies; tests/core/engine/test_copy_path.py holds them equal)."""
    stored = f',"stored":{p.stored}' if p.stored else ""
    obj = "null" if p.obj is None else f'"{p.obj}"'   # (hex digits, or a record from_dict refuses)
    return (f'{{"p":{_STR(p.path)},"m":{_STR(p.mirror)},"sha":"{p.sha256}","obj":{obj},"size":{p.size},'
            f'"mtime_ns":{p.mtime_ns},"ino":{p.ino},"ctime_ns":{p.ctime_ns},"parts":{p.parts}{stored}}}\n')


class Journal:
    """Appends lines for the running backup (thread-safe). ``keys``: the set's, when encrypted."""

    def __init__(self, fs: FileSystem, path: Path, snapshot_id: str, parent: str | None,
                 carried: dict[str, Placed], keys=None):
        self.fs = fs
        self.path = path
        self.keys = keys
        self._lock = threading.Lock()
        self._count = 0
        self._pending: list[Placed] = []
        if path.is_symlink() or path.exists():   # also a dangling symlink: O_EXCL would refuse it
            fs.unlink(path)
        self._f = fs.open_write(path)
        try:
            self._line({"snapshot": snapshot_id, "parent": parent})
            for info in carried.values():
                self.record(info)
            self.checkpoint()
        except BaseException:
            with contextlib.suppress(Exception):   # (the drive's first error is the one to report)
                self.close()
            raise

    def _line(self, obj: dict) -> None:
        self.fs.write(self._f, (_DUMP(obj) + "\n").encode())

    def record(self, info: Placed) -> None:
        """A file was placed (its content is on the drive, maybe not yet durable).

        Lines wait in memory, a batch at a time (memory stays flat however many
        files a run copies between checkpoints), and are written unsynced: only
        lines before a checkpoint line are ever trusted.
        """
        with self._lock:
            self._pending.append(info)
            self._count += 1
            if len(self._pending) >= BATCH_RECORDS:
                self.fs.write(self._f, self._take_pending())

    def _take_pending(self) -> bytes:
        """The waiting records' line(s), sealed in an encrypted set; the caller holds the lock."""
        pending, self._pending = self._pending, []
        records = "".join(map(_record_line, pending)).encode("ascii")
        if self.keys is not None and records:
            from core.engine import crypto

            sealed = base64.b64encode(crypto.encrypt_bytes(self.keys, records)).decode("ascii")
            records = (_DUMP({"sealed": sealed}) + "\n").encode()
        return records

    def pending(self) -> int:
        with self._lock:
            return self._count

    def checkpoint(self, count: int | None = None) -> None:
        """The first ``count`` entries are durable (the caller flushed the volume after counting)."""
        with self._lock:
            if self._f is None:
                return   # closed: removed after the commit (a failure after it checkpoints nothing)
            records = self._take_pending()
            mark = (_DUMP({"checkpoint": self._count if count is None else count}) + "\n").encode()
            self.fs.write(self._f, records + mark)
            self.fs.fsync(self._f)

    def close(self) -> None:
        f, self._f = self._f, None   # (closed even when closing it fails)
        if f is not None:
            self.fs.close(f)

    def remove(self) -> None:
        self.close()
        self.fs.unlink(self.path)


def load(path: Path, keys=None) -> tuple[dict | None, dict[str, Placed]]:
    """(header, trusted records by set path) of an interrupted run's journal; (None, {}) if none.

    ``keys``: the set's keys when it is encrypted (then only sealed records count).
    Never raises for what is on the drive: an unusable journal only costs a re-copy.
    """
    try:
        raw = safeio.read_bytes(path, MAX_JOURNAL_BYTES, root=path.parent)
    except FileNotFoundError:
        return None, {}
    except PlugbackError as err:
        log.warning("Ignoring the journal %s: %s", path, err)
        return None, {}
    lines = raw.split(b"\n")
    header = _decode_line(lines[0])
    if not (isinstance(header, dict) and mf.is_snapshot_id(header.get("snapshot"))
            and (header.get("parent") is None or mf.is_snapshot_id(header.get("parent")))):
        return None, {}
    records: list[Placed] = []
    trusted = 0
    for line in lines[1:]:
        got = _records(_decode_line(line), keys)
        if got is None:
            break   # a torn last line, or damage: everything after it is untrusted anyway
        if isinstance(got, int):
            trusted = got
        else:
            records.extend(got)
    return {"snapshot": header["snapshot"], "parent": header.get("parent")}, \
        {p.path: p for p in records[:trusted]}


def _decode_line(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _records(obj, keys) -> int | list[Placed] | None:
    """A checkpoint count, the records of one line, or None when the line cannot be used."""
    if not isinstance(obj, dict):
        return None
    try:
        if "checkpoint" in obj:
            n = obj["checkpoint"]
            return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
        if keys is None:
            return [Placed.from_dict(obj)]
        if not isinstance(obj.get("sealed"), str):
            return None   # a clear record in an encrypted set was not written by Plugback
        from core.engine import crypto

        plain = crypto.decrypt_bytes(keys, base64.b64decode(obj["sealed"], validate=True), name="journal.json")
        return [Placed.from_dict(json.loads(x)) for x in plain.split(b"\n") if x]
    except (ValueError, RecursionError, binascii.Error, PlugbackError):
        return None


def resume(bset, parent_id: str | None) -> dict[str, Placed]:
    """The journal's trusted entries of an interrupted run of ``bset`` on the same parent ({} if
    none; core/engine/backup.py, step 1). Kept in memory: at most what that run copied before its
    last checkpoint. A run that committed ``parent_id`` but stopped before its last steps has
    them finished here: ``Latest.sha256`` written from its manifest (plain sets), the journal removed."""
    header, trusted = load(bset.layout.journal, bset.keys)
    if header is not None and parent_id is not None and header.get("snapshot") == parent_id:
        if not bset.encrypted:
            sums = LatestSums()
            try:
                with bset.open_manifest(parent_id) as reader:
                    for e in reader:
                        sums.add(e)
                sums.commit(bset)
            finally:
                sums.close()
        bset.fs.unlink(bset.layout.journal)
        return {}
    if header is None or header.get("parent") != parent_id:
        return {}
    return trusted
