"""Helpers shared by the agent and tray tests: a drive job, a battery, an in-process agent fixture."""

from collections import namedtuple

import pytest

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.config import Config, Destination, Job, Paths, Triggers
from core.agent.config_file import update_config
from core.agent.drives import enroll
from core.agent.watcher import DriveWatcher
from tests.support.waiting import wait_for  # noqa: F401 - re-exported for the tray tests

Battery = namedtuple("Battery", "percent secsleft power_plugged")


def add_drive_job(paths: Paths, mount, sources, name="Docs", *, on_connect=True, delay=0, label="Blue", **job_kw):
    """Enroll the drive at ``mount`` and add a job for it, as the CLI would; returns the drive_id."""
    info, _ = enroll(mount, label)

    def change(cfg: Config):
        if not cfg.drive(info.drive_id):
            cfg.drives.append({"drive_id": info.drive_id, "label": label})
        cfg.jobs.append(Job(name=name, sources=[str(s) for s in sources],
                            destination=Destination(drive_id=info.drive_id),
                            triggers=Triggers(on_connect=on_connect), **job_kw))
        cfg.prefs.connect_delay_seconds = delay

    update_config(paths.config_file, change)
    return info.drive_id


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
