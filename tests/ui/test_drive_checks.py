"""The Drives page shows the rolling check of each connected drive (issue #14), from the real agent's
``drives_list`` and the agent's own state files; the check itself is tested in
tests/core/agent/test_rolling.py."""

import json
import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from tests.support.trees import make_tree


def _write_state(agent, set_id, **fields):
    """The agent's rolling-check state of ``set_id`` (core/agent/rolling_state.py's format)."""
    state = {"version": 1, "set_id": set_id, "cursor": {"phase": "objects", "key": ""}, "pass_started": None,
             "done_bytes": 0, "total_bytes": None, "last_full": None, "slices": [], **fields}
    folder = agent.paths.data_dir / "rolling"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{set_id}.json").write_text(json.dumps(state))


@pytest.mark.realdrive
def test_drives_page_shows_last_fully_checked_and_the_pass_under_way(open_page, agent, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    drive_id = agent.call("drive_init", mount=str(ext4_drive.mount_point), label="Blue")["drive_id"]
    agent.call("pause")     # no automatic check may run and write the state while the page is looked at
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"drive_id": drive_id}},
               start=False)
    agent.backup("Docs")
    set_id = agent.call("config_get")["jobs"][0]["set_id"]
    page = open_page("drives")
    check = page.locator(f"[data-drive='{drive_id}'] .last-check")
    expect(check).to_have_text("Not fully checked yet")

    year = datetime.now().year
    _write_state(agent, set_id, cursor={"phase": "latest", "key": "Docs/a.txt"}, pass_started=f"{year}-11-03T12:00:00+00:00",
                 done_bytes=400, total_bytes=1000)
    page.get_by_role("button", name="Refresh").click()
    expect(check).to_have_text(re.compile(r"^Not fully checked yet · checked 40 % since (3 Nov|Nov 3)$"))

    _write_state(agent, set_id, cursor={"phase": "objects", "key": "ab" * 32}, pass_started=f"{year}-11-21T12:00:00+00:00",
                 done_bytes=100, total_bytes=1000, last_full=f"{year}-11-20T12:00:00+00:00")
    page.get_by_role("button", name="Refresh").click()
    expect(check).to_have_text(re.compile(r"^Last fully checked: (20 Nov|Nov 20) · checked 10 % since (21 Nov|Nov 21)$"))

    _write_state(agent, set_id, cursor={"phase": "done", "key": ""}, pass_started=f"{year}-11-21T12:00:00+00:00",
                 done_bytes=1000, total_bytes=1000, last_full=f"{year}-11-24T12:00:00+00:00")
    page.get_by_role("button", name="Refresh").click()
    expect(check).to_have_text(re.compile(r"^Last fully checked: (24 Nov|Nov 24)$"))

    # A state file that does not check out is not shown as a check (a new pass begins instead).
    (agent.paths.data_dir / "rolling" / f"{set_id}.json").write_text('{"version": 1, "set_id": "x"}')
    page.get_by_role("button", name="Refresh").click()
    expect(check).to_have_text("Not fully checked yet")
