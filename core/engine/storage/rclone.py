"""The rclone backend: blobs on any rclone remote (``rclone:REMOTE:PATH``), through ``rclone rcd``.

* **Atomic put.** rclone's uploads to object stores (S3, B2, GCS, Azure,
  Swift: remotes without a server-side move) appear whole or not at all. On
  the others (a local folder, WebDAV, SFTP, SMB, FTP, Drive...) rclone 1.60 writes
  in place, so a blob is uploaded to ``tmp/<random>`` and then moved onto its
  name, which those remotes do on the server (``Features.Move``; one request,
  no bytes sent again). A cut connection leaves the upload in ``tmp/``, never
  under the name; ``clean_partial`` removes it. Content marked ``Unstaged``
  (packs, checked by their reader) goes straight to its name.
* **Requests.** rclone's WebDAV backend starts one request every 10 ms at most
  (its pacer, for the whole remote, whatever the number of threads), so the
  number of requests per blob sets the pace of a backup more than bytes do. The
  move is told not to look for an existing name first (``NoCheckDest``: names
  are new); a move refused because the name exists (``plugback.json``
  rewritten, a retried put whose move had gone through) is made again the
  checked way, which replaces it.
* **Uploads.** To a remote that can stream an upload of unknown length
  (``Features.PutStream``: S3, B2, a local folder...) a blob goes as a streamed
  ``operations/uploadfile``. To the others (WebDAV, SFTP, SMB...) rclone would
  spool such an upload into a local temporary file before sending it; the
  backend writes that file itself and has rclone copy it (``operations/copyfile``):
  the same local disk, one HTTP hop and one copy of the bytes less (a third of
  rclone's and Plugback's CPU per byte; docs/performance.md, "Remote sets,
  second pass").
* **Errors.** rclone reports the remote's trouble as text; :func:`classify`
  turns it into the storage error types (transient ones: refused, reset or
  timed-out connections, 5xx and 429 answers).
* **Memory.** ``list`` walks folder by folder (one ``operations/list`` each), so
  neither rclone nor Plugback holds a whole listing: the set's objects are spread
  over 256 folders.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from typing import Generator, Iterable, Iterator

from core.engine.storage.base import (
    CHUNK,
    TMP,
    BlobInfo,
    Source,
    Staged,
    check_folder,
    check_name,
    chunks_of,
    is_unstaged,
    is_valid_name,
)
from core.engine.storage.rclone_rcd import Rcd, RcloneError
from core.errors import BadRemoteSpec, BlobNotFound, RemoteAuthFailed, RemoteFull, RemoteUnavailable, StorageError, UnknownRemote

PREFIX = "rclone:"
_Entries = list[tuple[str, bool, object]]      # a folder's (name, is a folder, size), sorted
# rclone's remote names: letters, digits, '_', '-', '.', '+', '@' and spaces, not starting with '-' or a space.
_REMOTE = re.compile(r"[\w.+@][\w.+@ -]*")
_STAGED = re.compile(TMP + r"/[0-9a-f]{32}\.part")   # where stage() puts a blob


@dataclass(frozen=True)
class RemoteSpec:
    """``rclone:REMOTE:PATH``: a remote from the user's rclone configuration and a folder on it."""

    remote: str
    path: str

    @property
    def fs(self) -> str:
        """The location as rclone writes it (``REMOTE:PATH``)."""
        return f"{self.remote}:{self.path}"

    def __str__(self) -> str:
        return PREFIX + self.fs


