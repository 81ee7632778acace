"""The rclone backend's own cases: set specs, rclone's messages, a missing or old rclone, a remote
that refuses the login, is unknown, or dies in the middle of an upload. Real rclone throughout; the
only fake is a too-old ``rclone`` program (a fault this machine does not have)."""

from __future__ import annotations

import base64
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from core.engine.progress import FakeClock
from core.engine.storage import RcloneBackend, Retrying, open_backend, parse_spec
from core.engine.storage.base import CHUNK, Unstaged
from core.engine.storage.rclone import RemoteSpec, classify, is_remote_spec
from core.engine.storage.rclone_rcd import find_rclone, parse_version
from core.errors import (
    EXIT_USAGE,
    BadRemoteSpec,
    BlobNotFound,
    RcloneMissing,
    RcloneTooOld,
    RemoteAuthFailed,
    RemoteFull,
    RemoteUnavailable,
    StorageError,
    UnknownRemote,
)
from tests.support.rclone import FAST_FAIL

W = "rclone:wd:x"


@pytest.mark.parametrize("text, remote, path", [
    ("rclone:mycloud:backups/laptop", "mycloud", "backups/laptop"),
    ("rclone:mycloud:", "mycloud", ""),
    ("rclone:my cloud:a b/c/", "my cloud", "a b/c"),
    ("rclone:loc:/abs/path", "loc", "/abs/path"),
    ("rclone:s3.eu-1:bucket/dir:with:colons", "s3.eu-1", "bucket/dir:with:colons"),
])
def test_a_remote_spec_is_parsed(text, remote, path):
    spec = parse_spec(text)
    assert spec == RemoteSpec(remote, path)
    assert spec.fs == f"{remote}:{path}"
    assert is_remote_spec(text)


@pytest.mark.parametrize("text, words", [
    ("/media/usb/Plugback", "does not start with 'rclone:'"),
    ("rclone:nocolon", "':' after the remote's name is missing"),
    ("rclone::webdav,url=http://x:", "connection strings"),
    ("rclone:-bad:x", "not a valid rclone remote name"),
    ("rclone:ok:a/../b", "'..'"),
    ("rclone:ok:a/[b]", "brackets"),
])
def test_a_bad_remote_spec_says_what_is_wrong(text, words):
    with pytest.raises(BadRemoteSpec) as err:
        parse_spec(text)
    assert words in str(err.value)
    assert "rclone:REMOTE:PATH" in str(err.value)
    assert err.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("message, status, kind", [
    ("didn't find section in config file", 500, UnknownRemote),
    ("read metadata failed: Unauthorized: 401 Unauthorized", 500, RemoteAuthFailed),
    ("AccessDenied: Access Denied status code: 403", 500, RemoteAuthFailed),
    ("couldn't fetch token: invalid_grant: maybe token expired?", 500, RemoteAuthFailed),
    ("googleapi: Error 403: The user's Drive storage quota has been exceeded., storageQuotaExceeded", 500,
     RemoteFull),
    ("Insufficient Storage: 507 Insufficient Storage", 500, RemoteFull),
    ("write /x: no space left on device", 500, RemoteFull),
    ("object not found", 404, BlobNotFound),
    ("error in ListJSON: directory not found", 404, BlobNotFound),
    ('Propfind "http://127.0.0.1:1/x": dial tcp 127.0.0.1:1: connect: connection refused', 500, RemoteUnavailable),
    ("read tcp 127.0.0.1:5->127.0.0.1:6: read: connection reset by peer", 500, RemoteUnavailable),
    ('Put "http://127.0.0.1:5/set/tmp/x.part": write tcp 127.0.0.1:4->127.0.0.1:5: use of closed network '
     "connection", 500, RemoteUnavailable),   # (the server killed while rclone sends: seen in CI)
    ("Service Unavailable: 503 Service Unavailable", 500, RemoteUnavailable),
    ("429 Too Many Requests", 500, RemoteUnavailable),
    ("net/http: TLS handshake timeout", 500, RemoteUnavailable),
    ("unexpected EOF", 500, RemoteUnavailable),
    ("is a directory not a file", 500, StorageError),
])
def test_rclone_messages_become_storage_errors(message, status, kind):
    err = classify(message, status, "rclone:mycloud:b", "objects/ab/cd")
    assert type(err) is kind
    assert err.transient == (kind is RemoteUnavailable)


