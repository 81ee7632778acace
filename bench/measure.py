"""Timing and peak memory of one benchmarked command (the command and every process it starts).

Peak RSS is measured two ways and the larger is kept:

* a sampler thread sums the resident set of the command's whole process tree
  (the command and all its descendants, via psutil) every 20 ms and keeps the
  highest sum: this sees worker processes, but can miss a spike shorter than
  20 ms, and counts pages shared between processes once per process;
* ``/usr/bin/time -f %M`` runs the command and reports the kernel's own
  high-water mark of its largest single process: exact for a tool that is one
  process, even for spikes the sampler missed.

Why GNU time and not our own ``wait4``: a child forked from this Python
process inherits its high-water mark across ``exec`` (about 30 MB), so
``ru_maxrss`` of a small tool like cp would report the benchmark's own size.
GNU time is a small C program, so what it inherits is about 2 MB. Without
/usr/bin/time, ``wait4`` is used and small tools read high (the report says so).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

try:
    import psutil
except ImportError:  # the bench still runs; peak RSS is then the largest single process's
    psutil = None

SAMPLE_SECONDS = 0.02
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) and shutil.which("time") else None
_TREE = "the whole process tree's RSS summed (psutil, sampled every 20 ms)"
_SINGLE = ("the largest single process's kernel high-water mark (/usr/bin/time -f %M)" if GNU_TIME else
           "the largest single process's kernel high-water mark (wait4; /usr/bin/time missing, so a "
           "small tool reads about 30 MB high: the benchmark's own size, inherited across fork)")
RSS_METHOD = f"max of: {_TREE} and {_SINGLE}" if psutil is not None else f"{_SINGLE}; psutil missing"


class _TreeSampler(threading.Thread):
    """Polls the summed RSS of a process and its descendants until stopped; keeps the peak."""

    def __init__(self, pid: int, *, count_root: bool):
        super().__init__(daemon=True)
        self.pid = pid
        self.count_root = count_root  # False when the root is /usr/bin/time, not the tool
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        known: dict[int, psutil.Process] = {self.pid: root} if self.count_root else {}
        while not self._done.is_set():
            try:
                for child in root.children(recursive=True):
                    known.setdefault(child.pid, child)
            except psutil.Error:
                pass
            total = 0
            for pid, proc in list(known.items()):
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # ended (or became a zombie) since the last sample
                    known.pop(pid, None)
            self.peak = max(self.peak, total)
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def timed(argv: list[str], logfile: Path, timeout: float, *, env: dict | None = None,
          cwd: Path | None = None) -> dict:
    """Run one command (plus a sync); wall and CPU seconds (children included) and peak RSS in bytes."""
    maxrss_file = logfile.with_name(logfile.name + ".maxrss")
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", str(maxrss_file), *argv]
    start = time.perf_counter()
    with open(logfile, "wb") as out:
        # Own session: a timeout ends the tool and all it started, not just /usr/bin/time.
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        sampler = _TreeSampler(proc.pid, count_root=not GNU_TIME) if psutil is not None else None
        if sampler:
            sampler.start()
        try:
            rc, usage = _wait(proc, timeout)
        except KeyboardInterrupt:  # its own session does not get the terminal's Ctrl-C
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        tree_peak = sampler.stop() if sampler else 0
    os.sync()
    elapsed = time.perf_counter() - start
    # ru_maxrss and %M are in KiB; wait4's rusage covers every descendant that was waited for.
    single_peak = usage.ru_maxrss * 1024 if usage else 0
    if GNU_TIME:
        try:
            single_peak = int(maxrss_file.read_text().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):  # killed (timeout) before time wrote it
            single_peak = 0
        maxrss_file.unlink(missing_ok=True)
    cpu = (usage.ru_utime + usage.ru_stime) if usage else 0.0
    return {"wall": round(elapsed, 3), "cpu": round(cpu, 3), "rc": rc,
            "user": round(usage.ru_utime, 3) if usage else 0.0, "sys": round(usage.ru_stime, 3) if usage else 0.0,
            "rss": max(tree_peak, single_peak), "rss_tree": tree_peak, "rss_single": single_peak}


def _wait(proc: subprocess.Popen, timeout: float):
    """(exit code or "timeout", rusage) of proc, killing it after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return "timeout", usage
        time.sleep(0.005)


def du(path: Path) -> int:
    """Bytes allocated on disk under path (hard links counted once)."""
    # du(1) is much faster than a Python walk at a million files.
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])
