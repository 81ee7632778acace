"""The pieces of a run's one sorted pass: merging two sorted streams, and a bounded window of
work in flight whose results leave in the order the work came in.

Memory stays flat in the number of files: what waits is at most the window.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future
from typing import Callable, Iterable, Iterator, TypeVar

from core.engine.manifest import sort_key

T = TypeVar("T")
R = TypeVar("R")


def merge(scanned: Iterable, parent: Iterable) -> Iterator[tuple]:
    """``(scan entry or None, parent entry or None)`` pairs, one per path of either stream.

    Both streams are sorted by ``sort_key`` of their ``.path`` (strictly: the scan by
    construction, a manifest by its checked order), so one look-ahead on each is enough.
    """
    a, b = iter(scanned), iter(parent)
    x, y = next(a, None), next(b, None)
    # A stream that has ended keeps the key [] (never compared: its entry is None).
    kx = sort_key(x.path) if x is not None else []
    ky = sort_key(y.path) if y is not None else []
    while x is not None or y is not None:
        if y is None or (x is not None and kx < ky):
            yield x, None
            x = next(a, None)
            kx = sort_key(x.path) if x is not None else []
        elif x is None or ky < kx:
            yield None, y
            y = next(b, None)
            ky = sort_key(y.path) if y is not None else []
        else:
            yield x, y
            x, y = next(a, None), next(b, None)
            kx = sort_key(x.path) if x is not None else []
            ky = sort_key(y.path) if y is not None else []


class Window:
    """Items leave (to ``emit(item, result)``) in the order they were put, each once its job
    (if any) has finished in ``pool``; at most ``max_items`` items and ``max_weight`` of
    jobs' weight wait (always at least one). A job's exception is raised by the call
    that would have emitted its item.
    """

    def __init__(self, pool: Executor, emit: Callable, max_items: int, max_weight: int):
        self.pool = pool
        self.emit = emit
        self.max_items = max_items
        self.max_weight = max_weight
        self._queue: deque[tuple[object, Future | None, int, object]] = deque()
        self._weight = 0

    def put(self, item, job: Callable[[], object] | None = None, weight: int = 0, result: object = None) -> None:
        """Queue ``item``; ``job`` (run in the pool) must finish before it leaves. Without a job,
        ``result`` is what ``emit`` gets (work done in the caller's thread: small files, where a
        hand-off to the pool costs more than the work)."""
        if job is None and not self._queue:
            self.emit(item, result)   # nothing before it waits: out at once
            return
        future = self.pool.submit(job) if job is not None else None
        self._queue.append((item, future, weight, result))
        self._weight += weight
        self._pop_ready()
        while self._queue and (len(self._queue) > self.max_items or self._weight > self.max_weight):
            self._pop()

    def _pop_ready(self) -> None:
        while self._queue and (self._queue[0][1] is None or self._queue[0][1].done()):
            self._pop()

    def _pop(self) -> None:
        item, future, weight, result = self._queue[0]
        if future is not None:
            result = future.result()   # waits; raises the job's error
        self._queue.popleft()
        self._weight -= weight
        self.emit(item, result)

    def drain(self) -> None:
        """Wait for every job and emit everything still queued."""
        while self._queue:
            self._pop()


def ordered_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the order of ``items``, at most ``window`` of them in flight."""
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


def lookahead(items: Iterable[T], n: int, see: Callable[[T], object]) -> Iterator[T]:
    """``items`` unchanged, each shown to ``see`` as soon as it is taken, ``n`` items before it is
    yielded (a backup starts reading the files it will copy next: backup._Run._prefetch)."""
    ahead: deque = deque()
    for item in items:
        ahead.append(item)
        see(item)
        if len(ahead) > n:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), for handing work to threads in batches."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