def is_remote_spec(text: str) -> bool:
    """Whether a SET argument names a remote set (rather than a folder)."""
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_spec(text: str) -> RemoteSpec:
    """``rclone:REMOTE:PATH`` as a :class:`RemoteSpec`; :class:`BadRemoteSpec` saying what is wrong.

    Only named remotes: a connection string (``rclone::webdav,url=...:``) would carry
    credentials, and Plugback never stores those (they stay in rclone's configuration).
    """
    if not is_remote_spec(text):
        raise BadRemoteSpec(spec=text, reason="it does not start with 'rclone:'")
    remote, sep, path = text[len(PREFIX):].partition(":")
    if not sep:
        raise BadRemoteSpec(spec=text, reason="the ':' after the remote's name is missing")
    if not remote:
        raise BadRemoteSpec(spec=text, reason="use a remote configured with 'rclone config' (connection "
                            "strings would put credentials into Plugback's settings)")
    if not _REMOTE.fullmatch(remote) or remote != remote.rstrip():
        raise BadRemoteSpec(spec=text, reason=f"'{remote}' is not a valid rclone remote name")
    parts = [p for p in path.replace("\\", "/").split("/")]
    if any(p in (".", "..") for p in parts) or any(c in path for c in "[]\0\r\n"):
        raise BadRemoteSpec(spec=text, reason="the path may not contain '.' or '..' parts, brackets or "
                            "control characters")
    return RemoteSpec(remote, path.rstrip("/") if path.strip("/") else path)


_AUTH = re.compile(r"\b(401|403)\b|unauthori[sz]ed|forbidden|access ?denied|invalid_grant|invalidaccesskeyid|"
                   r"signaturedoesnotmatch|authenticat|token (has )?expired", re.I)
_FULL = re.compile(r"\b507\b|insufficient storage|quota|no space left|storage (is )?full|"
                   r"not enough (free )?space|entitytoolarge", re.I)
_TRANSIENT = re.compile(r"connection refused|connection reset|broken pipe|timeout|timed out|\bEOF\b|"
                        r"\b(500|502|503|504|429)\b|too many requests|rate ?limit|temporar|"
                        r"no such host|network is unreachable|try again|server misbehaving|"
                        r"use of closed network connection", re.I)   # (Go's net.ErrClosed: cut mid-write)


def classify(message: str, status: int, where: str, name: str = "") -> StorageError:
    """The storage error for rclone's ``message`` (and the rc call's HTTP ``status``).

    Order matters: authentication and quota first (a "403 quota exceeded" is a full
    remote, never retried), then not-found, then the transient kinds; anything else is
    permanent and shows rclone's own words.
    """
    if "didn't find section in config file" in message:
        return UnknownRemote(remote=where.removeprefix(PREFIX).partition(":")[0])
    if _FULL.search(message):
        return RemoteFull(where=where, reason=message)
    if _AUTH.search(message):
        return RemoteAuthFailed(where=where, reason=message)
    if status == 404 or "not found" in message.lower():
        return BlobNotFound(where=where, name=name or message)
    if _TRANSIENT.search(message) or status in (502, 503, 504, 429):
        return RemoteUnavailable(where=where, reason=message)
    return StorageError(where=where, reason=message)


def _staged_place(staged: Staged) -> str:
    """A staged blob's place in ``tmp/``, checked to be one :meth:`RcloneBackend.stage` makes."""
    if not _STAGED.fullmatch(staged.where):
        raise StorageError(where=staged.name[:300], reason=f"{staged.where[:300]!r} is not a staged upload")
    return staged.where


