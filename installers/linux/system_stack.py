"""Which files the Linux bundle leaves to the system (Debian / Ubuntu builds).

The .deb declares the desktop stack it uses (GTK 3, WebKitGTK 4.1, Ayatana
AppIndicator, GObject introspection) as dependencies instead of carrying copies:

* WebKitGTK starts helper processes (``WebKitWebProcess``, ``WebKitNetworkProcess``)
  from the system's own folder; they must match the library that starts them,
  which only the system copy guarantees;
* GTK finds its input methods, pixbuf loaders, themes and icons in system
  folders; a bundled GTK with the bundle's paths loses the user's input method
  and theme;
* the security updates of these libraries then reach the app through apt.

So ``pyinstaller.spec`` asks this module for every file owned by a package in
the dependency closure of ``ROOT_PACKAGES`` (as installed on the build machine)
and drops it from the bundle. Python itself and the pip packages (PyGObject's
bindings included) stay in the bundle. On a machine without dpkg nothing is
dropped and the bundle carries the libraries PyInstaller found.

Run it to see what would stay on the system: ``python installers/linux/system_stack.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# What the app loads through GObject introspection; the .deb's Depends.
ROOT_PACKAGES = (
    "gir1.2-gtk-3.0",
    "gir1.2-webkit2-4.1",
    "gir1.2-ayatanaappindicator3-0.1",
    "libgirepository-1.0-1",
    "libcairo2",
)

DPKG_INFO = Path("/var/lib/dpkg/info")


def available() -> bool:
    """True on a dpkg-based system where the root packages are installed."""
    return shutil.which("dpkg-query") is not None and not missing(ROOT_PACKAGES)


def missing(packages) -> list[str]:
    """Packages of ``packages`` that are not installed."""
    installed = _installed()
    return [p for p in packages if p not in installed]


def _installed() -> dict[str, tuple[list[list[str]], list[str]]]:
    """Installed packages -> (dependency groups (alternatives), provided names)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\t${Pre-Depends}\t${Depends}\t${Provides}\n"],
        check=True, capture_output=True, text=True).stdout
    packages = {}
    for line in out.splitlines():
        status, name, pre, deps, provides = (line.split("\t") + [""] * 5)[:5]
        if status != "installed":
            continue
        groups = [[_bare(alt) for alt in group.split("|")] for group in f"{pre},{deps}".split(",") if group.strip()]
        packages[name] = (groups, [_bare(p) for p in provides.split(",") if p.strip()])
    return packages


def _bare(spec: str) -> str:
    # "libglib2.0-0 (>= 2.75)" / "libc6:any" -> "libglib2.0-0" / "libc6"
    return re.split(r"[\s(:]", spec.strip(), maxsplit=1)[0]


def closure(roots=ROOT_PACKAGES) -> set[str]:
    """Installed packages that ``roots`` need, themselves included.

    An alternative ("a | b") or a virtual package counts as every installed
    package that satisfies it: on the build machine any of them may be the one
    that provides a file the bundle would otherwise carry.
    """
    installed = _installed()
    providers: dict[str, set[str]] = {}
    for name, (_, provides) in installed.items():
        providers.setdefault(name, set()).add(name)
        for virtual in provides:
            providers.setdefault(virtual, set()).add(name)
    seen: set[str] = set()
    todo = [p for p in roots if p in installed]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for group in installed[name][0]:
            for alt in group:
                todo.extend(providers.get(alt, ()))
    return seen


def owned_files(packages) -> set[str]:
    """Every path the packages own, in all spellings a collected file may have.

    Debian 12 merges /lib into /usr/lib, and package lists name either; the
    bundle's sources are resolved paths. Both forms and the real path are kept.
    """
    paths: set[str] = set()
    for list_file in DPKG_INFO.glob("*.list"):
        if list_file.stem.split(":")[0] not in packages:
            continue
        for line in list_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line or line == "/.":
                continue
            paths.add(line)
            if line.startswith("/lib"):
                paths.add("/usr" + line)
            elif line.startswith("/usr/lib"):
                paths.add(line[len("/usr"):])
            paths.add(os.path.realpath(line))
    return paths


def left_to_system(sources) -> set[str]:
    """Of the given source paths, those a package in the closure provides."""
    owned = owned_files(closure())
    return {src for src in sources if src in owned or os.path.realpath(src) in owned}


if __name__ == "__main__":
    if not available():
        sys.exit(f"not a dpkg system with {', '.join(ROOT_PACKAGES)} installed")
    print("\n".join(sorted(closure())))
