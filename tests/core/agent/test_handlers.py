"""core/agent/handlers.py on a real in-process agent: what each command does to the real config file,
and which replies bad arguments get (the IPC transport itself is tested in test_ipc.py)."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from core.agent.handlers import COMMANDS, Handlers
from core.errors import BadRequest, ConfigError, NotFound, UsageError
from tests.support.env import repo_root


@pytest.fixture
def handlers(make_agent):
    agent, _ = make_agent()
    return Handlers(agent).table()


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "Docs").mkdir()
    return {"name": "Docs", "sources": [str(tmp_path / "Docs")], "destination": {"path": str(tmp_path / "set")}}


def on_disk(paths):
    return json.loads(paths.config_file.read_text())


def test_the_table_is_the_documented_protocol(handlers):
    documented = re.findall(r"^\| `(\w+)` \|", (repo_root() / "docs" / "ipc.md").read_text(), re.M)
    assert sorted(documented) == sorted(COMMANDS) == sorted(handlers)


def test_job_save_takes_schedule_fields_and_stores_the_canonical_spec(handlers, paths, docs):
    job = {**docs, "triggers": {"on_connect": False, "schedule_fields": {"kind": "daily", "time": "9:30"}}}
    saved = handlers["job_save"]({"job": job})["job"]
    assert saved["triggers"]["schedule_fields"] == {"kind": "daily", "time": "09:30"}
    assert on_disk(paths)["jobs"][0]["triggers"]["schedule"] == "daily@09:30"
    got = handlers["config_get"]({})["jobs"][0]["triggers"]
    assert got["summary"] == "daily at 09:30" and got["schedule"] == "daily@09:30"
    # The window sends back what it was given (fields and summary included): nothing is lost.
    renamed = {**handlers["config_get"]({})["jobs"][0], "name": "Papers"}
    handlers["job_save"]({"job": renamed, "original_name": "Docs"})
    assert [(j["name"], j["triggers"]["schedule"]) for j in on_disk(paths)["jobs"]] == [("Papers", "daily@09:30")]


def test_job_edits_follow_the_config_rules(handlers, paths, docs):
    handlers["job_save"]({"job": docs})
    with pytest.raises(UsageError, match="exists"):
        handlers["job_save"]({"job": {**docs, "name": "docs"}})
    with pytest.raises(ConfigError, match="schedule_fields"):
        handlers["job_save"]({"job": {**docs, "triggers": {"schedule_fields": {"kind": "weekly", "time": "09:00"}}}})
    with pytest.raises(NotFound):
        handlers["job_remove"]({"name": "Gone"})
    handlers["job_remove"]({"name": "DOCS"})
    assert on_disk(paths)["jobs"] == []


def test_drive_forget_is_refused_while_a_job_uses_the_drive(handlers, paths, docs):
    from core.agent.config_file import update_config

    update_config(paths.config_file, lambda c: c.enroll_drive("d1", "Blue"))
    handlers["job_save"]({"job": {**docs, "destination": {"drive_id": "d1"}}})
    with pytest.raises(UsageError, match="Docs"):
        handlers["drive_forget"]({"drive_id": "d1"})
    handlers["job_remove"]({"name": "Docs"})
    handlers["drive_forget"]({"drive_id": "d1"})
    assert on_disk(paths)["drives"] == []


@pytest.mark.parametrize("cmd, args", [
    ("run_job", {}), ("run_job", {"name": 5}), ("job_remove", {"name": ""}), ("pause", {"until": "tomorrow"}),
    ("history", {"limit": "10"}), ("history", {"limit": 0}), ("run_log", {"run_id": "7"}), ("run_log", {}),
    ("prefs_save", {"prefs": ["x"]}), ("eject", {}), ("drive_init", {"mount": None}),
    ("ls", {"job": "Docs", "path": 3}), ("search", {"job": "Docs"}), ("restore", {"job": "Docs", "paths": "a"}),
    ("exclude_preview", {"sources": "/home"}),
])
def test_bad_arguments_are_bad_requests(handlers, cmd, args):
    with pytest.raises(BadRequest) as info:
        handlers[cmd](args)
    assert info.value.code == "bad_request" and "must be" in info.value.message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG autostart entries are Linux's")
def test_start_at_login_stays_under_plugback_home(handlers, paths, plugback_env):
    entry = Path(os.environ["PLUGBACK_HOME"]) / "autostart" / "plugback.desktop"
    real_place = Path(plugback_env.vars["XDG_CONFIG_HOME"]) / "autostart"
    handlers["prefs_save"]({"prefs": {"start_at_login": True}})
    assert "Exec=" in entry.read_text() and not real_place.exists()
    handlers["prefs_save"]({"prefs": {"start_at_login": False}})
    assert not entry.exists() and not real_place.exists()


@pytest.mark.parametrize("key, value, message", [
    ("full_scan_days", 0, "Must be between 1 and 365."), ("full_scan_runs", -1, "Must be between 0 and 10000."),
    ("live_quiet_seconds", None, "Must be a whole number of seconds."), ("battery_threshold", 101, "Must be between 0 and 100.")])
def test_prefs_save_refuses_a_bad_value_naming_its_field(handlers, paths, key, value, message):
    before = handlers["prefs_save"]({"prefs": {"full_scan_days": 3}})["prefs"]
    with pytest.raises(ConfigError) as info:
        handlers["prefs_save"]({"prefs": {key: value}})
    assert info.value.to_dict() == {"ok": False, "code": "bad_config", "message": message, "field": key}
    assert on_disk(paths)["prefs"] == before


def test_prefs_save_keeps_the_change_journal_preferences(handlers, paths):
    saved = handlers["prefs_save"]({"prefs": {"full_scan_days": 3, "full_scan_runs": 20, "live_quiet_seconds": 45}})
    assert {k: on_disk(paths)["prefs"][k] for k in ("full_scan_days", "full_scan_runs", "live_quiet_seconds")} == \
        {"full_scan_days": 3, "full_scan_runs": 20, "live_quiet_seconds": 45} == \
        {k: saved["prefs"][k] for k in ("full_scan_days", "full_scan_runs", "live_quiet_seconds")}
