"""Fixtures for the agent tests: a real in-process agent on this test's PLUGBACK_HOME."""

import pytest

from tray.agent import Agent, AgentOptions
from tray.watcher import DriveWatcher


@pytest.fixture
def make_agent(paths):
    """Factory for an in-process agent (no icon, no IPC); shut down after the test."""
    agents = []

    def make(battery=lambda: None, **kw):
        agent = Agent(paths, options=AgentOptions(battery=battery, **kw))
        agents.append(agent)
        return agent, DriveWatcher(agent, interval=0.2)

    yield make
    for agent in agents:
        agent.shutdown(cancel=True, timeout=30)
