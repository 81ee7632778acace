"""Timing and peak memory of one benchmarked command (the command and every process it starts).

Peak RSS is measured two ways and the larger is kept:

* a sampler thread sums the resident set of the command's whole process tree
  (the process and all its descendants, via psutil) every 20 ms and keeps the
  highest sum: this sees worker processes, but can miss a spike shorter than
  20 ms, and counts pages shared between processes once per process;
* ``wait4`` returns the kernel's own high-water mark (``ru_maxrss``) of the
  command's largest single process: exact for a tool that is one process,
  even for spikes the sampler missed.

Without psutil only the second is available (the report says so).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

try:
    import psutil
except ImportError:  # the bench still runs; peak RSS is then the largest single process's
    psutil = None

SAMPLE_SECONDS = 0.02
RSS_METHOD = ("max of: the whole process tree's RSS summed (psutil, sampled every 20 ms) and the "
              "largest single process's kernel high-water mark (wait4 ru_maxrss)")
if psutil is None:
    RSS_METHOD = "largest single process's kernel high-water mark (wait4 ru_maxrss); psutil missing"


class _TreeSampler(threading.Thread):
    """Polls the summed RSS of a process and its descendants until stopped; keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        known: dict[int, psutil.Process] = {self.pid: root}
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
            self.samples += 1
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def timed(argv: list[str], logfile: Path, timeout: float, *, env: dict | None = None,
          cwd: Path | None = None) -> dict:
    """Run one command (plus a sync); wall and CPU seconds (children included) and peak RSS in bytes."""
    start = time.perf_counter()
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = _TreeSampler(proc.pid) if psutil is not None else None
        if sampler:
            sampler.start()
        rc, usage = _wait(proc, timeout)
        tree_peak = sampler.stop() if sampler else 0
    os.sync()
    elapsed = time.perf_counter() - start
    # wait4's rusage covers the command and every descendant it waited for; ru_maxrss is in KiB.
    single_peak = usage.ru_maxrss * 1024 if usage else 0
    cpu = (usage.ru_utime + usage.ru_stime) if usage else 0.0
    return {"wall": round(elapsed, 3), "cpu": round(cpu, 3), "rc": rc,
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
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return "timeout", usage
        time.sleep(0.005)


def du(path: Path) -> int:
    """Bytes allocated on disk under path (hard links counted once)."""
    # du(1) is much faster than a Python walk at a million files.
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])
