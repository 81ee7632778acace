"""Waiting for something another process or thread does, with a deadline and a clear failure."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
