"""The tray says which jobs back up live (issue #12): a pure function of the agent's state."""

from tests.tray.test_menu import job, state
from tray.menu import status_line


def test_status_line_names_live_jobs_whose_drive_is_here():
    live, away = {**job("Docs"), "live": True}, {**job("Pics", present=False), "live": True}
    assert status_line(state(jobs=[live, away])) == "Last successful backup 10 min ago · live: Docs"
    assert status_line(state(jobs=[job("Docs")])) == "Last successful backup 10 min ago"
    running = [{"job": "Docs", "percent": 42, "phase": "copy"}]
    assert status_line(state(jobs=[live], running=running)) == "Backing up Docs… 42%"
