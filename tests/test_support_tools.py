"""tests.support.tools.need: a peer scripts/setup.sh installs, missing, fails the test by name."""

import pytest

from tests.support.tools import need


def test_a_missing_tool_fails_the_test_and_says_what_to_install():
    with pytest.raises(pytest.fail.Exception, match=r"no-such-tool not installed: run scripts/setup.sh"):
        need("rclone", "no-such-tool")


def test_the_tools_setup_installs_are_here():
    need("rclone", "restic", "borg", "rsync")
