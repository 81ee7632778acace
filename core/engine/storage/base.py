"""The blob interface every storage backend implements, and what each one promises.

A backend stores immutable named blobs under one root (a set's folder on a drive,
``REMOTE:PATH`` on an rclone remote). The engine asks for blobs by name; it never
builds a backend's paths, and a backend never lets a name leave its root.

Guarantees of every backend (the conformance suite in tests/core/engine/storage/
checks each of them against every backend):

* **Atomic put.** When ``put`` returns, the whole blob is stored under its name
  (durably, as far as the storage can say so). When it raises, or the process,
  the connection or the server dies part-way, nothing new is visible under that
  name: a reader sees the previous blob or none, never a torn one. Backends
  stage a blob under the reserved ``tmp/`` folder and move it into place, or use
  storage whose uploads are atomic by nature (object stores). The one exception
  is content the caller marks :class:`Unstaged`: a backend may write it in place.
* **Immutable names.** The engine writes a name once (objects are named by
  their content, snapshots by their time and a random suffix, locks by a random
  id). A second ``put`` of a name replaces it atomically; only ``plugback.json``
  is rewritten on purpose (a passphrase change).
* **List consistency.** A blob whose ``put`` returned is seen by every later
  ``list`` and ``stat``; a deleted one is not. (Storage that lists eventually
  must not be used; rclone's object stores are read-after-write consistent.)
* **Errors are types.** Failures raise a :class:`core.errors.StorageError`
  subclass (``transient`` when a retry can help: a dropped connection, a busy
  server), :class:`core.errors.BlobNotFound` for a missing name, or, for a local
  folder, the drive errors of :mod:`core.engine.fs` (a full or removed drive).
  Nothing retries inside a backend; :mod:`core.engine.storage.wrappers` does.
* **Untrusted storage.** Names listed from storage that Plugback could not have
  written are skipped; a local backend never follows a symbolic link.

Names: 1 to 4 ``/``-separated parts, each of ASCII letters, digits, ``.``, ``_``
and ``-``, starting with a letter, digit or ``_`` (so never ``.`` or ``..``), not
ending with ``.`` and not a Windows device name (``CON``, ``NUL.txt``...); the first
part is never ``tmp`` (in-flight puts live there). See :func:`check_name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Generator, Iterable, Iterator, Protocol, Union, runtime_checkable

from core.errors import BadBlobName, DriveFileDamaged

TMP = "tmp"                 # the reserved folder of in-flight puts, in every backend
CHUNK = 1 << 20             # bytes per chunk of a streamed get
MAX_NAME = 255
MAX_PARTS = 4
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# Names Windows keeps for devices, with any extension: a set must stay readable when copied there.
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}

# What ``put`` stores: bytes, or a function that opens the content as a fresh stream of chunks
# each time it is called (so a retry can send it again; restic's RewindReader).
Source = Union[bytes, Callable[[], Iterable[bytes]]]


class Unstaged(bytes):
    """Content whose put need not be atomic: a backend may write it in place under its name
    (one upload instead of an upload to ``tmp/`` and a move: fewer requests), so a put cut
    part-way may leave a torn blob there. Only for blobs nothing trusts by their name alone:
    the caller reads the blob back whole and checks it before anything names it, and a torn
    one is garbage its checks refuse and prune deletes (a remote set's packs: their index is
    put only after the pack read back equal to its name, core/engine/remote/packs.py). A
    wrapper that changes the content (``chunks_of`` it into a function) drops the mark, and
    the put is atomic again."""


class UnstagedChunks:
    """:class:`Unstaged` content as a stream: a function that opens it as chunks each time it is
    called (a pack spooled in a local file, so that its bytes are not held in memory), with the
    same promise and the same rule (read back whole and checked before anything names it)."""

    def __init__(self, opener: Callable[[], Iterable[bytes]]):
        self._opener = opener

    def __call__(self) -> Iterable[bytes]:
        return self._opener()


def is_unstaged(data: object) -> bool:
    """Whether ``data`` is marked as content a backend may write in place."""
    return isinstance(data, (Unstaged, UnstagedChunks))


@dataclass(frozen=True)
class Staged:
    """A blob :meth:`Stages.stage` uploaded to ``tmp/``: not under ``name`` (nor listed) until
    :meth:`Stages.commit` moves it there. ``where``: its place in ``tmp/`` (the backend's)."""

    name: str
    where: str


@runtime_checkable
class Stages(Protocol):
    """A backend whose atomic put is two steps (an upload to ``tmp/``, then a move onto the name)
    that a caller may take apart: stage the bytes early (before a set exists and is locked,
    :class:`core.engine.remote.backup._Gated`), name them later. ``can_stage``: whether this one
    does (a wrapper asks the backend it wraps; an object store has no move, a put there is
    atomic by nature). Staged blobs live in ``tmp/``: ``clean_partial`` removes them."""

    can_stage: bool

    def stage(self, name: str, data: Source) -> Staged:
        """Upload ``data`` to ``tmp/`` for ``name`` (checked); nothing appears under the name."""

    def commit(self, staged: Staged) -> None:
        """Move a staged blob onto its name (atomic: whole or not there; replaces an older one)."""

    def discard(self, staged: Staged) -> None:
        """Remove a staged blob that will not be committed (gone already is fine)."""

    def read_staged(self, staged: Staged, offset: int = 0) -> Generator[bytes, None, None]:
        """A staged blob's bytes as ``tmp/`` holds them (from ``offset``), as :meth:`Backend.get`
        gives a named one's: the read-back of a blob before :meth:`commit` names it. The move
        writes no bytes (it is the server's rename: ``commit``), so what was read here is what
        the name holds once committed; :class:`BlobNotFound` when it is not in ``tmp/``."""

    def make_folders(self, folders: Iterable[str]) -> None:
        """Make these folders (``""``: the root; ``tmp`` may be one), in this order, for a set
        being created: rclone's WebDAV backend makes a missing parent folder with three more
        requests per put (MKCOL refused, PROPFIND, MKCOL of its parent), and more when several
        puts find it missing at once. Existing folders are fine; nothing is written."""


def can_stage(backend: object) -> bool:
    """Whether ``backend`` stages and commits puts as two calls (:class:`Stages`). Only a backend
    whose class says so: a wrapper that hands unknown calls on with ``__getattr__`` (the agent's
    byte counter) would let staged bytes pass it by, so it keeps plain puts until it stages itself."""
    return hasattr(type(backend), "can_stage") and bool(backend.can_stage)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob: its name and its size in bytes."""

    name: str
    size: int


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is a blob name Plugback writes (see the module docstring)."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        return False
    parts = name.split("/")
    return (len(parts) <= MAX_PARTS and parts[0] != TMP
            and all(_PART.fullmatch(p) and not p.endswith(".") and p.split(".")[0].upper() not in _WINDOWS_DEVICES
                    for p in parts))


def check_name(name: object) -> str:
    """``name`` when it is a valid blob name; :class:`BadBlobName` (before anything is touched) otherwise."""
    if not is_valid_name(name):
        raise BadBlobName(name=repr(name)[:300] if not isinstance(name, str) else name[:300])
    return name  # type: ignore[return-value]


def check_folder(folder: str) -> str:
    """A folder to list: ``""`` (everything) or a valid name, with or without a trailing ``/``."""
    folder = folder.rstrip("/") if isinstance(folder, str) else folder
    return "" if folder == "" else check_name(folder)


def chunks_of(data: Source) -> Iterable[bytes]:
    """The content of a :data:`Source` as chunks (a fresh stream each call)."""
    return (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data()


@runtime_checkable
class Backend(Protocol):
    """Immutable named blobs under one root; the guarantees are in this module's docstring.

    Thread-safe: the engine's copy workers call one backend from several threads.
    """

    where: str
    """The root as the user knows it, for messages (a folder, ``rclone:REMOTE:PATH``)."""

    def put(self, name: str, data: Source) -> None:
        """Store ``data`` under ``name`` atomically (see the module docstring)."""

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        """The blob's bytes from ``offset`` on, as chunks. The blob is opened before this returns
        (a missing one raises :class:`BlobNotFound` here); close the generator (or read it to
        the end) to free the file or connection."""

    def stat(self, name: str) -> BlobInfo:
        """The blob's size; :class:`BlobNotFound` when there is none."""

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        """Every blob under ``folder`` (all levels below it; ``""``: all), streamed folder by
        folder in path-component order (``name.split("/")`` ascending: each folder's entries
        sorted, a subfolder's blobs where its name sorts). A missing folder lists nothing. In-flight
        puts (``tmp/``) and names Plugback could not have written are not listed."""

    def delete(self, name: str) -> None:
        """Remove the blob; a name that is not there is fine (a resumed prune deletes again)."""

    def clean_partial(self) -> None:
        """Remove what interrupted puts left in ``tmp/``. Only while holding the set's lock
        (another writer's in-flight puts live there too), when a run starts: an upload given up
        a moment ago may still be winding down inside rclone and leave its part behind."""

    def close(self) -> None:
        """Release processes and connections; the backend is not used afterwards."""


def read_all(backend: Backend, name: str, limit: int) -> bytes:
    """A small blob's whole content (metadata, a lock), refused when it is larger than ``limit``:
    the storage is untrusted and a huge blob must not exhaust memory."""
    out = bytearray()
    gen = backend.get(name)
    try:
        for chunk in gen:
            out += chunk
            if len(out) > limit:
                raise DriveFileDamaged(path=f"{backend.where} {name}", reason=f"larger than {limit} bytes")
    finally:
        gen.close()
    return bytes(out)


def consume(chunks: Iterator[bytes]) -> int:
    """Read a stream to its end; its length in bytes (tests and benchmarks)."""
    return sum(len(c) for c in chunks)
