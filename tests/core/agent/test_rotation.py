"""Issue #14 "Rotation": per-drive ages of a job's newest backup, and "no backup for N days" once a day."""

from datetime import date, datetime, timedelta, timezone

import pytest

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.config import Config, Destination, Job
from core.agent.config_file import update_config
from core.agent.rotation import notify_due, overdue, status_lines
from core.engine.progress import FakeClock
from core.platform.notify import read_log
from tests.support.agent import wait_for
from tests.support.trees import make_tree
from tray.menu import build_menu, icon_state, status_line

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.mark.parametrize("since,days,expect", [
    ({"Docs": (NOW - 8 * DAY, False)}, 7, [("Docs", 8, False)]),
    ({"Docs": (NOW - 7 * DAY, False)}, 7, [("Docs", 7, False)]),           # exactly N days: remind
    ({"Docs": (NOW - 7 * DAY + timedelta(minutes=1), False)}, 7, []),
    ({"Docs": (NOW - 30 * DAY, False)}, 0, []),                             # 0 = reminders off
    ({"Docs": (NOW - 9 * DAY, True)}, 7, [("Docs", 9, True)]),              # never succeeded since 1st try
    ({"Docs": (None, True)}, 7, []),                                        # never tried: nothing to say
    ({"A": (NOW - 2 * DAY, False), "B": (NOW - 10 * DAY, False)}, 3, [("B", 10, False)]),
])
def test_overdue_is_a_pure_table(since, days, expect):
    assert [(r.job, r.days, r.never) for r in overdue(since, NOW, days)] == expect


@pytest.mark.parametrize("last,now,due", [
    (None, NOW, True),
    (NOW.date(), NOW, False),
    (NOW.date() - DAY, NOW, True),
    (date(2026, 11, 22), datetime(2026, 11, 22, 23, 59), False),
    (date(2026, 11, 22), datetime(2026, 11, 23, 0, 1), True),
])
def test_one_notification_a_day(last, now, due):
    assert notify_due(last, now) is due


def path_job(paths, src, dest, name="Docs"):
    update_config(paths.config_file, lambda cfg: cfg.jobs.append(
        Job(name=name, sources=[str(src)], destination=Destination(path=str(dest)))))


def reminders_sent(paths):
    return [n for n in read_log(paths.notifications_log) if n["kind"] == "reminder"]


def test_a_job_not_backed_up_for_a_week_is_reminded_once_a_day_even_across_restarts(paths, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    path_job(paths, src, tmp_path / "set")
    clock = FakeClock(current=datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
    agents = []

    def start():
        agents.append(Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None)))
        return agents[-1]

    try:
        agent = start()
        agent.run_job("Docs")
        wait_for(lambda: agent.history.last_success("Docs") and not agent.running(), what="the backup")
        assert agent.check_reminders() == [] and agent.status()["reminders"] == []

        clock.current += timedelta(days=7, hours=1)
        (due,) = agent.check_reminders()
        assert due.job == "Docs" and due.days == 7
        (note,) = reminders_sent(paths)
        assert note["title"] == "Docs has not been backed up for 7 days"
        status = agent.status()
        assert status["jobs"][0]["reminder"]["message"] == "Docs: no backup for 7 days"
        assert [r["job"] for r in status["reminders"]] == ["Docs"]
        state = agent.tray_state()
        assert status_line(state) == "Docs: no backup for 7 days" and icon_state(state) == "attention"
        assert "Reminder: Docs: no backup for 7 days" in status_lines(status, clock.current)

        clock.current += timedelta(hours=3)
        agent.check_reminders()
        agent.shutdown()
        agent = start()                                       # a restart the same day: still one
        agent.check_reminders()
        assert len(reminders_sent(paths)) == 1

        clock.current += DAY                                  # the next day: one more
        agent.check_reminders()
        agent.check_reminders()
        assert [n["title"] for n in reminders_sent(paths)][-1] == "Docs has not been backed up for 8 days"
        assert len(reminders_sent(paths)) == 2

        agent.edit_config(lambda cfg: setattr(cfg.prefs, "remind_after_days", 30))   # the preference
        assert agent.status()["reminders"] == [] and agent.check_reminders() == []
        agent.edit_config(lambda cfg: setattr(cfg.prefs, "remind_after_days", 7))
        agent.run_job("Docs")                                 # a success ends the reminder
        wait_for(lambda: len(agent.history.runs("Docs")) == 2 and not agent.running(), what="the backup")
        assert agent.status()["reminders"] == [] and not agent.tray_state().reminders
    finally:
        for a in agents:
            a.shutdown()


