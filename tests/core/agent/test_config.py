"""core/agent/config.py: validation names the field, broken files are kept aside, writes are atomic."""

import json
import multiprocessing

import pytest

from core.agent.config import Config, Destination, Job, Paths, Triggers
from core.agent.config_file import load_or_recover, read_config, update_config, write_config
from core.errors import ConfigError, NotFound, UsageError


def good_job(**over):
    d = {"name": "Docs", "sources": ["/home/u/Docs"], "destination": {"drive_id": "d1"},
         "triggers": {"on_connect": True, "schedule": "daily@09:30"}, "retention": {"keep_last": 5}}
    d.update(over)
    return d


def write_raw(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def test_round_trip(tmp_path):
    path = tmp_path / "config.json"
    cfg = Config.from_dict({"version": 1, "jobs": [good_job()], "drives": [{"drive_id": "d1", "label": "Blue"}],
                            "prefs": {"battery_threshold": 30}})
    write_config(path, cfg)
    again = read_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.job("docs").triggers.schedule == "daily@09:30"
    assert again.drive("blue")["drive_id"] == "d1" and again.drive("d1")["label"] == "Blue"
    assert again.prefs.battery_threshold == 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".config-")]   # no temp left over


@pytest.mark.parametrize("data,field", [
    ({"version": 1, "jobs": [good_job(sources="/home")]}, "jobs[Docs].sources"),
    ({"version": 1, "jobs": [good_job(sources=["relative/dir"])]}, "jobs[Docs].sources[0]"),
    ({"version": 1, "jobs": [good_job(destination={})]}, "jobs[Docs].destination"),
    ({"version": 1, "jobs": [good_job(destination={"drive_id": "d", "folder": "../x"})]},
     "jobs[Docs].destination.folder"),
    ({"version": 1, "jobs": [good_job(triggers={"schedule": "sometimes"})]}, "jobs[Docs].triggers.schedule"),
    ({"version": 1, "jobs": [good_job(triggers={"on_connect": "yes"})]}, "jobs[Docs].triggers.on_connect"),
    ({"version": 1, "jobs": [good_job(retention={"keep_daily": -2})]}, "jobs[Docs].retention.keep_daily"),
    ({"version": 1, "jobs": [good_job(retention={"keep_forever": 1})]}, "jobs[Docs].retention.keep_forever"),
    ({"version": 1, "jobs": [good_job(verify="maybe")]}, "jobs[Docs].verify"),
    ({"version": 1, "jobs": [good_job(name="a/b")]}, "jobs[a/b].name"),
    ({"version": 1, "jobs": [good_job(), good_job(name="DOCS")]}, "jobs[DOCS].name"),
    ({"version": 1, "prefs": {"battery_threshold": 101}}, "prefs.battery_threshold"),
    ({"version": 1, "prefs": {"notifcations": True}}, "prefs.notifcations"),
    ({"version": 1, "drives": [{"label": "x"}]}, "drives[0].drive_id"),
    ({"jobs": []}, "version"),
    ({"version": 7}, "version"),
])
def test_validation_names_the_field(tmp_path, data, field):
    path = tmp_path / "config.json"
    write_raw(path, data)
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert info.value.details["field"] == field
    assert f"'{field}'" in info.value.message and str(path) in info.value.message


def test_missing_file_is_empty_config(tmp_path):
    assert read_config(tmp_path / "none.json").jobs == []


def test_broken_file_is_moved_aside_not_overwritten(tmp_path):
    path = tmp_path / "config.json"
    write_raw(path, '{"version": 1, "jobs": [')
    cfg, moved, err = load_or_recover(path)
    assert cfg.jobs == [] and err.details["field"] == "(file)" and "JSON" in err.message
    assert moved.name.startswith("config.json.broken-") and moved.read_text() == '{"version": 1, "jobs": ['
    assert not path.exists()


def test_newer_version_is_left_alone(tmp_path):
    path = tmp_path / "config.json"
    write_raw(path, {"version": 99})
    with pytest.raises(ConfigError, match="newer"):
        load_or_recover(path)
    assert path.exists()


def test_update_refuses_broken_file_without_fallback(tmp_path):
    path = tmp_path / "config.json"
    write_raw(path, {"version": 1, "jobs": [good_job(verify="maybe")]})
    with pytest.raises(ConfigError, match="verify"):
        update_config(path, lambda c: None)
    assert "maybe" in path.read_text()      # untouched


def test_update_with_fallback_keeps_the_broken_file_aside(tmp_path):
    path = tmp_path / "config.json"
    last_good = Config.from_dict({"version": 1, "jobs": [good_job()]})
    write_raw(path, "garbage")
    cfg, moved = update_config(path, lambda c: c.drives.append({"drive_id": "d2", "label": "Red"}),
                               fallback=last_good)
    assert moved.read_text() == "garbage"
    assert [j.name for j in read_config(path).jobs] == ["Docs"] and cfg.drive("Red")


def test_update_validates_before_writing(tmp_path):
    path = tmp_path / "config.json"
    write_config(path, Config())

    def bad_change(c):
        c.jobs.append(Job(name="X", sources=["rel"], destination=Destination(path="/b")))

    with pytest.raises(ConfigError, match="sources"):
        update_config(path, bad_change)
    assert read_config(path).jobs == []


