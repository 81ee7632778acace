"""tray/menu.py: the menu and icon state as a pure function of the agent's state."""

from datetime import datetime, timedelta, timezone

import pytest

from core.agent.agent_state import DriveState, PendingConnect, TrayState
from tray.menu import ago, build_menu, icon_state, status_line, tomorrow_morning, tooltip

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def job(name="Docs", present=True, last_status="ok", minutes_ago=10, attention=None):
    """A TrayState job as Agent.tray_state builds it (``attention`` comes from core.agent.status)."""
    t = NOW - timedelta(minutes=minutes_ago) if last_status else None
    if attention is None and last_status in ("failed", "drive_removed"):
        attention = "the drive was removed during the backup" if last_status == "drive_removed" else "drive full"
    return {"name": name, "present": present, "last_status": last_status, "last_time": t,
            "last_ok": t if last_status in ("ok", "warnings") else None, "attention": attention}


def state(**kw):
    base = dict(now=NOW, jobs=[job()], drives=[DriveState("d1", "Blue", "/media/blue")], running=[], pending=[],
                paused=False, paused_until=None, problem=None, backend="appindicator", busy_drives=set())
    base.update(kw)
    return TrayState(**base)


def texts(items):
    return [i.text for i in items]


@pytest.mark.parametrize("kw,line,icon", [
    ({}, "Last successful backup 10 min ago", "idle"),
    ({"jobs": []}, "No backup jobs yet", "idle"),
    ({"jobs": [job(last_status=None)]}, "No successful backup yet", "idle"),
    ({"jobs": [job(last_status="cancelled")]}, "No successful backup yet", "idle"),   # stopped by the user
    ({"running": [{"job": "Documents", "percent": 42, "phase": "copy"}]}, "Backing up Documents… 42%", "running"),
    ({"running": [{"job": "Offsite", "percent": 42, "phase": "copy",
                   "progress": {"uploaded": 12_500_000, "speed": 1_250_000}}]},
     "Backing up Offsite… 42% · 12.5 MB uploaded, 1.2 MB/s", "running"),   # to a remote (issue #13)
    ({"jobs": [job(), {**job("Offsite", last_status=None), "waiting": {"text": "waiting for the network"}}]},
     "Offsite: waiting for the network", "idle"),
    ({"running": [{"job": "Docs", "percent": None, "phase": "scan"}, {"job": "Pics", "percent": 3, "phase": "copy"}]},
     "Backing up Docs… (+1 more)", "running"),
    ({"jobs": [job(last_status="failed")]}, "Docs needs attention: not backed up", "attention"),
    ({"jobs": [job(last_status="drive_removed")]}, "Docs needs attention: not backed up", "attention"),
    ({"jobs": [job(last_status="failed"), job("Pics", last_status="failed"), job("Huge", last_status="ok")]},
     "2 jobs need attention", "attention"),
    ({"problem": "The settings file was damaged"}, "Needs attention: The settings file was damaged", "attention"),
    ({"paused": True}, "Automatic backups paused until you resume them", "paused"),
])
def test_status_line_and_icon(kw, line, icon):
    s = state(**kw)
    assert status_line(s) == line and icon_state(s) == icon
    assert tooltip(s).endswith(line)


def test_idle_menu_order_and_actions():
    items = build_menu(state())
    assert texts(items) == ["Last successful backup 10 min ago", "-", "Back up now", "Stop backup", "Pause automatic backups",
                            "-", "Restore files…", "Open settings…", "Eject Blue", "-", "Quit Plugback"]
    assert not items[0].enabled and items[0].action is None
    backup = items[2]
    assert [(i.text, i.action, i.args) for i in backup.submenu] == [
        ("All jobs", "run_all", ()), ("-", None, ()), ("Docs", "run_job", ("Docs",))]
    assert not items[3].enabled                       # nothing to stop
    pause = items[4].submenu
    assert [i.text for i in pause] == ["For 1 hour", "Until tomorrow", "Until I resume"]
    assert pause[0].args == (NOW + timedelta(hours=1),) and pause[2].args == (None,)
    assert items[7].default and items[7].action == "open_settings"
    assert items[8].action == "eject" and items[8].args == ("d1",)
    assert items[-1].action == "quit"


def test_running_menu_can_stop_and_hides_eject_of_busy_drive():
    items = build_menu(state(running=[{"job": "Docs", "percent": 5, "phase": "copy"}], busy_drives={"d1"}))
    stop = next(i for i in items if i.text == "Stop backup")
    assert stop.enabled and stop.action == "stop"
    assert not any(i.text.startswith("Eject") for i in items)


def test_absent_drive_job_cannot_run_now_and_absent_drive_no_eject():
    items = build_menu(state(jobs=[job(present=False)], drives=[DriveState("d1", "Blue", None)]))
    sub = items[2].submenu
    assert not sub[0].enabled and not sub[2].enabled
    assert not any(i.text.startswith("Eject") for i in items)


def test_paused_menu_offers_resume():
    until = NOW + timedelta(hours=1)
    s = state(paused=True, paused_until=until)
    items = build_menu(s)
    assert "Resume automatic backups" in texts(items) and "Pause automatic backups" not in texts(items)
    assert status_line(s) == f"Automatic backups paused until today {until.astimezone().strftime('%H:%M')}" \
        or status_line(s).startswith("Automatic backups paused until tomorrow")   # near local midnight


def test_each_job_needing_attention_gets_a_line_that_opens_the_settings():
    s = state(jobs=[job("Huge", last_status="drive_removed", minutes_ago=2), job("Docs")])
    items = build_menu(s)
    assert texts(items)[:2] == ["Huge needs attention: not backed up",
                                "Huge: last attempt failed 2 min ago — the drive was removed during the backup"]
    assert items[1].action == "open_settings" and items[1].enabled
    assert not any("last backup" in t for t in texts(items))   # a failed run is never called a backup


def test_pending_connect_backup_is_cancellable():
    p = PendingConnect("d1", ["Docs"], NOW + timedelta(seconds=3))
    items = build_menu(state(pending=[p]))
    assert items[1].text == "Backup to Blue starts in 3 s — Cancel" and items[1].action == "cancel_pending"
    assert items[1].args == ("d1",)
    assert (items[2].text, items[2].action, items[2].args) == ("Restore from Blue instead", "restore_instead", ("d1",))
    assert next(i for i in items if i.text == "Stop backup").enabled


def test_xorg_backend_is_named_in_tooltip():
    assert "no tray menu" in tooltip(state(backend="xorg (no menu)"))


@pytest.mark.parametrize("secs,text", [(30, "just now"), (600, "10 min ago"), (3 * 3600, "3 h ago"),
                                       (30 * 3600, "30 h ago"), (40 * 3600, "2 days ago"), (86400 * 5, "5 days ago")])
def test_ago(secs, text):
    assert ago(NOW - timedelta(seconds=secs), NOW) == text


def test_tomorrow_morning_is_local_8am_next_day():
    t = tomorrow_morning(NOW)
    assert t.hour == 8 and t.minute == 0 and t > NOW and t - NOW < timedelta(hours=33)
