"""Names the destination file system cannot hold, and the escaped mirror names used instead.

A source path is always recorded as-is in the manifest. Where the destination
(FAT32, exFAT, NTFS, or any volume on Windows) cannot hold a name, the copy in
``Latest/`` gets a *mirror name*, also recorded in the manifest, so restore
brings back the real name. Mirror names are stable across runs: a path keeps
the mirror name its parent snapshot gave it.
"""

from __future__ import annotations

import hashlib
import re

from core.engine.fs import VolumeInfo

_WIN_BAD = re.compile(r'[<>:"\\|?*\x00-\x1f]')
# Device names, with any extension; Windows also ignores spaces between the name and the dot
# ("NUL .txt" is NUL). CONIN$/CONOUT$ are reserved since Windows 11.
_WIN_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³]) *(\..*)?$",
                           re.IGNORECASE)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
MAX_NAME_BYTES = 255
# Escaped names stay below the 255-unit limit of FAT/exFAT/NTFS, leaving room for a "~N" suffix.
MAX_ESCAPED = 240


#: The Windows rules, for a volume nobody probed: a restore target on Windows (or, in tests, a
#: simulated one). NTFS folders are case-insensitive by default.
WINDOWS = VolumeInfo("windows", case_insensitive=True, windows_names=True, symlinks=False, max_file_size=None)


def windows_problem(name: str) -> str | None:
    """Why Windows cannot create a file or folder called ``name`` (None: it can).

    The rules, for every Windows file system (NTFS, exFAT, FAT32): no ``<>:"\\|?*``
    or control characters; no device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9,
    CONIN$, CONOUT$, with or without an extension); no trailing dot or space (Windows
    drops them silently, so the file would get another name); not ``.`` or ``..``.
    """
    if name in ("", ".", ".."):
        return "is not a name"
    bad = _WIN_BAD.search(name)
    if bad:
        return f"holds the character {bad.group()!r}, which Windows does not allow"
    if _WIN_RESERVED.match(name):
        return "is a device name Windows reserves"
    if name.endswith((".", " ")):
        return "ends with a dot or a space, which Windows drops"
    return None


def escape_component(name: str, volume: VolumeInfo) -> str:
    """A name ``volume`` can hold for the source name ``name`` (``name`` itself when it can)."""
    if not volume.windows_names and not volume.ascii_only:
        return name
    out = name
    if volume.windows_names:
        out = _WIN_BAD.sub(lambda m: "%{:02X}".format(ord(m.group())), out)
        if _WIN_RESERVED.match(out):
            out = "_" + out
        # Trailing dots and spaces are silently dropped by Windows: escape the last one.
        if out.endswith((".", " ")):
            out = out[:-1] + "%{:02X}".format(ord(out[-1]))
    if volume.ascii_only:
        out = _NON_ASCII.sub(lambda m: "".join("%{:02X}".format(b) for b in
                                               m.group().encode("utf-8", "surrogateescape")), out)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes in a POSIX name: FAT/exFAT store UTF-16, so spell them out.
        out = out.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\\", "%")
    if out != name and _units(out) > MAX_ESCAPED:
        out = _shorten(name, out)
    return out


def _units(name: str) -> int:
    """A name's length as FAT, exFAT and NTFS count it (UTF-16 code units, at most 255)."""
    return len(name.encode("utf-16-le", "surrogatepass")) // 2


def _shorten(name: str, escaped: str) -> str:
    """Escaping can triple a name past 255: cut it, keeping the extension, and add a hash of the
    real name so two long names that share a beginning still differ (and the result is stable)."""
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem, dot, ext = escaped.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = escaped, ""
    ext = "." + ext if ext else ""
    room = MAX_ESCAPED - len(tag) - len(ext)
    while _units(stem) > room:
        stem = stem[:-1]
    # Never end the stem inside a %XX escape: it would read as a different character.
    cut = stem.rfind("%", max(0, len(stem) - 2))
    if cut != -1:
        stem = stem[:cut]
    return stem + tag + ext


class MirrorNamer:
    """Hands out unique, holdable names per directory of ``Latest/``.

    ``reserve`` records a name already in use (from the parent snapshot);
    ``name_for`` gives a new child a name that collides with nothing, also not
    case-insensitively on such volumes (``README`` and ``Readme`` both fit).
    """

    def __init__(self, volume: VolumeInfo):
        self.volume = volume
        self._used: dict[str, set[str]] = {}

    def _key(self, name: str) -> str:
        return name.casefold() if self.volume.case_insensitive else name

    def reserve(self, parent_mirror: str, name: str) -> None:
        self._used.setdefault(parent_mirror, set()).add(self._key(name))

    def name_for(self, parent_mirror: str, name: str) -> str:
        used = self._used.setdefault(parent_mirror, set())
        base = escape_component(name, self.volume)
        candidate, n = base, 1
        while self._key(candidate) in used:
            stem, dot, ext = base.rpartition(".")
            candidate = f"{stem}~{n}.{ext}" if dot and stem else f"{base}~{n}"
            n += 1
        used.add(self._key(candidate))
        return candidate
