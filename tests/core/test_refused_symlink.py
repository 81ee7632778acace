"""core.errors.refused_symlink: the one test every O_NOFOLLOW opener asks of its OSError."""

from __future__ import annotations

import errno
import os

import pytest

from core.errors import refused_symlink

pytestmark = pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="O_NOFOLLOW is POSIX only")


def test_an_open_refusing_a_real_symlink_is_told(tmp_path):
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError) as caught:
        os.open(tmp_path / "link", os.O_RDONLY | os.O_NOFOLLOW)
    assert refused_symlink(caught.value)


def test_other_failures_are_not_a_refused_symlink(tmp_path):
    with pytest.raises(OSError) as caught:
        os.open(tmp_path / "missing", os.O_RDONLY | os.O_NOFOLLOW)
    assert not refused_symlink(caught.value)
    assert not refused_symlink(OSError(errno.EACCES, "denied"))
    assert not refused_symlink(OSError("no errno at all"))


def test_freebsds_answer_counts_too():
    assert refused_symlink(OSError(errno.EMLINK, "Too many links"))