def test_an_unknown_remote_in_a_message_is_named():
    err = classify("didn't find section in config file", 500, "rclone:nosuch:a/b")
    assert "'nosuch'" in str(err) and "rclone listremotes" in str(err)


@pytest.mark.parametrize("text, expected", [("rclone v1.60.1-DEV\n- os/version: debian", (1, 60, 1)),
                                            ("rclone v1.68.2\n", (1, 68, 2))])
def test_a_new_enough_version_is_accepted(text, expected):
    assert parse_version(text) == expected


def test_an_old_version_is_refused_with_what_to_do():
    with pytest.raises(RcloneTooOld) as err:
        parse_version("rclone v1.53.3-DEV\n")
    assert "1.53.3" in str(err.value) and "1.60" in str(err.value) and "rclone.org/downloads" in str(err.value)


def test_missing_rclone_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RcloneMissing) as err:
        RcloneBackend("rclone:any:x")
    assert "apt install rclone" in str(err.value) and "rclone.org/downloads" in str(err.value)


def test_a_too_old_rclone_on_the_path_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "rclone"
    fake.write_text("#!/bin/sh\necho 'rclone v1.52.0'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RcloneTooOld):
        RcloneBackend("rclone:any:x")


def test_an_unknown_remote_is_refused_when_opened(rclone_env):
    with pytest.raises(UnknownRemote) as err:
        RcloneBackend("rclone:nosuch:backups", extra_args=FAST_FAIL)
    assert "'nosuch'" in str(err.value) and str(rclone_env.config) not in str(err.value)


def test_rclone_config_is_honoured_as_rclone_does(rclone_env, tmp_path, monkeypatch):
    other = tmp_path / "other.conf"
    other.write_text("[elsewhere]\ntype = local\n")
    monkeypatch.setenv("RCLONE_CONFIG", str(other))
    b = RcloneBackend(f"rclone:elsewhere:{tmp_path / 'set'}", extra_args=FAST_FAIL)
    try:
        b.put("plugback.json", b"{}")
    finally:
        b.close()
    assert (tmp_path / "set" / "plugback.json").read_bytes() == b"{}"
    with pytest.raises(UnknownRemote):
        RcloneBackend("rclone:loc:/tmp", extra_args=FAST_FAIL)     # not in this config


def test_a_remote_defined_in_the_environment_works(rclone_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RCLONE_CONFIG_FROMENV_TYPE", "local")     # rclone's own way; not in any file
    b = RcloneBackend(f"rclone:fromenv:{tmp_path / 'set'}", extra_args=FAST_FAIL)
    try:
        b.put("plugback.json", b"{}")
    finally:
        b.close()
    assert (tmp_path / "set" / "plugback.json").read_bytes() == b"{}"


def test_a_wrong_password_is_an_auth_error(rclone_env, tmp_path):
    server = rclone_env.serve_webdav(tmp_path / "guarded", user="plugback", password="right")
    rclone_env.add_webdav("guarded_wrong", server, user="plugback", password="wrong")
    rclone_env.add_webdav("guarded_right", server, user="plugback", password="right")
    wrong = RcloneBackend("rclone:guarded_wrong:set", extra_args=FAST_FAIL)
    right = RcloneBackend("rclone:guarded_right:set", extra_args=FAST_FAIL)
    try:
        for call in (lambda: wrong.put("plugback.json", b"{}"), lambda: wrong.stat("plugback.json"),
                     lambda: list(wrong.list())):
            with pytest.raises(RemoteAuthFailed) as err:
                call()
            assert not err.value.transient and "rclone config" in str(err.value)
        right.put("plugback.json", b"{}")
        assert right.stat("plugback.json").size == 2
    finally:
        wrong.close()
        right.close()
    assert (tmp_path / "guarded" / "set" / "plugback.json").read_bytes() == b"{}"


def test_the_server_killed_mid_upload_is_transient_and_leaves_no_blob(rclone_env, tmp_path):
    server = rclone_env.serve_webdav(tmp_path / "served")
    rclone_env.add_webdav("fragile", server)
    clock = FakeClock()
    b = Retrying(RcloneBackend("rclone:fragile:set", extra_args=FAST_FAIL), clock, attempts=2)
    kills = []

    def upload():
        for i in range(4):
            if i == 1 and not kills:
                kills.append(server.kill())      # the first attempt only
            yield bytes([i]) * CHUNK

    try:
        b.put("objects/ab/first", b"before")
        with pytest.raises(RemoteUnavailable) as err:
            b.put("objects/ab/big", upload)
        assert err.value.transient and b.retries == 1 and clock.mono > 0
        assert not (tmp_path / "served" / "set" / "objects" / "ab" / "big").exists()
        server.restart()
        with pytest.raises(BlobNotFound):
            b.stat("objects/ab/big")
        b.clean_partial()
        b.put("objects/ab/big", upload)          # the next run completes
        assert b"".join(b.get("objects/ab/big")) == b"".join(bytes([i]) * CHUNK for i in range(4))
        assert [i.name for i in b.list()] == ["objects/ab/big", "objects/ab/first"]
        files = sorted(str(p.relative_to(tmp_path / "served" / "set"))
                       for p in (tmp_path / "served" / "set").rglob("*") if p.is_file())
        assert files == ["objects/ab/big", "objects/ab/first"]      # nothing left in tmp/
    finally:
        b.close()


def test_a_killed_rclone_is_started_again(rclone_env, tmp_path):
    b = RcloneBackend(f"rclone:loc:{tmp_path / 'set'}", extra_args=FAST_FAIL)
    try:
        b.put("plugback.json", b"{}")
        b.rcd._proc.kill()
        b.rcd._proc.wait()
        assert b.stat("plugback.json").size == 2
    finally:
        b.close()
    assert b.rcd._proc.poll() is not None


def test_open_backend_picks_by_the_spec(rclone_env, tmp_path):
    local = open_backend(tmp_path / "set")
    assert local.where == str(tmp_path / "set")
    remote = open_backend(f"rclone:loc:{tmp_path / 'r'}")
    try:
        assert isinstance(remote, Retrying) and remote.where == f"rclone:loc:{tmp_path / 'r'}"
    finally:
        remote.close()


def test_the_frozen_app_uses_the_rclone_next_to_it(tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    bundled = app / "rclone"
    bundled.write_text("#!/bin/sh\necho 'rclone v1.68.2'\n")
    bundled.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app / "plugback"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_rclone() == str(bundled)
    monkeypatch.setattr(sys, "frozen", False)
    with pytest.raises(RcloneMissing):
        find_rclone()


def test_rclone_debug_logging_never_shows_the_rc_password(rclone_env, tmp_path):
    b = RcloneBackend(f"rclone:loc:{tmp_path / 'set'}", extra_args=[*FAST_FAIL, "--log-level", "DEBUG"])
    try:
        b.put("plugback.json", b"{}")
        env_lines = [line for line in b.rcd.log if "RCLONE_RC_PASS" in line]
        password = b.rcd._auth      # the Basic credentials; the password is inside them
    finally:
        b.close()
    assert env_lines and all("***" in line for line in env_lines)
    secret = base64.b64decode(password.split()[1]).decode().split(":", 1)[1]
    assert not any(secret in line for line in b.rcd.log)


def test_a_server_killed_while_rclone_sends_leaves_only_a_part_in_tmp(rclone_env, tmp_path):
    """The kill lands while rclone is writing the blob to the server (the first file that grows
    on the server's side, wherever it is): the torn file is in tmp/, never under the blob's name."""
    server = rclone_env.serve_webdav(tmp_path / "served")
    rclone_env.add_webdav("torn", server)
    b = RcloneBackend("rclone:torn:set", extra_args=FAST_FAIL)
    tmp_on_server = tmp_path / "served" / "set" / "tmp"
    seen: list[Path] = []

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen:
            seen.extend(p for p in (tmp_path / "served" / "set").rglob("*") if p.is_file() and p.stat().st_size > 0)
            time.sleep(0.002)
        server.kill()

    watcher = threading.Thread(target=killer)
    watcher.start()
    try:
        with pytest.raises(RemoteUnavailable):
            b.put("objects/ab/torn", lambda: (bytes([i]) * CHUNK for i in range(48)))
    finally:
        watcher.join()
        b.close()
    assert seen, "the server was never seen receiving the upload"
    assert not (tmp_path / "served" / "set" / "objects" / "ab" / "torn").exists()
    parts = list(tmp_on_server.glob("*.part"))
    assert parts and all(p.stat().st_size <= 48 * CHUNK for p in parts)


def test_a_full_remote_is_remote_full_and_not_retried(rclone_env, make_drive):
    """A real full file system behind an rclone ``local`` remote (a 16 MB ext4 loop drive)."""
    drive = make_drive("ext4", size_mb=16)
    clock = FakeClock()
    b = Retrying(RcloneBackend(f"rclone:loc:{drive.mount_point / 'set'}", extra_args=FAST_FAIL), clock)
    try:
        b.put("plugback.json", b"{}")
        with pytest.raises(RemoteFull) as err:
            b.put("objects/ab/huge", lambda: (bytes([i]) * CHUNK for i in range(32)))
        assert b.retries == 0 and "quota" in str(err.value) and "forget" in str(err.value)
        with pytest.raises(BlobNotFound):
            b.stat("objects/ab/huge")
        assert [i.name for i in b.list()] == ["plugback.json"]
    finally:
        b.close()


def test_backends_can_share_one_rclone(rclone_env, tmp_path):
    first = RcloneBackend(f"rclone:loc:{tmp_path / 'a'}", extra_args=FAST_FAIL)
    second = RcloneBackend(f"rclone:loc:{tmp_path / 'b'}", rcd=first.rcd)
    try:
        second.put("plugback.json", b"b")
        proc = first.rcd._proc
        second.close()                       # not its process: it keeps running
        assert proc.poll() is None and first.rcd._proc is proc
        first.put("plugback.json", b"a")
    finally:
        first.close()
    assert proc.poll() is not None
    assert (tmp_path / "a" / "plugback.json").read_bytes() == b"a"
    assert (tmp_path / "b" / "plugback.json").read_bytes() == b"b"


def test_unstaged_content_goes_straight_to_its_name_and_moves_skip_the_check(rclone_env, tmp_path):
    """rclone's WebDAV backend starts a request every 10 ms at most, so each one saved counts: a
    staged put's move does not look for its name first (a name that exists is then moved the
    checked way, which replaces it), and Unstaged content (a pack) is not staged at all."""
    b = RcloneBackend("rclone:wd:requests", extra_args=FAST_FAIL)
    calls: list[tuple] = []
    real = b.rcd.call

    def call(path, params):
        if path in ("operations/copyfile", "operations/movefile"):
            calls.append((path, params["dstRemote"][:4], params.get("_config")))
        return real(path, params)

    b.rcd.call = call    # type: ignore[method-assign]
    pack, index = "packs/ab/" + "ab" * 32, "index/" + "ab" * 32
    try:
        b.put(pack, Unstaged(b"pack"))
        b.put(index, b"index")
        b.put(index, b"index, again")
        assert b"".join(b.get(pack)) == b"pack" and b"".join(b.get(index)) == b"index, again"
        assert [i.name for i in b.list()] == [index, pack]
    finally:
        b.close()
    fast = {"NoCheckDest": True}
    assert calls == [("operations/copyfile", "pack", fast),
                     ("operations/copyfile", "tmp/", fast), ("operations/movefile", "inde", fast),
                     ("operations/copyfile", "tmp/", fast), ("operations/movefile", "inde", fast),
                     ("operations/movefile", "inde", None)]      # refused (it exists): checked, replaced
