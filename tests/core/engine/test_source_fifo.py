"""A source file the scan saw as a regular file, replaced by a FIFO before it is read: the read
neither waits for a writer that never comes nor stores the FIFO's nothing as the file's content
(fs.SOURCE_FLAGS: opened without waiting; lean_child.is_changed: not a regular file = changed)."""

import os
import sys
import threading

import pytest

from core.engine import store
from core.engine.remote import ahead

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no FIFOs on Windows")


def _fifo(tmp_path):
    path = tmp_path / "was-a-file"
    os.mkfifo(path)
    return path


def _within(seconds: float, fn):
    """fn() run in a thread: its result, or a failure if it is still waiting after ``seconds`` (a
    reader blocked in open is released by opening the FIFO for writing)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:   # noqa: BLE001 - handed to the test
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return t, out


def _release(path):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.mark.parametrize("reader", ["read_whole", "read_source"])
def test_a_fifo_swapped_in_is_a_changed_file_not_a_wait(tmp_path, reader):
    import hashlib
    import io

    path = _fifo(tmp_path)
    mtime = os.lstat(path).st_mtime_ns   # (the same mtime as the scan saw: only the type tells)
    if reader == "read_whole":
        call = lambda: store.read_whole(str(path), 5, mtime)   # noqa: E731
    else:
        call = lambda: store.read_source(str(path), io.BytesIO(), hashlib.sha256(), 5, mtime)   # noqa: E731
    t, out = _within(10, call)
    waited = t.is_alive()
    _release(path)
    t.join(5)
    assert not waited, "the read waited on the FIFO"
    assert "error" not in out, out.get("error")
    assert out["value"][1] is True          # changed: the run reads it again or leaves it out


def test_a_remote_backup_does_not_store_a_fifo_as_empty_content(tmp_path):
    path = _fifo(tmp_path)
    t, out = _within(10, lambda: ahead.read_content(str(path), 5, lambda _b: None))
    waited = t.is_alive()
    _release(path)
    t.join(5)
    assert not waited, "the read waited on the FIFO"
    assert isinstance(out.get("error"), OSError) and "no longer a regular file" in str(out["error"])


def test_a_regular_file_reads_as_before(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    mtime = os.lstat(path).st_mtime_ns
    assert store.read_whole(str(path), 5, mtime) == (b"hello", False)
    assert ahead.read_content(str(path), 5, lambda _b: None) == (5, b"hello")
