"""Helpers shared by the agent tests (fixtures are in conftest.py)."""

import time
from collections import namedtuple

import pytest

from core.config import Config, Destination, Job, Paths, Triggers, update_config
from core.drives import enroll

Battery = namedtuple("Battery", "percent secsleft power_plugged")


def wait_for(condition, timeout=20.0, what="condition"):
    """Poll ``condition`` until it is truthy; return its value or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


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


