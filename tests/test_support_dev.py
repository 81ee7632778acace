"""./dev and .ci/run: CI gets pytest's real exit code, and setup is quick when nothing changed."""

import os
import subprocess
import sys
import time

import pytest

from tests.support import repo_root

ROOT = repo_root()

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="./dev is a bash script (Windows: see README)")


def _dev(*args, timeout=300):
    # The outer run's junit file is written at its end, so the inner one does not clobber it.
    return subprocess.run([str(ROOT / "dev"), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "CI": "true"})


def test_dev_test_returns_pytests_exit_code_even_for_no_tests():
    passed = _dev("test", "tests/test_support_trees.py", "-k", "one_byte_difference", "-p", "no:cacheprovider")
    assert passed.returncode == 0, passed.stdout[-2000:] + passed.stderr[-2000:]
    nothing = _dev("test", "tests/test_support_trees.py", "-k", "no_such_test_anywhere", "-p", "no:cacheprovider")
    assert nothing.returncode == 5, "pytest's 'no tests collected' must reach CI as 5"


def test_setup_is_quick_when_nothing_changed():
    _dev("setup")  # settle (the first call may install after a pyproject change)
    started = time.monotonic()
    again = _dev("setup")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 10
    assert "pip install" not in again.stderr


def test_ci_entry_runs_the_same_command():
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and text.rstrip().endswith("exec ./dev test")
    assert os.access(ROOT / ".ci" / "run", os.X_OK) and os.access(ROOT / "dev", os.X_OK)
