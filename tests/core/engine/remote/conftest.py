"""Fixtures of the remote-set tests: Debian's rclone against real storage the test starts itself.

``world``: a temp rclone config (``RCLONE_CONFIG`` for the test) with a ``loc`` remote
(rclone's ``local`` backend) and a ``wd`` remote (``rclone serve webdav`` on 127.0.0.1
over a temp folder). ``where`` opens a fresh remote folder on one of the three kinds of
storage (the folder itself, ``rclone-local``, ``rclone-webdav``) and says where its
bytes really are, so a test can look behind the backend's back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.engine.progress import FakeClock
from core.engine.storage import Backend, LocalBackend, RcloneBackend, Retrying
from tests.support.rclone import FAST_FAIL, RcloneWorld, local_and_webdav

_folders = itertools.count()


@dataclass
class Place:
    """A remote folder for one set: its spec, the real folder behind it, and a backend on it."""

    kind: str
    spec: str
    root: Path

    def backend(self) -> Backend:
        if self.kind == "local":
            return LocalBackend(self.root)
        # Retries on a fake clock: a dead server fails at once instead of backing off for minutes.
        return Retrying(RcloneBackend(self.spec, extra_args=FAST_FAIL), FakeClock(), attempts=2)


@pytest.fixture(scope="module")
def rclone_world(tmp_path_factory):
    with local_and_webdav(tmp_path_factory.mktemp("rclone")) as world:
        yield world


@pytest.fixture
def world(rclone_world, monkeypatch) -> RcloneWorld:
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_world.config))
    if rclone_world.webdav.proc is None:
        rclone_world.webdav.restart()
    return rclone_world


def place(kind: str, tmp_path: Path, request) -> Place:
    if kind == "local":
        return Place(kind, str(tmp_path / "set"), tmp_path / "set")
    w = request.getfixturevalue("world")
    if kind == "rclone-local":
        return Place(kind, f"rclone:loc:{tmp_path / 'set'}", tmp_path / "set")
    folder = f"set{next(_folders)}"
    return Place(kind, f"rclone:wd:{folder}", w.webdav.folder / folder)


@pytest.fixture
def webdav(request, tmp_path) -> Place:
    """A fresh folder on the WebDAV remote."""
    return place("rclone-webdav", tmp_path, request)
