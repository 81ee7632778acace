"""Fixtures for the agent tests: a real in-process agent on this test's PLUGBACK_HOME, and an
rclone configuration with a ``local`` remote for the remote-set tests."""

import pytest

from tests.support.agent import make_agent  # noqa: F401 - a fixture, used by name
from tests.support.rclone import local_remote_config


@pytest.fixture(scope="module")
def rclone_config(tmp_path_factory):
    """RCLONE_CONFIG's path for a module's tests: one ``local`` remote (tests/support/rclone.py)."""
    return local_remote_config(tmp_path_factory)
