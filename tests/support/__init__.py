"""Helpers shared by the whole test suite (fixtures that use them are in tests/conftest.py).

    from tests.support import make_tree, read_tree, Symlink, File, run_cli
"""

from tests.support.cli import plugback_executable, run_cli
from tests.support.env import TestEnv, artifacts_dir, repo_root
from tests.support.keyring_backend import MemoryKeyring
from tests.support.trees import File, Symlink, make_tree, read_tree

__all__ = [
    "File", "MemoryKeyring", "Symlink", "TestEnv", "artifacts_dir", "make_tree", "plugback_executable",
    "read_tree", "repo_root", "run_cli",
]
