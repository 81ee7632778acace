"""tray/menu.py: the menu and icon state as a pure function of the agent's state."""

from datetime import datetime, timedelta, timezone

import pytest

from core.agent.agent import DriveState, PendingConnect, TrayState
from tray.menu import ago, build_menu, icon_state, status_line, tomorrow_morning, tooltip

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def job(name="Docs", present=True, last_status="ok", minutes_ago=10):
    t = NOW - timedelta(minutes=minutes_ago) if last_status else None
    return {"name": name, "present": present, "last_status": last_status, "last_time": t,
            "last_ok": t if last_status in ("ok", "warnings") else None}


def state(**kw):
    base = dict(now=NOW, jobs=[job()], drives=[DriveState("d1", "Blue", "/media/blue")], running=[], pending=[],
                paused=False, paused_until=None, problem=None, backend="appindicator", busy_drives=set())
    base.update(kw)
    return TrayState(**base)


def texts(items):
    return [i.text for i in items]


@pytest.mark.parametrize("kw,line,icon", [
    ({}, "Last backup 10 min ago", "idle"),
    ({"jobs": []}, "No backup jobs yet", "idle"),
    ({"jobs": [job(last_status=None)]}, "No backup yet", "idle"),
    ({"running": [{"job": "Documents", "percent": 42, "phase": "copy"}]}, "Backing up Documents… 42%", "running"),
    ({"running": [{"job": "Docs", "percent": None, "phase": "scan"}, {"job": "Pics", "percent": 3, "phase": "copy"}]},
     "Backing up Docs… (+1 more)", "running"),
    ({"jobs": [job(last_status="failed")]}, "Docs: last backup failed", "attention"),
    ({"jobs": [job(last_status="drive_removed")]}, "Docs: last backup drive removed", "attention"),
    ({"problem": "The settings file was damaged"}, "Needs attention: The settings file was damaged", "attention"),
    ({"paused": True}, "Automatic backups paused", "paused"),
])
def test_status_line_and_icon(kw, line, icon):
    s = state(**kw)
    assert status_line(s) == line and icon_state(s) == icon
    assert tooltip(s).endswith(line)


def test_idle_menu_order_and_actions():
    items = build_menu(state())
    assert texts(items) == ["Last backup 10 min ago", "-", "Back up now", "Stop backup", "Pause automatic backups",
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
    assert status_line(s) == f"Automatic backups paused until {until.astimezone().strftime('%H:%M')}"


def test_pending_connect_backup_is_cancellable():
    p = PendingConnect("d1", ["Docs"], NOW + timedelta(seconds=3))
    items = build_menu(state(pending=[p]))
    assert items[1].text == "Backup to Blue starts in 3 s — Cancel" and items[1].action == "cancel_pending"
    assert items[1].args == ("d1",)
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
