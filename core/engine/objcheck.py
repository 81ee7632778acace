"""Reading back one stored copy from the drive and checking it (core/engine/readback.py, and the
seal workers of core/engine/sealpool.py, which read back the small objects of an encrypted set).

Lean on purpose: a seal worker (``python -S``) imports this, crypto and fs, nothing of the CLI.
Both callers check a copy the same way, through these functions: its files opened as regular
files, never through a symlink (``safeio.open_regular``), their cached pages dropped and their
reads started; then read whole (an encrypted object of a small file) or in blocks, decrypted and
authenticated, and hashed; the SHA-256 and the size compared with what the manifest records.
"""

from __future__ import annotations

import hashlib
import os

from core.engine import safeio
from core.engine.fs import drop_cache, read_ahead, read_into
from core.errors import DamagedSet

MISSING = "its content is missing from the drive"
BIG = 1 << 20                     # a copy this big is read back in blocks, not whole
SMALL_OBJECT = BIG + (64 << 10)   # encrypted: an object up to this size is read whole in one call


def _content_error(path: str, reason: str) -> DamagedSet:
    return DamagedSet(what=f"{path}: {reason}")   # (as repo words a damaged content file)


class Opened(list):
    """The descriptors :func:`open_copy` opened, and ``size``: their files' sizes summed (``fstat``)."""

    size = 0


def open_copy(paths: list) -> Opened | str:
    """Descriptors of a copy this run wrote (each checked a regular file, never through a symlink:
    ``safeio.open_written``) with their cache dropped and their reads started; or why the copy
    cannot be read (as ``verify.check_entry`` words it)."""
    if not paths:
        return MISSING
    fds = Opened()
    try:
        for p in paths:
            fd, size = safeio.open_written(p, error=_content_error)
            fds.append(fd)
            fds.size += size
            if size:   # (an empty file has nothing cached and nothing to read)
                drop_cache(fd)
                read_ahead(fd)
    except DamagedSet as err:
        close(fds)
        return str(err)
    except (FileNotFoundError, NotADirectoryError):
        close(fds)
        return MISSING
    except OSError as err:
        close(fds)
        return f"it cannot be read ({err.strerror or err})"
    except BaseException:
        close(fds)
        raise
    return fds


def close(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def verdict(size: int, sha256: str, want_size: int, want_sha256: str | None) -> str | None:
    """What is wrong with a copy that read back ``size`` bytes hashing to ``sha256`` where the
    manifest records ``want_size`` and ``want_sha256`` (as check_entry words it), or None."""
    if size != want_size:
        return f"it has {size} bytes instead of {want_size}"
    if sha256 != want_sha256:
        return "its content does not match its checksum (changed or damaged on the drive)"
    return None


def check_object(keys, fds: list[int], buf: memoryview, obj: str | None, sha256: str | None, size: int,
                 *, named: bool = False) -> str | None:
    """Read the encrypted object ``obj`` that :func:`open_copy` opened whole into ``buf`` (closing
    it; ``buf`` of :data:`SMALL_OBJECT` + 1 bytes), decrypt and authenticate it, and compare its
    plaintext's SHA-256 and size with ``sha256`` and ``size``: what is wrong, or None. ``named``:
    also check that the plaintext's keyed name is ``obj`` (the seal workers do: their answer is
    where the run got ``obj`` from). An object of a small file holds at most its size, a header
    and a tag, plus a few bytes where zstd could not shrink it: one past :data:`SMALL_OBJECT` is
    damage, read no further.

    An object in one file whose ``fstat`` size :func:`open_copy` found (``Opened.size``) is read
    to that size and no further (no read at its end): one too big is damage without a read; one
    that comes back short (cut after the ``fstat``) fails its authentication. An object in parts,
    or ``fds`` without a size, is read to the end of each file."""
    known = getattr(fds, "size", None) if len(fds) == 1 else None
    if known is not None and known >= len(buf):
        close(fds)
        return _too_big(size)
    got = 0
    try:
        if known is not None:
            view = buf[:known]
            while got < known and (n := read_into(fds[0], view[got:])):
                got += n
        else:
            for fd in fds:
                while got < len(buf) and (n := read_into(fd, buf[got:])):
                    got += n
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    finally:
        close(fds)
    if got >= len(buf):
        return _too_big(size)
    return _opened(keys, buf[:got], obj, sha256, size, named)


def _too_big(size: int) -> str:
    return f"its stored copy is bigger than {size} bytes of content can make it (damaged on the drive)"


def _opened(keys, blob: memoryview, obj: str | None, sha256: str | None, size: int, named: bool) -> str | None:
    """Decrypt, authenticate and hash the object ``blob`` read whole (see :func:`check_object`)."""
    from core.engine import crypto

    digest, n = hashlib.sha256(), 0
    try:
        for block in crypto.open_whole(keys, blob, name=f"objects/{obj}", max_size=size):
            digest.update(block)
            n += len(block)
    except DamagedSet as err:
        return str(err)
    hexdigest = digest.hexdigest()
    wrong = verdict(n, hexdigest, size, sha256)
    if wrong is None and named and keys.object_name(hexdigest) != obj:
        return "its content does not match its name (changed or damaged on the drive)"
    return wrong
