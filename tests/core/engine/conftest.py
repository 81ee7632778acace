"""Fixtures shared by the engine's tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def listed(monkeypatch):
    """The folders a run's scan lists below the test's source (a path with '/Data'), in order: its
    ``os.scandir`` calls, and on POSIX ``scan.children``'s listings through a descriptor
    (``scan.lstat_listing``; the fused full scan's own calls of it are not counted, as before)."""
    from core.engine import scan

    calls: list[str] = []
    real, real_lstat_listing = os.scandir, scan.lstat_listing

    def scandir(path="."):
        if not isinstance(path, int) and "/Data" in os.fspath(path):
            calls.append(os.fspath(path))
        return real(path)

    def lstat_listing(folder, *args, **kwargs):
        if "/Data" in folder:
            calls.append(folder)
        return real_lstat_listing(folder, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(scan, "lstat_listing", lstat_listing)
    return calls
