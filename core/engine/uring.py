"""Many small reads handed to the kernel in one system call: a minimal io_uring (Linux ≥ 5.6) through ctypes.

``verify --read-all`` reads tens of thousands of tiny files of ``Latest/``, one block request
each. Read one ``readv`` at a time, every request goes to the drive on its own (on a VM: a
notification, an exit, per request), and the reads in flight come only from more threads (the GIL
handed between them). A :class:`Ring` takes the reads of a group of files that are already open
(their page cache dropped: ``readpool.Checker``) and submits them in one ``io_uring_enter``: the
block layer plugs them together, so the requests of files written one after another on the drive
are merged into fewer, larger ones, and the device is told once; then it waits for all of them.

Only ``IORING_OP_READ`` of open descriptors into one buffer this process owns; nothing is opened
through the ring (the checks before each open stay in Python). Every read submitted is waited for
before :meth:`Ring.read` returns (the kernel writes into the buffer until then), and closing the
ring's descriptor ends it. :func:`open_ring` answers None where there is no io_uring (another
system, an old kernel, ``kernel.io_uring_disabled``, a container's seccomp filter): the caller then
reads one file at a time as before.
"""

from __future__ import annotations

import errno
import struct
import sys

_SQE = struct.Struct("<BBHiQQIIQHHiQQ")   # struct io_uring_sqe (64 bytes)
_CQE = struct.Struct("<QiI")              # struct io_uring_cqe (16 bytes)
_U32 = struct.Struct("<I")
_OP_READ = 22                             # IORING_OP_READ (5.6)
_ENTER_GETEVENTS = 1
_OFF_SQES = 0x10000000
_FEAT_SINGLE_MMAP = 1


class Ring:
    """One submission and completion queue of ``entries`` reads (one per thread: not shared)."""

    def __init__(self, fd: int, ring, sqes, params, syscall) -> None:
        self.fd, self._ring, self._sqes, self._syscall = fd, ring, sqes, syscall
        self.entries = params.sq_entries
        sq, cq = params.sq_off, params.cq_off
        self._sq_tail, self._sq_mask = sq.tail, _U32.unpack_from(ring, sq.ring_mask)[0]
        self._cq_head, self._cq_tail, self._cqes = cq.head, cq.tail, cq.cqes
        self._cq_mask = _U32.unpack_from(ring, cq.ring_mask)[0]
        for i in range(self.entries):   # the submission array: slot i holds entry i, always
            _U32.pack_into(ring, sq.array + 4 * i, i)

    def read(self, reqs: list[tuple[int, int, int]]) -> list[int]:
        """Each ``(fd, address, length)`` read from offset 0 into memory at ``address``; the bytes
        each read, or ``-errno``, in order. At most :attr:`entries` at a time; all of them have
        completed when this returns (or raises: then the ring is unusable and closed)."""
        assert 0 < len(reqs) <= self.entries
        ring = self._ring
        tail = _U32.unpack_from(ring, self._sq_tail)[0]
        for i, (fd, address, length) in enumerate(reqs):
            _SQE.pack_into(self._sqes, ((tail + i) & self._sq_mask) * 64,
                           _OP_READ, 0, 0, fd, 0, address, length, 0, i, 0, 0, 0, 0, 0)
        _U32.pack_into(ring, self._sq_tail, (tail + len(reqs)) & 0xFFFFFFFF)   # (read by the kernel in the call)
        results: list[int | None] = [None] * len(reqs)
        waiting, submit = len(reqs), len(reqs)
        while waiting:
            got = self._syscall(426, self.fd, submit, waiting, _ENTER_GETEVENTS, None, 0)
            if got < 0:
                err = self._errno()
                if err in (errno.EINTR, errno.EAGAIN, errno.EBUSY):   # (that call submitted nothing)
                    continue
                self.close()   # (the reads still in flight are ended with the ring)
                raise OSError(err, "io_uring_enter")
            submit -= min(submit, got)
            head = _U32.unpack_from(ring, self._cq_head)[0]
            end = _U32.unpack_from(ring, self._cq_tail)[0]
            while head != end:
                i, res, _flags = _CQE.unpack_from(ring, self._cqes + (head & self._cq_mask) * 16)
                if results[i] is None:
                    waiting -= 1
                results[i] = res
                head = (head + 1) & 0xFFFFFFFF
            _U32.pack_into(ring, self._cq_head, head)
        return [r if r is not None else -errno.EIO for r in results]

    @staticmethod
    def _errno() -> int:
        import ctypes

        return ctypes.get_errno()

    def close(self) -> None:
        if self.fd >= 0:
            import os

            self._sqes.close()
            self._ring.close()
            os.close(self.fd)
            self.fd = -1


if sys.platform == "linux":
    def open_ring(entries: int) -> Ring | None:
        """A :class:`Ring` of ``entries`` reads, or None where io_uring cannot be had."""
        try:
            return _setup(entries)
        except (OSError, AttributeError, ValueError, ImportError):
            return None

    def _setup(entries: int) -> Ring | None:
        import ctypes
        import mmap
        import os

        u32 = ctypes.c_uint32

        class SqOff(ctypes.Structure):
            _fields_ = [(n, u32) for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped",
                                           "array", "resv1")] + [("user_addr", ctypes.c_uint64)]

        class CqOff(ctypes.Structure):
            _fields_ = [(n, u32) for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes",
                                           "flags", "resv1")] + [("user_addr", ctypes.c_uint64)]

        class Params(ctypes.Structure):
            _fields_ = [("sq_entries", u32), ("cq_entries", u32), ("flags", u32), ("sq_thread_cpu", u32),
                        ("sq_thread_idle", u32), ("features", u32), ("wq_fd", u32), ("resv", ctypes.c_uint32 * 3),
                        ("sq_off", SqOff), ("cq_off", CqOff)]

        if os.uname().machine not in ("x86_64", "aarch64"):   # (the system call numbers below)
            return None
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        syscall.restype = ctypes.c_long
        params = Params()
        fd = syscall(425, entries, ctypes.byref(params))   # io_uring_setup
        if fd < 0:
            return None
        try:
            if not params.features & _FEAT_SINGLE_MMAP:   # (5.4+: the rings in one mapping)
                raise OSError(errno.ENOSYS, "io_uring without IORING_FEAT_SINGLE_MMAP")
            size = max(params.sq_off.array + params.sq_entries * 4, params.cq_off.cqes + params.cq_entries * 16)
            share, prot = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), mmap.PROT_READ | mmap.PROT_WRITE
            ring = mmap.mmap(fd, size, share, prot, offset=0)
            sqes = mmap.mmap(fd, params.sq_entries * 64, share, prot, offset=_OFF_SQES)
        except BaseException:
            os.close(fd)
            raise
        return Ring(fd, ring, sqes, params, syscall)
else:
    def open_ring(entries: int) -> Ring | None:
        """No io_uring on this system."""
        return None