def _add_drives(path, start, n):
    for i in range(start, start + n):
        update_config(path, lambda c, i=i: c.drives.append({"drive_id": f"d{i}", "label": ""}))


def test_lock_serialises_concurrent_writers(tmp_path):
    """Two processes doing read-modify-write lose nothing (the CLI and the agent at once)."""
    path = tmp_path / "config.json"
    write_config(path, Config())
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_drives, args=(path, k * 100, 25)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert len(read_config(path).drives) == 50


def test_paths_follow_plugback_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGBACK_HOME", str(tmp_path))
    paths = Paths.default()
    assert paths.config_file == tmp_path / "config.json"
    assert paths.history_file == tmp_path / "history.sqlite3"
    assert paths.ipc_key_file.parent == tmp_path and paths.log_dir == tmp_path / "logs"
    assert paths.autostart_dir == tmp_path / "autostart"   # never the real login items


def test_paths_default_to_platformdirs(monkeypatch):
    monkeypatch.delenv("PLUGBACK_HOME", raising=False)
    paths = Paths.default()
    assert "plugback" in str(paths.config_dir).lower() and paths.config_dir.is_absolute()
    assert paths.autostart_dir is None   # the OS's own place


def test_destination_keys_group_runners():
    assert Destination(drive_id="a", folder="x").key() == Destination(drive_id="a").key()
    assert Destination(path="/b").key() != Destination(drive_id="b").key()
    assert Triggers().to_dict()["on_connect"] is False


# -- schedules: stored in their canonical form ---------------------------------------------------

def test_a_schedule_is_canonical_on_load_and_when_written(tmp_path):
    path = tmp_path / "config.json"
    write_raw(path, {"version": 1, "jobs": [good_job(triggers={"schedule": "Daily@9:30"})]})
    assert read_config(path).jobs[0].triggers.schedule == "daily@09:30"
    update_config(path, lambda c: None)
    assert json.loads(path.read_text())["jobs"][0]["triggers"]["schedule"] == "daily@09:30"


def test_the_window_gets_and_sends_schedule_fields():
    job = Job.from_dict(good_job(triggers={"on_connect": True, "schedule": "MON@7:05"}))
    sent = job.to_window()["triggers"]
    assert sent["schedule"] == "mon@07:05"
    assert sent["schedule_fields"] == {"kind": "weekly", "day": "mon", "time": "07:05"}
    assert sent["summary"] == "when the drive is connected and every Monday at 07:05"
    back = Job.from_window({**job.to_dict(), "triggers": {**sent, "schedule_fields": {"kind": "daily", "time": "9:30"}}})
    assert back.triggers.schedule == "daily@09:30" and back.triggers.on_connect
    # A window that sends back what it got changes nothing; null fields = no schedule.
    assert Job.from_window(job.to_window()) == job
    cleared = Job.from_window({**job.to_dict(), "triggers": {**sent, "schedule_fields": None}})
    assert cleared.triggers.schedule is None
    assert Triggers().to_window()["summary"] == "only when started by hand"


def test_bad_schedule_fields_name_the_field():
    with pytest.raises(ConfigError) as info:
        Job.from_window(good_job(triggers={"schedule_fields": {"kind": "daily", "time": "25:00"}}))
    assert info.value.details["field"] == "job.triggers.schedule_fields" and "HH:MM" in info.value.message
    with pytest.raises(ConfigError) as info:
        Job.from_dict(good_job(triggers={"schedule_fields": {"kind": "daily", "time": "09:00"}}))
    assert info.value.details["field"] == "job.triggers.schedule_fields"   # not a config.json key


# -- edits: one place for each rule, used by the CLI and the agent ---------------------------------

def test_save_job_adds_renames_and_refuses_clashes():
    cfg = Config(drives=[{"drive_id": "d1", "label": "Blue"}])
    cfg.save_job(Job.from_dict(good_job()))
    cfg.save_job(Job.from_dict(good_job(name="Photos")))
    with pytest.raises(UsageError, match="A job named 'Docs' exists"):
        cfg.save_job(Job.from_dict(good_job(name="docs")))            # names are case-insensitive
    with pytest.raises(UsageError, match="'Docs' exists"):
        cfg.save_job(Job.from_dict(good_job(name="DOCS")), "Photos")  # a rename onto another job
    cfg.save_job(Job.from_dict(good_job(name="Papers")), "docs")      # a rename keeps the place
    assert [j.name for j in cfg.jobs] == ["Papers", "Photos"]
    with pytest.raises(NotFound):
        cfg.save_job(Job.from_dict(good_job(name="X")), "Gone")
    assert cfg.remove_job("photos").name == "Photos" and [j.name for j in cfg.jobs] == ["Papers"]
    with pytest.raises(NotFound):
        cfg.remove_job("Photos")


def test_drive_edits():
    cfg = Config()
    cfg.enroll_drive("d1", "Blue")
    cfg.enroll_drive("d1", "Red")                      # enrolled again: only the label changes
    assert cfg.drives == [{"drive_id": "d1", "label": "Red"}]
    cfg.save_job(Job.from_dict(good_job()))
    with pytest.raises(UsageError, match="Docs"):
        cfg.forget_drive("red")                        # by label, but a job still uses it
    cfg.remove_job("Docs")
    assert cfg.forget_drive("red")["drive_id"] == "d1" and cfg.drives == []
    with pytest.raises(NotFound):
        cfg.forget_drive("d1")
