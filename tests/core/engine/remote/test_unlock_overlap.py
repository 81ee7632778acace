"""A backup into an existing remote set scans and reads while the set unlocks (issue #13).

``RemoteSet.open_started`` reads plugback.json and leaves the unlock (the passphrase's scrypt,
maybe a prompt) to the backup, which starts core/engine/remote/ahead.py's thread first: the
scan and the small files' reads and SHA-256, no key, nothing written. Real storage (rclone's
WebDAV on 127.0.0.1, a folder); faults are injected only where a real one cannot be made
(a read error, as root).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.engine import crypto
from core.engine.backup_options import BackupOptions, BackupStatus
from core.engine.progress import Clock, FakeClock, WarningCode
from core.engine.remote import ahead as ahead_mod
from core.engine.remote.backup import backup
from core.engine.remote.check import verify
from core.engine.remote.restore import restore
from core.engine.remote.rset import RemoteSet
from core.engine.verify import VerifyOptions
from core.errors import PassphraseNeeded, WrongPassphrase
from tests.core.engine.remote.conftest import place
from tests.support.cli import run_cli
from tests.support.trees import File, make_tree, read_tree

T0 = 1_700_000_000_000_000_000


def unlock(passphrase: str = "correct horse"):
    return lambda enc, set_id: crypto.unlock_with_passphrase(enc, passphrase)


def stored(root) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def existing(p, tmp_path) -> None:
    """A set with one snapshot (of an empty folder), as `plugback backup` leaves it."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    with RemoteSet.create(p.backend(), Clock().now(), "correct horse") as rset:
        backup(rset, [tmp_path / "empty"])


def source(tmp_path, n: int = 60):
    files = {f"d{i % 4}/small-{i:03}.txt": File(os.urandom(100 + 37 * i), 0o644, T0 + i) for i in range(n)}
    files["twin-a.txt"] = files["twin-b.txt"] = File(b"same content" * 50, 0o600, T0)
    files["big.bin"] = File(os.urandom(3 << 20), 0o644, T0)
    return make_tree(tmp_path / "src" / "Docs", files)


def _ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plugback-ahead"]


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["local", "rclone-webdav"])
def test_a_backup_read_while_the_set_unlocked_restores_byte_for_byte_and_verifies(kind, tmp_path, request):
    p = place(kind, tmp_path, request)
    existing(p, tmp_path)
    src = source(tmp_path)
    read_early = []
    real = ahead_mod.Ahead.handover

    def handover(self):
        read_early.append(sum(1 for f in self._found if f.early is not None and f.early.error is None))
        return real(self)

    def slow_unlock(enc, set_id):
        """As a long scrypt: the key comes once the thread has read every small file (it then ends)."""
        deadline = time.monotonic() + 60
        while _ahead_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        return unlock()(enc, set_id)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ahead_mod.Ahead, "handover", handover)
        with RemoteSet.open_started(p.backend(), slow_unlock) as rset:
            assert not rset.unlocked
            result = backup(rset, [src])
            assert rset.unlocked and result.status is BackupStatus.OK
            assert verify(rset, VerifyOptions(read_all=True)).ok
            restore(rset, tmp_path / "out")
    assert read_early == [62]        # the run took over every small file read before the keys
    assert read_tree(tmp_path / "out" / "Docs", modes=True, mtimes=True) == read_tree(src, modes=True, mtimes=True)
    assert not _ahead_threads()


