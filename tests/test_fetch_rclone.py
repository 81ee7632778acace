"""scripts/fetch_rclone.py — what puts rclone into the Windows and macOS installers — on real
zip archives: only a pinned archive is accepted, only its one program file is written, and the
licence goes with it. (The download itself needs the internet, which CI's release workflow has;
here the archives are made locally and passed with ``--from-zip``.)"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import stat
import zipfile
from pathlib import Path

import pytest

from tests.support.env import repo_root

ROOT = repo_root()
_spec = importlib.util.spec_from_file_location("plugback_fetch_rclone", ROOT / "scripts" / "fetch_rclone.py")
assert _spec and _spec.loader
fetch_rclone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fetch_rclone)

PROGRAM = b"\x7fELF pretend rclone program\n" * 100


def make_archive(path: Path, plat: str, members: dict[str, bytes] | None = None, *, symlink: str | None = None) -> str:
    """A zip shaped like rclone's release archive; returns its SHA-256."""
    top = f"rclone-v{fetch_rclone.VERSION}-{plat}/"
    members = members if members is not None else {top + fetch_rclone.program_name(plat): PROGRAM,
                                                    top + "README.txt": b"rclone readme\n"}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, data)
        if symlink is not None:
            info = zipfile.ZipInfo(top + fetch_rclone.program_name(plat))
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("plat", ["windows-amd64", "osx-arm64"])
def test_a_pinned_archive_gives_exactly_the_program_and_the_licence(tmp_path, plat):
    archive = tmp_path / fetch_rclone.archive_name(plat)
    digest = make_archive(archive, plat)
    dest, licences = tmp_path / "MacOS", tmp_path / "Resources"
    program = fetch_rclone.fetch(plat, dest, licences, from_zip=archive, expected_sha256=digest)
    assert program == dest / ("rclone.exe" if plat.startswith("windows") else "rclone")
    assert program.read_bytes() == PROGRAM
    assert program.stat().st_mode & 0o111, "the program must be executable"
    assert sorted(p.name for p in dest.iterdir()) == [program.name], "nothing else from the archive is written"
    assert "Permission is hereby granted" in (licences / "rclone-LICENSE.txt").read_text()


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_nothing_is_written(tmp_path):
    archive = tmp_path / "rclone.zip"
    make_archive(archive, "windows-amd64")
    dest = tmp_path / "dist"
    # The real pin: a locally made archive can never match it.
    assert fetch_rclone.main(["--platform", "windows-amd64", "--dest", str(dest), "--from-zip", str(archive)]) == 1
    assert not dest.exists()
    with pytest.raises(fetch_rclone.FetchError, match="is not the pinned"):
        fetch_rclone.fetch("windows-amd64", dest, from_zip=archive, expected_sha256="0" * 64)


def test_a_hostile_archive_cannot_write_elsewhere_or_plant_a_link(tmp_path):
    plat = "osx-amd64"
    top = f"rclone-v{fetch_rclone.VERSION}-{plat}/"
    dest = tmp_path / "MacOS"
    # A traversal member and no program: refused, nothing written outside or inside dest.
    archive = tmp_path / "a.zip"
    digest = make_archive(archive, plat, {"../../evil": b"x", top + "README.txt": b"r"})
    with pytest.raises(fetch_rclone.FetchError, match="holds no"):
        fetch_rclone.fetch(plat, dest, from_zip=archive, expected_sha256=digest)
    assert not (tmp_path.parent / "evil").exists() and not dest.exists()
    # The program member is a symlink: refused.
    archive = tmp_path / "b.zip"
    digest = make_archive(archive, plat, {top + "README.txt": b"r"}, symlink="/etc/passwd")
    with pytest.raises(fetch_rclone.FetchError, match="not a regular program file"):
        fetch_rclone.fetch(plat, dest, from_zip=archive, expected_sha256=digest)
    assert not (dest / "rclone").exists()


def test_every_platform_the_release_builds_is_pinned_and_named_by_the_workflow():
    for plat, digest in fetch_rclone.PINS.items():
        assert re.fullmatch(r"[0-9a-f]{64}", digest), plat
    assert {"windows-amd64", "osx-arm64", "osx-amd64"} <= set(fetch_rclone.PINS)
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "scripts/fetch_rclone.py --platform windows-amd64 --dest dist/plugback" in workflow
    assert "scripts/fetch_rclone.py --platform auto" in (ROOT / "installers" / "macos" / "build-dmg.sh").read_text()
    with pytest.raises(fetch_rclone.FetchError, match="no pinned rclone build"):
        fetch_rclone.fetch("plan9-amd64", Path("unused"))
