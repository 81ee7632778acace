"""Fixtures shared by the engine's tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def listed(monkeypatch):
    """The folders a run lists below the test's source (os.scandir calls on a path with '/Data'), in order."""
    calls: list[str] = []
    real = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and "/Data" in os.fspath(path):
            calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return calls