def test_a_wrong_passphrase_fails_the_backup_leaves_nothing_written_and_no_thread_or_fd(webdav, tmp_path):
    existing(webdav, tmp_path)
    src = source(tmp_path, 300)
    before = stored(webdav.root)
    rset = RemoteSet.open_started(webdav.backend(), unlock("wrong"))
    fds = _fds()      # (with the backend's rclone running: what the backup opens must be closed again)
    real = ahead_mod.read_content

    def slow(path_or_fd, size, update, *scanned):   # the thread still reading, files open ahead, when the unlock fails
        time.sleep(0.01)
        return real(path_or_fd, size, update, *scanned)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(WrongPassphrase):
        mp.setattr(ahead_mod, "read_content", slow)
        backup(rset, [src])
    assert not _ahead_threads()
    assert _fds() <= fds, [os.readlink(f"/proc/self/fd/{f}") for f in _fds() - fds]
    rset.close()
    assert stored(webdav.root) == before


def test_no_passphrase_at_all_is_said_as_before(webdav, tmp_path):
    existing(webdav, tmp_path)
    before = stored(webdav.root)
    with RemoteSet.open_started(webdav.backend()) as rset, pytest.raises(PassphraseNeeded):
        backup(rset, [source(tmp_path)])
    assert stored(webdav.root) == before and not _ahead_threads()


def test_a_read_error_before_the_keys_is_retried_by_the_run(tmp_path, request):
    """The early read's error is the run's first try: sourceread retries it (the file reads then)."""
    p = place("local", tmp_path, request)
    existing(p, tmp_path)
    src = source(tmp_path)
    failed = []

    real = ahead_mod.read_content

    def flaky(path_or_fd, size, update, *scanned):
        if threading.current_thread().name != "plugback-ahead":
            return real(path_or_fd, size, update, *scanned)
        failed.append(path_or_fd)
        if isinstance(path_or_fd, int):
            os.close(path_or_fd)
        raise OSError(5, "Input/output error")

    with pytest.MonkeyPatch.context() as mp, RemoteSet.open_started(p.backend(), unlock()) as rset:
        mp.setattr(ahead_mod, "read_content", flaky)     # only the reads ahead fail
        result = backup(rset, [src], BackupOptions(clock=FakeClock()))   # (the retries' waits)
        assert result.status is BackupStatus.OK and result.warnings == []
        restore(rset, tmp_path / "out")
    assert failed
    assert read_tree(tmp_path / "out" / "Docs") == read_tree(src)


def test_a_file_unreadable_before_and_after_the_keys_is_skipped_with_its_warning(tmp_path, request):
    p = place("local", tmp_path, request)
    existing(p, tmp_path)
    src = source(tmp_path)
    bad = str(src / "d1" / "small-005.txt")
    fds = _fds()

    def unreadable(real):
        def read(path_or_fd, size, update, *scanned):
            name = os.readlink(f"/proc/self/fd/{path_or_fd}") if isinstance(path_or_fd, int) else path_or_fd
            if name == bad:
                if isinstance(path_or_fd, int):
                    os.close(path_or_fd)
                raise PermissionError(13, "Permission denied")
            return real(path_or_fd, size, update, *scanned)
        return read

    with pytest.MonkeyPatch.context() as mp, RemoteSet.open_started(p.backend(), unlock()) as rset:
        mp.setattr(ahead_mod, "read_content", unreadable(ahead_mod.read_content))   # (the run's reads too)
        result = backup(rset, [src], BackupOptions(clock=FakeClock()))   # (the retries' waits)
        assert result.status is BackupStatus.WARNINGS
        assert [(w.code, w.path) for w in result.warnings] == [(WarningCode.UNREADABLE, bad)]
        restore(rset, tmp_path / "out")
    assert not (tmp_path / "out" / "Docs" / "d1" / "small-005.txt").exists()
    assert (tmp_path / "out" / "Docs" / "d1" / "small-001.txt").read_bytes() == (src / "d1" / "small-001.txt").read_bytes()
    assert not _ahead_threads() and _fds() <= fds


