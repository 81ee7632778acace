"""A volume listing that hangs, like statvfs on a dead NFS share (the drive-listing and watcher tests)."""

import threading


class HangingListing:
    """A listing that hangs (like statvfs on a dead NFS share) on the calls in ``hang_on``."""

    def __init__(self, result=frozenset(), hang_on=(2,)):
        self.result, self.hang_on = result, set(hang_on)
        self.calls = 0
        self.release = threading.Event()

    def __call__(self):
        self.calls += 1
        if self.calls in self.hang_on:
            self.release.wait(60)
        return self.result
