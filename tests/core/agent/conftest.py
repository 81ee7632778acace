"""Fixtures for the agent tests: a real in-process agent on this test's PLUGBACK_HOME."""

from tests.support.agent import make_agent  # noqa: F401 - a fixture, used by name
