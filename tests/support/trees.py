"""File trees described as data, so a test builds and compares whole trees in one line.

    make_tree(root, {"a/b.txt": b"hello", "empty/": None, "link": Symlink("a/b.txt")})
    assert read_tree(restored) == read_tree(source)

Keys are relative paths with "/" separators on every OS. A key ending in "/"
is a directory (value ``None``); a ``Symlink`` value is a symbolic link (its
target is stored as written, never followed); ``bytes`` (or ``str``, written as
UTF-8) is a file, and ``File`` adds a mode and an mtime.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Symlink:
    """A symbolic link pointing at ``target`` (relative or absolute, as written)."""

    target: str


@dataclass(frozen=True)
class File:
    """A file with content and, optionally, a permission mode and an mtime (ns)."""

    data: bytes
    mode: int | None = None
    mtime_ns: int | None = None


TreeValue = bytes | str | File | Symlink | None


def make_tree(root: str | os.PathLike, spec: dict[str, TreeValue]) -> Path:
    """Create the files, empty directories and symlinks of ``spec`` under ``root``.

    Parent directories are created as needed; ``root`` itself too. Returns
    ``root`` as a ``Path``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # mtimes last: creating a child changes its parent directory's mtime, not the file's,
    # but writing files after setting an mtime would be a silly trap to leave in.
    mtimes: list[tuple[Path, int]] = []
    for rel, value in spec.items():
        path = root / _checked(rel)
        if rel.endswith("/"):
            if value is not None:
                raise ValueError(f"{rel!r}: a directory key (ending in '/') takes None, not {value!r}")
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Symlink):
            os.symlink(value.target, path)
            continue
        if isinstance(value, str):
            value = File(value.encode("utf-8"))
        elif isinstance(value, bytes):
            value = File(value)
        elif not isinstance(value, File):
            raise TypeError(f"{rel!r}: expected bytes, str, File or Symlink, got {value!r}")
        path.write_bytes(value.data)
        if value.mode is not None:
            os.chmod(path, value.mode)
        if value.mtime_ns is not None:
            mtimes.append((path, value.mtime_ns))
    for path, mtime_ns in mtimes:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return root


def read_tree(root: str | os.PathLike, *, modes: bool = False, mtimes: bool = False) -> dict[str, TreeValue]:
    """Describe the tree under ``root`` in ``make_tree``'s format.

    Files map to their bytes (or to ``File(data, mode, mtime_ns)`` with the
    requested extras), symlinks to ``Symlink(target)`` (not followed), and only
    *empty* directories appear (as ``"dir/": None``): the others are implied by
    their contents, so ``read_tree(a) == read_tree(b)`` compares everything.
    Keys are sorted, which also makes assertion diffs readable.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"read_tree: {root} is not a directory")
    out: dict[str, TreeValue] = {}
    _walk(root, "", out, modes, mtimes)
    return dict(sorted(out.items()))


def _walk(directory: Path, prefix: str, out: dict, modes: bool, mtimes: bool) -> None:
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = Symlink(os.readlink(entry.path))
        elif stat.S_ISDIR(st.st_mode):
            before = len(out)
            _walk(Path(entry.path), rel + "/", out, modes, mtimes)
            if len(out) == before:
                out[rel + "/"] = None
        elif stat.S_ISREG(st.st_mode):
            data = Path(entry.path).read_bytes()
            if modes or mtimes:
                out[rel] = File(data, stat.S_IMODE(st.st_mode) if modes else None,
                                st.st_mtime_ns if mtimes else None)
            else:
                out[rel] = data
        else:
            out[rel] = f"<special file, mode {oct(st.st_mode)}>"


def _checked(rel: str) -> str:
    parts = rel.rstrip("/").split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"make_tree: {rel!r} must be a plain relative path like 'a/b.txt'")
    return rel.rstrip("/")
