"""Fetch rclone's official release build for the Windows and macOS installers (issue #13).

    python scripts/fetch_rclone.py --platform windows-amd64 --dest dist/plugback
    python scripts/fetch_rclone.py --platform auto --dest Plugback.app/Contents/MacOS \\
        --license-dest Plugback.app/Contents/Resources
    python scripts/fetch_rclone.py --platform osx-arm64 --dest DIR --from-zip rclone-v1.68.2-osx-arm64.zip

Downloads ``rclone-v<VERSION>-<platform>.zip`` from downloads.rclone.org (GitHub's release as
the fallback), checks it against the SHA-256 pinned below (rclone's own ``SHA256SUMS`` for that
release) and refuses anything else; then writes exactly one file from it, the ``rclone``
(``rclone.exe``) program, to ``--dest``, and rclone's MIT licence (installers/thirdparty/) to
``--license-dest`` (default: ``--dest``). Nothing else in the archive is extracted, so a
hostile archive cannot write outside ``--dest``. ``--from-zip`` takes an archive already on
disk (an offline build); it is checked the same way.

Plugback finds the program next to its own executable (core/engine/storage/rclone_rcd.py
``find_rclone``); docs/installers.md "rclone" says how each installer carries it. A version
bump: change VERSION and every pin from the release's SHA256SUMS file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform as platform_mod
import shutil
import stat
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

VERSION = "1.68.2"
# From https://downloads.rclone.org/v1.68.2/SHA256SUMS (the same archives GitHub's release serves).
PINS = {
    "windows-amd64": "812bf76cc02c04cf6327f3683f3d5a88e47d36c39db84c1a745777496be7d993",
    "windows-arm64": "cbc6584266cf62bb9f4df912cb00d566c1cbc50ce2748f5e433f1937209e807e",
    "osx-amd64": "cdc685e16abbf35b6f47c95b2a5b4ad73a73921ff6842e5f4136c8b461756188",
    "osx-arm64": "323f387b32bcf9ddfc3874f01879a0b2689dbd91309beb8c3a4410db04d0c41f",
    "linux-amd64": "0e6fa18051e67fc600d803a2dcb10ddedb092247fc6eee61be97f64ec080a13c",
    "linux-arm64": "c6e9d4cf9c88b279f6ad80cd5675daebc068e404890fa7e191412c1bc7a4ac5f",
}
MIRRORS = (
    "https://downloads.rclone.org/v{version}/{name}",
    "https://github.com/rclone/rclone/releases/download/v{version}/{name}",
)
LICENSE = Path(__file__).resolve().parent.parent / "installers" / "thirdparty" / "rclone-LICENSE.txt"
MAX_ARCHIVE = 200 << 20     # the 1.68 archives are 20-25 MB
MAX_PROGRAM = 400 << 20     # the program inside is 55-75 MB


class FetchError(Exception):
    """Why no rclone was written (printed as one line; exit 1)."""


def host_platform() -> str:
    """This machine's rclone platform name, e.g. ``osx-arm64`` on an Apple Silicon Mac."""
    system = {"win32": "windows", "darwin": "osx"}.get(sys.platform, "linux")
    machine = platform_mod.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "amd64"
    return f"{system}-{arch}"


def archive_name(plat: str) -> str:
    return f"rclone-v{VERSION}-{plat}.zip"


def program_name(plat: str) -> str:
    return "rclone.exe" if plat.startswith("windows") else "rclone"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(plat: str, into: Path) -> Path:
    """The archive for ``plat`` from the first mirror that serves it (size-limited)."""
    name = archive_name(plat)
    target = into / name
    errors = []
    for mirror in MIRRORS:
        url = mirror.format(version=VERSION, name=name)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310 - fixed https URLs
                copied = 0
                while block := resp.read(1 << 20):
                    copied += len(block)
                    if copied > MAX_ARCHIVE:
                        raise FetchError(f"{url} is larger than {MAX_ARCHIVE >> 20} MB: not rclone's archive")
                    out.write(block)
            return target
        except OSError as err:
            errors.append(f"{url}: {err}")
    raise FetchError("could not download rclone: " + "; ".join(errors))


def extract_program(archive: Path, plat: str, expected_sha256: str, dest: Path) -> Path:
    """Check ``archive`` against ``expected_sha256`` and write its rclone program into ``dest``.

    Only the one member ``rclone-v<VERSION>-<plat>/<program>`` is read, and only if it is a
    regular file of sane size; it is written through a temporary name and renamed.
    """
    actual = sha256_file(archive)
    if actual != expected_sha256:
        raise FetchError(f"{archive.name}: SHA-256 {actual} is not the pinned {expected_sha256}; "
                         "refusing it (a tampered or wrong download)")
    member = f"rclone-v{VERSION}-{plat}/{program_name(plat)}"
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise FetchError(f"{archive.name} holds no {member}") from None
        mode = info.external_attr >> 16
        if info.is_dir() or (mode and not stat.S_ISREG(mode)) or info.file_size > MAX_PROGRAM:
            raise FetchError(f"{archive.name}: {member} is not a regular program file")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / program_name(plat)
        tmp = dest / (program_name(plat) + ".part")
        with zf.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return target


def fetch(plat: str, dest: Path, license_dest: Path | None = None, from_zip: Path | None = None,
          expected_sha256: str | None = None) -> Path:
    """Put the checked rclone program into ``dest`` and its licence beside it (or in ``license_dest``)."""
    if plat not in PINS:
        raise FetchError(f"no pinned rclone build for {plat!r}; known: {', '.join(sorted(PINS))}")
    expected = expected_sha256 or PINS[plat]
    with tempfile.TemporaryDirectory(prefix="plugback-rclone-") as work:
        archive = from_zip if from_zip is not None else download(plat, Path(work))
        program = extract_program(archive, plat, expected, dest)
    (license_dest or dest).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LICENSE, (license_dest or dest) / "rclone-LICENSE.txt")
    return program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--platform", default="auto", help="e.g. windows-amd64, osx-arm64; 'auto' = this machine")
    parser.add_argument("--dest", type=Path, required=True, help="folder the rclone program goes to")
    parser.add_argument("--license-dest", type=Path, help="folder for rclone-LICENSE.txt (default: --dest)")
    parser.add_argument("--from-zip", type=Path, help="use this release archive instead of downloading")
    args = parser.parse_args(argv)
    plat = host_platform() if args.platform == "auto" else args.platform
    try:
        program = fetch(plat, args.dest, args.license_dest, args.from_zip)
    except (FetchError, OSError, zipfile.BadZipFile) as err:
        print(f"fetch_rclone: {err}", file=sys.stderr)
        return 1
    print(f"fetch_rclone: rclone {VERSION} ({plat}) -> {program}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