class RcloneBackend:
    """Blobs under ``spec`` (a :class:`RemoteSpec` or ``rclone:REMOTE:PATH``) on an rclone remote.

    ``exe``: the rclone program; ``extra_args``: more rclone flags (tests shorten its
    retries); ``rcd``: an rclone process to share with other backends (its owner closes
    it; by default each backend starts and stops its own). Raises :class:`RcloneMissing`,
    :class:`RcloneTooOld` or :class:`UnknownRemote` when opened.
    """

    def __init__(self, spec: RemoteSpec | str, *, exe: str = "rclone", extra_args: Iterable[str] = (),
                 rcd: Rcd | None = None):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.where = str(self.spec)
        self.fs = self.spec.fs
        self._owns_rcd = rcd is None
        self.rcd = rcd or Rcd(exe, extra_args)
        self._features: dict | None = None
        # An unknown remote fails here, at once. (Not config/listremotes: it leaves out the
        # remotes rclone takes from RCLONE_CONFIG_<NAME>_TYPE variables.) A remote that is
        # offline or refuses the login fails on the first operation, where retries apply.
        try:
            self._stages()
        except StorageError as err:
            if isinstance(err, UnknownRemote):
                self.close()
                raise
        except BaseException:
            self.close()
            raise

    # --- the interface -------------------------------------------------------------------
    def put(self, name: str, data: Source) -> None:
        if self._stages() and not is_unstaged(data):
            self.commit(self.stage(name, data))   # only at the move does the name appear, whole
        else:
            self._send(check_name(name), data, name)

    # --- a put in two steps (base.Stages) --------------------------------------------------
    @property
    def can_stage(self) -> bool:
        return self._stages()

    def stage(self, name: str, data: Source) -> Staged:
        check_name(name)
        if not self._stages():
            raise StorageError(where=self.where, reason="this remote has no server-side move to stage puts with")
        staged = Staged(name, f"{TMP}/{secrets.token_hex(16)}.part")
        self._send(staged.where, data, name)
        return staged

    def commit(self, staged: Staged) -> None:
        self._move(_staged_place(staged), check_name(staged.name))

    def discard(self, staged: Staged) -> None:
        try:
            self._call("operations/deletefile", {"fs": self.fs, "remote": _staged_place(staged)}, staged.name)
        except BlobNotFound:
            pass

    def read_staged(self, staged: Staged, offset: int = 0) -> Generator[bytes, None, None]:
        try:
            resp = self.rcd.download(self.fs, _staged_place(staged), offset)
        except RcloneError as err:
            raise classify(err.message, err.status, self.where, staged.name) from None
        return self._chunks(resp, staged.name)

    def make_folders(self, folders: Iterable[str]) -> None:
        for folder in folders:
            if folder and folder != TMP:
                check_name(folder)
            self._call("operations/mkdir", {"fs": self.fs, "remote": folder}, folder)

    def _send(self, target: str, data: Source, name: str) -> None:
        """Upload ``data`` to ``target`` (its name, or its place in ``tmp/``)."""
        if self._streams():
            folder, _, base = target.rpartition("/")
            self._upload(folder, base, chunks_of(data), name)
        else:
            self._copy_spooled(target, data, name)

    def _move(self, staged: str, name: str) -> None:
        """Move ``staged`` onto ``name`` without looking for ``name`` first; when the remote
        refuses because it exists (WebDAV: 412), again the checked way, which replaces it."""
        params = {"srcFs": self.fs, "srcRemote": staged, "dstFs": self.fs, "dstRemote": name}
        try:
            self._call("operations/movefile", {**params, "_config": {"NoCheckDest": True}}, name)
        except StorageError as err:
            if err.transient or isinstance(err, (RemoteAuthFailed, RemoteFull)):
                raise
            self._call("operations/movefile", params, name)

    def get(self, name: str, offset: int = 0) -> Generator[bytes, None, None]:
        check_name(name)
        try:
            resp = self.rcd.download(self.fs, name, offset)
        except RcloneError as err:
            if err.status != 404:
                raise classify(err.message, err.status, self.where, name) from None
            # rclone's file server says 404 for any failure to open, and for a range at the very
            # end: only a stat tells "missing" from "could not be opened".
            if offset < self.stat(name).size:
                raise RemoteUnavailable(where=self.where, reason=f"{name} could not be opened") from None
            resp = None
        return self._chunks(resp, name)

    def stat(self, name: str) -> BlobInfo:
        item = self._call("operations/stat", {"fs": self.fs, "remote": check_name(name),
                                              "opt": {"noModTime": True, "noMimeType": True}}, name).get("item")
        if not isinstance(item, dict) or item.get("IsDir") or not isinstance(item.get("Size"), int):
            raise BlobNotFound(where=self.where, name=name)
        return BlobInfo(name, item["Size"])

    def list(self, folder: str = "") -> Iterator[BlobInfo]:
        folder = check_folder(folder)
        try:
            first = self._listing(folder)
        except StorageError as err:
            if err.transient or not folder or not self._is_blob(folder):
                raise
            return                  # a blob is not a folder: nothing under it (as on a drive)
        yield from self._walk(folder, first)

    def delete(self, name: str) -> None:
        try:
            self._call("operations/deletefile", {"fs": self.fs, "remote": check_name(name)}, name)
        except BlobNotFound:
            pass

    def clean_partial(self) -> None:
        try:
            self._call("operations/purge", {"fs": self.fs, "remote": TMP})
        except BlobNotFound:
            pass

    def close(self) -> None:
        if self._owns_rcd:
            self.rcd.close()

    # --- helpers -------------------------------------------------------------------------
    def _call(self, path: str, params: dict, name: str = "") -> dict:
        try:
            return self.rcd.call(path, params)
        except RcloneError as err:
            raise classify(err.message, err.status, self.where, name) from None

    def _feature(self, name: str) -> bool:
        """One of the remote's ``Features`` (``operations/fsinfo``, asked once)."""
        if self._features is None:
            features = self._call("operations/fsinfo", {"fs": self.fs}).get("Features")
            self._features = features if isinstance(features, dict) else {}
        return bool(self._features.get(name))

    def _stages(self) -> bool:
        """Whether puts go through ``tmp/`` (the remote moves on the server, and writes in place)."""
        return self._feature("Move")

    def _streams(self) -> bool:
        """Whether the remote takes an upload of unknown length as it comes (else rclone spools it)."""
        return self._feature("PutStream")

    def _copy_spooled(self, target: str, data: Source, name: str) -> None:
        """Upload ``data`` to ``target`` from a local temporary file rclone copies (see the module
        docstring); the file is removed whatever happens. Errors of the source (reading the
        file being backed up) pass through as they are."""
        fd, path = tempfile.mkstemp(prefix="plugback-upload-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as spool:
                for chunk in chunks_of(data):
                    try:
                        spool.write(chunk)
                    except OSError as err:
                        raise StorageError(where=self.where, reason=f"a temporary copy of {name} could not "
                                           f"be written to {path} ({err.strerror or err})") from err
            # NoCheckDest: the target is new (or replaced on purpose, as --ignore-times says); looking
            # for it first costs a request, and on a dead server seconds of rclone's backoff.
            self._call("operations/copyfile", {"srcFs": os.path.dirname(path), "srcRemote": os.path.basename(path),
                                               "dstFs": self.fs, "dstRemote": target,
                                               "_config": {"NoCheckDest": True}}, name)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _upload(self, folder: str, base: str, chunks: Iterable[bytes], name: str) -> None:
        try:
            self.rcd.upload(self.fs, folder, base, chunks)
        except RcloneError as err:
            raise classify(err.message, err.status, self.where, name) from None

    def _chunks(self, resp, name: str) -> Generator[bytes, None, None]:
        complete = False
        try:
            if resp is None:
                complete = True
                return
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise RemoteUnavailable(where=self.where, reason=f"reading {name} was cut off: {err}") from err
                if not chunk:
                    complete = True
                    return
                yield chunk
        finally:
            if resp is not None:
                self.rcd.release(resp, complete)

    def _listing(self, folder: str) -> _Entries:
        """One folder's entries (name, is a folder, size), sorted; [] when it does not exist."""
        try:
            listing = self._call("operations/list", {"fs": self.fs, "remote": folder,
                                                     "opt": {"noModTime": True, "noMimeType": True}}, folder)
        except BlobNotFound:
            return []
        return sorted((e["Name"], bool(e.get("IsDir")), e.get("Size")) for e in listing.get("list") or []
                      if isinstance(e, dict) and isinstance(e.get("Name"), str))

    def _is_blob(self, name: str) -> bool:
        try:
            self.stat(name)
        except BlobNotFound:
            return False
        return True

    def _walk(self, folder: str, entries: _Entries | None = None) -> Iterator[BlobInfo]:
        for entry_name, is_dir, size in self._listing(folder) if entries is None else entries:
            name = f"{folder}/{entry_name}" if folder else entry_name
            if not is_valid_name(name):
                continue
            if is_dir:
                yield from self._walk(name)
            elif isinstance(size, int) and size >= 0:
                yield BlobInfo(name, size)