def test_menu_with_several_overdue_jobs_has_one_line_each(paths):
    from core.agent.rotation import Reminder
    from tests.tray.test_menu import state

    rs = [Reminder("Docs", NOW - 9 * DAY, False, 9), Reminder("Pics", NOW - 12 * DAY, True, 12)]
    s = state(reminders=rs)
    items = build_menu(s)
    assert status_line(s) == "2 jobs not backed up for 9 days or more"
    assert [i.text for i in items[1:3]] == ["Docs: no backup for 9 days", "Pics: no successful backup in 12 days"]
    assert all(i.action == "open_settings" for i in items[1:3])


def test_reminder_preference_is_validated():
    from core.agent.config import Prefs
    from core.errors import ConfigError

    assert Prefs.from_dict({"remind_after_days": 0}).remind_after_days == 0
    assert Config().prefs.remind_after_days == 7
    with pytest.raises(ConfigError) as err:
        Prefs.from_dict({"remind_after_days": -1})
    assert err.value.details["field"] == "prefs.remind_after_days"


def _finished(agent, n):
    done = [r for r in agent.history.runs("Docs") if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def test_two_drives_in_rotation(paths, make_agent, make_drive, tmp_path):
    """One job, two drives: each plug-in backs up to the drive that came, into that drive's own set;
    status, the CLI and the menu say per drive how old its newest backup is and which is newest."""
    import json

    from core.agent.config_file import read_config
    from core.engine.repo import BackupSet
    from tests.support.cli import run_cli

    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    blue, red = make_drive("ext4", label="BLUE"), make_drive("ext4", label="RED")
    for drive, label in ((blue, "Blue"), (red, "Red")):
        assert run_cli("drive", "init", str(drive.mount_point), "--label", label).returncode == 0
    added = run_cli("job", "add", "Docs", "--source", str(src), "--drive", "Blue", "--drive", "Red",
                    "--on-connect", "--min-interval", "1")
    assert added.returncode == 0 and "drive 'Blue' or drive 'Red'" in added.stdout, added.stderr
    update_config(paths.config_file, lambda cfg: setattr(cfg.prefs, "connect_delay_seconds", 0))
    cfg = read_config(paths.config_file)
    blue_id, red_id = cfg.jobs[0].destination.drive_ids
    red_mount = red.mount_point
    red.unmount()

    agent, watcher = make_agent()
    watcher.poll()                                            # Blue is here: its backup runs
    (first,) = wait_for(lambda: _finished(agent, 1), what="the backup to Blue")
    assert first.status == "ok" and first.drive_id == blue_id

    blue_mount = blue.mount_point
    blue.unmount()
    watcher.poll()
    red.mount(at=red_mount)
    watcher.poll()                                            # Red comes: within the hour, but Red is behind
    second = wait_for(lambda: _finished(agent, 2), what="the backup to Red")[0]
    assert second.status == "ok" and second.drive_id == red_id
    job = read_config(paths.config_file).jobs[0]
    red_set = job.destination.rotation[0]["set_id"]
    assert job.set_id and red_set and job.set_id != red_set  # each drive holds its own set, bound
    (blue_age, red_age) = agent.status()["jobs"][0]["drives"]
    assert (blue_age["label"], blue_age["newest"], blue_age["last_success"]["id"]) == ("Blue", False, first.id)
    assert (red_age["label"], red_age["newest"], red_age["present"]) == ("Red", True, True)
    drives = {d["label"]: d["last_success"]["id"] for d in agent.status()["drives"]}
    assert drives == {"Blue": first.id, "Red": second.id}

    red.unmount()
    watcher.poll()
    blue.mount(at=blue_mount)
    watcher.poll()                                            # Blue had its backup within the hour
    assert agent.pending == {} and agent.queued() == []
    (src / "a.txt").write_bytes(b"changed")
    agent.run_job("Docs")                                     # by hand: to the drive that is here
    third = wait_for(lambda: _finished(agent, 3), what="the second backup to Blue")[0]
    assert third.drive_id == blue_id and third.files_copied == 1
    assert [d["newest"] for d in agent.status()["jobs"][0]["drives"]] == [True, False]
    assert len(BackupSet.open(next((blue_mount / "Plugback").glob("*/Docs"))).snapshot_ids()) == 2
    red.mount(at=red_mount)
    assert len(BackupSet.open(next((red_mount / "Plugback").glob("*/Docs"))).snapshot_ids()) == 1
    agent.shutdown()

    status = run_cli("status", "--json")                      # without the agent: from the history
    (job_status,) = json.loads(status.stdout)["jobs"]
    assert [(d["label"], d["newest"]) for d in job_status["drives"]] == [("Blue", True), ("Red", False)]
    text = run_cli("status").stdout
    assert "Docs per drive: ‘Blue’ just now (newest) · ‘Red’ just now" in text


S1, S2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


@pytest.mark.parametrize("dest,field", [
    ({"drive_id": "A", "rotation": [{"drive_id": "A"}]}, "job.destination.rotation[0].drive_id"),
    ({"drive_id": "A", "rotation": [{"drive_id": "B"}, {"drive_id": "B"}]}, "job.destination.rotation[1].drive_id"),
    ({"drive_id": "A", "rotation": [{"drive_id": "B", "set_id": "nope"}]}, "job.destination.rotation[0].set_id"),
    ({"drive_id": "A", "rotation": [{"drive_id": "B", "colour": "red"}]}, "job.destination.rotation[0].colour"),
    ({"path": "/backups", "rotation": [{"drive_id": "B"}]}, "job.destination.rotation"),
    ({"drive_id": "A", "rotation": "B"}, "job.destination.rotation"),
])
def test_rotation_in_config_json_is_validated(dest, field):
    from core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Job.from_dict({"name": "Docs", "sources": ["/home/ann"], "destination": dest})
    assert err.value.details["field"] == field


def test_each_drive_keeps_its_own_set_through_edits_and_the_window_cannot_bind_one():
    cfg = Config(drives=[{"drive_id": "A", "label": "Blue"}, {"drive_id": "B", "label": "Red"}])
    cfg.save_job(Job.from_dict({"name": "Docs", "sources": ["/home/ann"], "set_id": S1,
                                "destination": {"drive_id": "A", "rotation": [{"drive_id": "B", "set_id": S2}]}}))
    job = cfg.jobs[0]
    assert job.destination.drive_ids == ["A", "B"]
    assert (job.on_drive("B").destination.drive_id, job.on_drive("B").set_id) == ("B", S2)
    assert job.on_drive("A") is job
    # The window sends set ids back (or forges them): ignored; the edit keeps each drive's binding,
    # also when the drives swap places.
    sent = {**job.to_window(), "destination": {"drive_id": "B", "rotation": [{"drive_id": "A", "set_id": S2}]}}
    cfg.save_job(Job.from_window(sent), "Docs")
    job = cfg.jobs[0]
    assert (job.destination.drive_id, job.set_id) == ("B", S2)
    assert job.destination.rotation == [{"drive_id": "A", "set_id": S1}]
    from core.errors import UsageError

    with pytest.raises(UsageError):
        cfg.forget_drive("Blue")                              # in rotation: in use
    from core.agent.rotation import bind_on

    bind_on(cfg, "Docs", S1.replace("1", "3"), "A")          # a run made a new set on A
    assert cfg.jobs[0].destination.rotation[0]["set_id"] == S1.replace("1", "3")
    assert cfg.jobs[0].set_id == S2


def test_removing_a_job_forgets_the_passphrase_of_every_drives_set():
    from core.agent.adopt import keyring_entries

    job = Job.from_dict({"name": "Docs", "sources": ["/home/ann"], "set_id": S1,
                         "destination": {"drive_id": "A", "rotation": [{"drive_id": "B", "set_id": S2}]}})
    assert keyring_entries(job, []) == ["job:Docs", S1, S2]
    other = Job.from_dict({"name": "Other", "sources": ["/home/ann"], "set_id": S2, "destination": {"drive_id": "B"}})
    assert keyring_entries(job, [other]) == ["job:Docs", S1]      # a set another job uses keeps its entry
