"""Fixtures of the storage tests: every backend, on real storage.

``subject`` is parametrised over the three backends the conformance suite runs
against: ``local`` (a folder), ``rclone-local`` (Debian's rclone, a ``local``
remote in a temp RCLONE_CONFIG) and ``rclone-webdav`` (rclone talking to
``rclone serve webdav`` on 127.0.0.1 over a temp folder). ``subject.root`` is the
real folder the blobs land in, so a test can look behind the backend's back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.engine.storage import Backend, LocalBackend, RcloneBackend
from core.engine.storage.rclone_rcd import Rcd
from tests.support.rclone import FAST_FAIL, RcloneWorld, WebdavServer, local_and_webdav

BACKENDS = ["local", "rclone-local", "rclone-webdav"]
_paths = itertools.count()


@dataclass
class Subject:
    kind: str
    backend: Backend
    root: Path          # where the blobs really are


@pytest.fixture(scope="module")
def rclone_world(tmp_path_factory):
    """A temp rclone config with a ``loc`` (local) and a ``wd`` (WebDAV on 127.0.0.1) remote."""
    with local_and_webdav(tmp_path_factory.mktemp("rclone")) as world:
        yield world


@pytest.fixture
def rclone_env(rclone_world, monkeypatch) -> RcloneWorld:
    """The world's config as RCLONE_CONFIG (as a user's would be), for this test."""
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_world.config))
    return rclone_world


@pytest.fixture(scope="module")
def shared_rcd(rclone_world):
    """One rclone process for the module's conformance backends (it starts in a few hundred
    ms on a loaded machine; a backend per test is what the rclone-specific tests check)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCLONE_CONFIG", str(rclone_world.config))
        rcd = Rcd(extra_args=FAST_FAIL)
        rcd.call("core/version", {})          # started now, with this config in its environment
    yield rcd
    rcd.close()


def open_subject(kind: str, tmp_path: Path, request) -> Subject:
    if kind == "local":
        return Subject(kind, LocalBackend(tmp_path / "set"), tmp_path / "set")
    world = request.getfixturevalue("rclone_env")
    rcd = request.getfixturevalue("shared_rcd")
    if kind == "rclone-local":
        root = tmp_path / "set"
        return Subject(kind, RcloneBackend(f"rclone:loc:{root}", rcd=rcd), root)
    folder = f"set{next(_paths)}"
    server: WebdavServer = world.webdav
    if server.proc is None:
        server.restart()
    return Subject(kind, RcloneBackend(f"rclone:wd:{folder}", rcd=rcd), server.folder / folder)


@pytest.fixture(params=BACKENDS)
def subject(request, tmp_path):
    """One backend (see the module docstring), closed afterwards."""
    s = open_subject(request.param, tmp_path, request)
    yield s
    s.backend.close()
