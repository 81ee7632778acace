"""Wrappers around a backend: retries with backoff, and rate limits.

They are backends themselves, so they stack (``Retrying(RateLimited(RcloneBackend(...)))``)
and the engine never knows. Time comes from a :class:`core.engine.progress.Clock`
(tests pass a ``FakeClock``: a backoff then takes no real time).

Only transient errors are retried (``StorageError.transient``: a refused, reset or
timed-out connection, HTTP 5xx or 429, rclone restarting). A missing blob, a
refused login, a full remote, a bad name or a full or removed drive fail at once:
trying again cannot help and would only hide the message.

``Retrying(fail_fast=True)`` is for what a person waits on (the window's browse, unlock,
Test connection): an error that says the remote cannot be reached at all (connection
refused, a name that does not resolve, no route to the network) fails at once, as
"Can't reach REMOTE: ...", instead of after the whole backoff; backups keep their retries.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from typing import Callable, Generator, Iterable, Iterator

from core.engine.progress import Clock
from core.engine.storage.base import Backend, BlobInfo, Source, Staged, can_stage, chunks_of
from core.errors import BlobNotFound, PlugbackError, RemoteUnavailable

log = logging.getLogger(__name__)

# What the network stack says when nothing answers at that address (rclone passes Go's words on).
_UNREACHABLE = re.compile(r"connection refused|no such host|network is unreachable|no route to host|"
                          r"host is unreachable|name or service not known|name resolution|"
                          r"dial tcp[^\n]*i/o timeout", re.I)


def is_transient(err: BaseException) -> bool:
    """Whether trying again later can help with ``err``."""
    return isinstance(err, PlugbackError) and getattr(err, "transient", False) is True


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the remote cannot be reached at all (not a busy or failing server)."""
    return isinstance(err, RemoteUnavailable) and bool(_UNREACHABLE.search(str(err.details.get("reason", ""))))


def unreachable(err: RemoteUnavailable) -> RemoteUnavailable:
    """``err`` told as "Can't reach REMOTE: what the network said" (same code: the window shows it alike)."""
    where, reason = str(err.details.get("where", "")), str(err.details.get("reason", ""))
    try:
        reason = str(json.loads(reason).get("error", reason))   # (a download's reply: rclone's JSON)
    except (ValueError, AttributeError):
        pass
    said = reason[reason.find("dial "):] if "dial " in reason else reason.removeprefix("failed to make Fs: ")
    return RemoteUnavailable(f"Can't reach {where}: {said}. Nothing was changed; check the network connection "
                             "and that the server is up, then try again.", where=where, reason=reason)


class Retrying:
    """Retries transient failures of ``inner`` with exponential backoff and jitter.

    ``attempts``: tries per operation in all; the waits grow from ``first_wait`` by
    ``factor`` up to ``max_wait`` seconds. A ``get`` cut off part-way continues from
    the last byte it delivered; a ``list`` cut off part-way starts again and skips the
    names it already gave. ``fail_fast``: an unreachable remote (:func:`is_unreachable`) is not
    retried but raised at once as :func:`unreachable` (a person waits); it may be turned off
    later (once a set opened, a long restore keeps its retries).
    """

    def __init__(self, inner: Backend, clock: Clock | None = None, *, attempts: int = 6,
                 first_wait: float = 0.5, factor: float = 2.0, max_wait: float = 30.0,
                 rng: random.Random | None = None, fail_fast: bool = False):
        self.inner = inner
        self.fail_fast = fail_fast
        self.where = inner.where
        self.clock = clock or Clock()
        self.attempts = attempts
        self.first_wait, self.factor, self.max_wait = first_wait, factor, max_wait
        self._rng = rng or random.Random()
        self.retries = 0                # how many retries happened (progress and tests)

    def _run(self, what: str, fn: Callable):
        wait = self.first_wait
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as err:
                self._at_once(err)
                if not is_transient(err) or attempt == self.attempts:
                    raise
                pause = min(self.max_wait, wait) * (0.5 + self._rng.random() / 2)
                log.info("%s on %s failed (%s); trying again in %.1f s", what, self.where, err, pause)
                self.retries += 1
                self.clock.sleep(pause)
                wait *= self.factor
        raise AssertionError("not reached")

    def _at_once(self, err: Exception) -> None:
        """With ``fail_fast``, an unreachable remote's error, told as such, now."""
        if self.fail_fast and is_unreachable(err):
            assert isinstance(err, RemoteUnavailable)
            raise unreachable(err) from err

    def put(self, name: str, data: Source) -> None:
        # data is bytes or a function that opens the stream again: each attempt sends it whole.
        self._run(f"storing {name}", lambda: self.inner.put(name, data))

    # base.Stages, when the wrapped backend stages (a retried stage uploads again, to a new place)
    @property
    def can_stage(self) -> bool:
        return can_stage(self.inner)

    def stage(self, name: str, data: Source) -> Staged:
        return self._run(f"storing {name}", lambda: self.inner.stage(name, data))   # type: ignore[attr-defined]

    def commit(self, staged: Staged) -> None:
        tried = [False]

        def once() -> None:
            try:
                self.inner.commit(staged)   # type: ignore[attr-defined]
            except BlobNotFound:
                if not tried[0]:
                    raise
                # A try whose answer was lost had moved it: the name is there (read back by the caller).
                self.inner.stat(staged.name)
            finally:
                tried[0] = True

        self._run(f"storing {staged.name}", once)

    def discard(self, staged: Staged) -> None:
        self._run(f"removing an unfinished upload of {staged.name}", lambda: self.inner.discard(staged))  # type: ignore[attr-defined]

    def make_folders(self, folders: Iterable[str]) -> None:
        folders = tuple(folders)      # (each try makes them all)
        self._run("making the set's folders", lambda: self.inner.make_folders(folders))  # type: ignore[attr-defined]

    def read_staged(self, staged: Staged, offset: int = 0) -> Generator[bytes, None, None]:
        def reopen(at: int) -> Generator[bytes, None, None]:
            return self.inner.read_staged(staged, at)   # type: ignore[attr-defined]

        return self._resuming(staged.name, offset, self._run(f"reading {staged.name}", lambda: reopen(offset)), reopen)

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        first = self._run(f"reading {name}", lambda: self.inner.get(name, offset))
        return self._resuming(name, offset, first)

    def _resuming(self, name: str, offset: int, gen: Generator[bytes, None, None],
                  reopen: Callable[[int], Generator[bytes, None, None]] | None = None) -> Generator[bytes, None, None]:
        """``gen``'s chunks; a transient failure part-way opens the blob again where it stopped
        (``reopen(offset)``: ``inner.get`` by default)."""
        reopen = reopen or (lambda at: self.inner.get(name, at))
        done = offset
        failures = 0
        try:
            while True:
                try:
                    chunk = next(gen)
                except StopIteration:
                    return
                except Exception as err:
                    self._at_once(err)
                    failures += 1
                    if not is_transient(err) or failures >= self.attempts:
                        raise
                    gen.close()
                    self.retries += 1
                    self.clock.sleep(min(self.max_wait, self.first_wait * self.factor ** (failures - 1)))
                    gen = self._run(f"reading {name}", lambda at=done: reopen(at))
                    continue
                done += len(chunk)
                yield chunk
        finally:
            gen.close()

    def stat(self, name: str) -> BlobInfo:
        return self._run(f"looking up {name}", lambda: self.inner.stat(name))

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        # Listings come in path-component order (base.Backend.list), so a retry skips up to the
        # last name given: no set of every name (memory stays flat in the blob count).
        last: list[str] | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                for info in self.inner.list(folder):
                    key = info.name.split("/")
                    if last is None or key > last:
                        last = key
                        yield info
                return
            except Exception as err:
                self._at_once(err)
                if not is_transient(err) or attempt == self.attempts:
                    raise
                self.retries += 1
                self.clock.sleep(min(self.max_wait, self.first_wait * self.factor ** (attempt - 1)))

    def delete(self, name: str) -> None:
        self._run(f"deleting {name}", lambda: self.inner.delete(name))

    def clean_partial(self) -> None:
        self._run("clearing unfinished uploads", self.inner.clean_partial)

    def close(self) -> None:
        self.inner.close()


