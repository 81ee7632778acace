"""The local-folder backend: blobs as files under a folder (a set on a drive).

A put writes ``<root>/tmp/<unique>``, fsyncs it, renames it into place and fsyncs
the folder (:mod:`core.engine.atomic`, through a :class:`core.engine.fs.FileSystem`,
so drive errors read as drive errors and tests can inject faults). No symbolic
link is followed anywhere under the root: folders on the way are checked with
``lstat`` and files are opened with ``O_NOFOLLOW`` where the OS has it.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Generator, Iterator

from core.engine.atomic import clear_tmp, write_atomic
from core.engine.fs import READ_FLAGS, FileSystem, long_path
from core.engine.storage.base import CHUNK, TMP, BlobInfo, Source, check_folder, check_name, chunks_of, is_valid_name
from core.errors import BlobNotFound, UnsafeSet

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LocalBackend:
    """Blobs in a folder on this computer or a drive. ``fs``: the set's file system (faults in tests)."""

    def __init__(self, root: Path, fs: FileSystem | None = None, *, durable: bool = True):
        self.root = Path(root)
        self.where = str(self.root)
        self.fs = fs or FileSystem(self.root)
        self.durable = durable
        self._known_dirs: set[str] = set()    # folders already proven real (not links)
        self._mutex = threading.Lock()

    # --- the interface -------------------------------------------------------------------
    def put(self, name: str, data: Source) -> None:
        check_name(name)
        folder = self._folder(name.rpartition("/")[0], create=True)
        tmp = self._folder(TMP, create=True)
        write_atomic(self.fs, tmp, folder / name.rpartition("/")[2], chunks_of(data), durable=self.durable)

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        fd = self._open(check_name(name))
        try:
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return self._chunks(fd)

    def stat(self, name: str) -> BlobInfo:
        path = self._path(check_name(name))
        try:
            st = os.lstat(long_path(path))
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(where=self.where, name=name) from None
        self._require_file(st, name)
        return BlobInfo(name, st.st_size)

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        folder = check_folder(folder)
        try:
            start = self._folder(folder, create=False) if folder else self.root
        except (BlobNotFound, UnsafeSet):
            return
        yield from self._walk(start, folder)

    def delete(self, name: str) -> None:
        path = self._path(check_name(name))
        try:
            st = os.lstat(long_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        self._require_file(st, name)
        self.fs.unlink(path)

    def clean_partial(self) -> None:
        if os.path.lexists(self.root / TMP):
            clear_tmp(self.fs, self.root / TMP)

    def close(self) -> None:
        pass

    # --- helpers -------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        parent, _, base = name.rpartition("/")
        try:
            return self._folder(parent, create=False) / base
        except BlobNotFound:
            return self.root / name     # a missing folder: lstat then says "not found"

    def _folder(self, rel: str, create: bool) -> Path:
        """``root/rel`` proven to be a real folder on every step (created when ``create``)."""
        path = self.root
        if create and str(path) not in self._known_dirs:
            self.fs.mkdir(path)      # the set's own folder; its parent must exist (a drive is there)
            self._known_dirs.add(str(path))
        if not rel:
            return path
        for part in rel.split("/"):
            path = path / part
            key = str(path)
            if key in self._known_dirs:
                continue
            try:
                st = os.lstat(long_path(path))
            except FileNotFoundError:
                if not create:
                    raise BlobNotFound(where=self.where, name=rel) from None
                self.fs.mkdir(path)
                st = os.lstat(long_path(path))
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise UnsafeSet(path=str(path), reason="is not a real folder (a symbolic link or a file); "
                                "it was not followed")
            with self._mutex:
                self._known_dirs.add(key)
        return path

    def _open(self, name: str) -> int:
        path = self._path(name)
        if not _NOFOLLOW:       # Windows: open() would follow a link, so look first
            try:
                self._require_file(os.lstat(long_path(path)), name)
            except (FileNotFoundError, NotADirectoryError):
                raise BlobNotFound(where=self.where, name=name) from None
        try:
            fd = os.open(long_path(path), READ_FLAGS | _NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(where=self.where, name=name) from None
        except OSError as err:
            if os.path.islink(path):
                raise UnsafeSet(path=str(path), reason="is a symbolic link; it was not followed") from None
            raise self.fs._translate(err, path) from err
        try:
            self._require_file(os.fstat(fd), name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _require_file(self, st: os.stat_result, name: str) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeSet(path=str(self.root / name), reason="is not a regular file (a symbolic link, "
                            "a folder or a device); it was not used")

    def _chunks(self, fd: int) -> Generator[bytes, None, None]:
        try:
            while True:
                try:
                    chunk = os.read(fd, CHUNK)
                except OSError as err:
                    raise self.fs._translate(err, f"descriptor {fd}") from err
                if not chunk:
                    return
                yield chunk
        finally:
            os.close(fd)

    def _walk(self, folder: Path, rel: str) -> Iterator[BlobInfo]:
        try:
            with os.scandir(long_path(folder)) as it:
                entries = sorted(((e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False))
                                  for e in it))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as err:
            raise self.fs._translate(err, folder) from err
        for entry_name, is_dir, is_file in entries:
            name = f"{rel}/{entry_name}" if rel else entry_name
            if not is_valid_name(name):
                continue                 # tmp/, foreign files, links' names are fine but links are not
            if is_dir:
                yield from self._walk(folder / entry_name, name)
            elif is_file:
                try:
                    size = os.lstat(long_path(folder / entry_name)).st_size
                except FileNotFoundError:
                    continue             # deleted since the folder was read
                yield BlobInfo(name, size)