def test_folders_the_parent_named_otherwise_are_scanned_again_under_its_names(tmp_path, request):
    """The read-ahead names sources without the parent (it has no key); when the parent gave a
    folder another name, the run scans again under the parent's names (they are kept)."""
    p = place("local", tmp_path, request)
    a = make_tree(tmp_path / "a" / "Docs", {"x.txt": File(b"from a", 0o644, T0)})
    b = make_tree(tmp_path / "b" / "Docs", {"y.txt": File(b"from b", 0o644, T0)})
    with RemoteSet.create(p.backend(), Clock().now(), "correct horse") as rset:
        backup(rset, [a])                               # a's folder is "Docs" in the set
    with RemoteSet.open_started(p.backend(), unlock()) as rset:
        result = backup(rset, [b, a])                   # unplanned, b would be "Docs" and a "Docs-2"
        assert result.status is BackupStatus.OK and result.warnings == []
        restore(rset, tmp_path / "out")
    assert (tmp_path / "out" / "Docs" / "x.txt").read_bytes() == b"from a"
    assert (tmp_path / "out" / "Docs-2" / "y.txt").read_bytes() == b"from b"
    assert not _ahead_threads()


def test_the_command_line_with_a_wrong_passphrase_says_so_and_changes_nothing(webdav, tmp_path):
    existing(webdav, tmp_path)
    src = source(tmp_path, 20)
    before = stored(webdav.root)
    spec = webdav.spec
    wrong = run_cli("backup", src, "--to", spec, env={"PLUGBACK_PASSPHRASE": "wrong"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr
    assert "Wrong passphrase" in wrong.stderr
    assert stored(webdav.root) == before
    right = run_cli("backup", src, "--to", spec, "--json", env={"PLUGBACK_PASSPHRASE": "correct horse"})
    assert right.returncode == 0, right.stderr
    checked = run_cli("verify", spec, "--read-all", env={"PLUGBACK_PASSPHRASE": "correct horse"})
    assert checked.returncode == 0 and "No damage found" in checked.stdout, checked.stdout + checked.stderr


def _counting_scrypt(mp) -> list[str]:
    calls: list[str] = []
    real = crypto._scrypt

    def counted(passphrase, kdf):
        calls.append(passphrase)
        return real(passphrase, kdf)

    mp.setattr(crypto, "_scrypt", counted)
    return calls


def test_a_guessed_passphrase_is_derived_once_ahead_and_the_unlock_takes_it(tmp_path, request):
    p = place("local", tmp_path, request)
    existing(p, tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting_scrypt(mp)
        with RemoteSet.open_started(p.backend(), unlock(), guess="correct horse") as rset:
            rset.unlock()
            assert calls == ["correct horse"]           # not derived again
            assert rset.keys == RemoteSet.open(p.backend(), unlock()).keys
    assert crypto._ahead == {} and not [t for t in threading.enumerate() if t.name == "plugback-kdf"]


def test_a_wrong_guess_changes_nothing_but_cpu(tmp_path, request):
    """The unlocker decides: a guess that is not what opens the set is derived, then dropped."""
    p = place("local", tmp_path, request)
    existing(p, tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting_scrypt(mp)
        with RemoteSet.open_started(p.backend(), unlock(), guess="a stale passphrase") as rset:
            backup(rset, [source(tmp_path, 5)])
        assert sorted(calls) == ["a stale passphrase", "correct horse"]
        with RemoteSet.open_started(p.backend(), unlock("wrong"), guess="wrong") as rset, \
                pytest.raises(WrongPassphrase):
            backup(rset, [source(tmp_path / "again", 5)])
        with RemoteSet.open_started(p.backend(), unlock(), guess="never used"):
            pass                                        # closed without a backup: dropped too
    assert crypto._ahead == {} and not [t for t in threading.enumerate() if t.name == "plugback-kdf"]


def test_the_command_lines_environment_names_are_the_keyrings():
    from core.agent import keys
    from core.cli import remote_cmds

    assert (remote_cmds.ENV_PASSPHRASE, remote_cmds.ENV_RECOVERY_KEY) == (keys.ENV_PASSPHRASE, keys.ENV_RECOVERY_KEY)