class _Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: float, clock: Clock):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.stamp = clock.monotonic()
        self._mutex = threading.Lock()

    def take(self, n: float) -> None:
        with self._mutex:
            now = self.clock.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            owed = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if owed > 0:
            self.clock.sleep(owed)


class RateLimited:
    """Limits ``inner`` to ``ops_per_second`` operations (a burst of ``burst``) and, when given,
    ``bytes_per_second`` of uploads and downloads together (providers' request limits, a
    user's bandwidth setting). ``None``: no limit of that kind."""

    def __init__(self, inner: Backend, clock: Clock | None = None, *, ops_per_second: float | None = None,
                 burst: int = 10, bytes_per_second: float | None = None):
        self.inner = inner
        self.where = inner.where
        clock = clock or Clock()
        self._ops = _Bucket(ops_per_second, burst, clock) if ops_per_second else None
        self._bytes = _Bucket(bytes_per_second, bytes_per_second, clock) if bytes_per_second else None

    def _op(self) -> None:
        if self._ops is not None:
            self._ops.take(1)

    def _metered(self, chunks) -> Iterator[bytes]:
        for chunk in chunks:
            if self._bytes is not None:
                self._bytes.take(len(chunk))
            yield chunk

    def put(self, name: str, data: Source) -> None:
        self._op()
        self.inner.put(name, data if self._bytes is None else (lambda: self._metered(chunks_of(data))))

    @property
    def can_stage(self) -> bool:
        return can_stage(self.inner)

    def stage(self, name: str, data: Source) -> Staged:
        self._op()
        return self.inner.stage(name, data if self._bytes is None   # type: ignore[attr-defined]
                                else (lambda: self._metered(chunks_of(data))))

    def commit(self, staged: Staged) -> None:
        self._op()
        self.inner.commit(staged)   # type: ignore[attr-defined]

    def discard(self, staged: Staged) -> None:
        self._op()
        self.inner.discard(staged)   # type: ignore[attr-defined]

    def read_staged(self, staged: Staged, offset: int = 0) -> Generator[bytes, None, None]:
        self._op()
        gen = self.inner.read_staged(staged, offset)   # type: ignore[attr-defined]
        return gen if self._bytes is None else self._metered_get(gen)

    def make_folders(self, folders: Iterable[str]) -> None:
        self._op()
        self.inner.make_folders(folders)   # type: ignore[attr-defined]

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        self._op()
        gen = self.inner.get(name, offset)
        return gen if self._bytes is None else self._metered_get(gen)

    def _metered_get(self, gen: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
        try:
            yield from self._metered(gen)
        finally:
            gen.close()

    def stat(self, name: str) -> BlobInfo:
        self._op()
        return self.inner.stat(name)

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        self._op()
        return self.inner.list(folder)

    def delete(self, name: str) -> None:
        self._op()
        self.inner.delete(name)

    def clean_partial(self) -> None:
        self._op()
        self.inner.clean_partial()

    def close(self) -> None:
        self.inner.close()
