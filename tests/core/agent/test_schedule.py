"""Table tests of the pure trigger rules in core/agent/schedule.py, with a fake clock (plain datetimes)."""

from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.agent.config import Destination, Job, Triggers
from core.agent.schedule import Spec, connect_due, due, from_fields, next_due, parse_spec

TZ = timezone(timedelta(hours=2))  # the user's local zone; slots live in it


def t(day, hh, mm=0):
    """2026-11-<day> hh:mm local (2026-11-23 is a Monday)."""
    return datetime(2026, 11, day, hh, mm, tzinfo=TZ)


def job(schedule=None, on_connect=False, min_interval=0):
    return Job(name="Docs", sources=["/home/u/Docs"], destination=Destination(drive_id="d1"),
               triggers=Triggers(on_connect=on_connect, schedule=schedule, min_interval_minutes=min_interval))


@pytest.mark.parametrize("spec,last,now,expected", [
    # hourly: interval since the last successful run
    ("hourly", None, t(23, 10), True),
    ("hourly", t(23, 9, 30), t(23, 10, 29), False),
    ("hourly", t(23, 9, 30), t(23, 10, 30), True),
    # every N hours
    ("6h", t(23, 4), t(23, 9, 59), False),
    ("6h", t(23, 4), t(23, 10), True),
    ("6h", t(20, 4), t(23, 10), True),               # long off: due once
    # daily at HH:MM
    ("daily@09:30", t(22, 9, 31), t(23, 9, 29), False),
    ("daily@09:30", t(22, 9, 31), t(23, 9, 30), True),
    ("daily@09:30", t(23, 9, 31), t(23, 23, 0), False),  # already ran after today's slot
    ("daily@09:30", t(23, 8, 0), t(23, 9, 45), True),     # ran before the slot (by hand): still due
    # catch-up once after the machine was off for days
    ("daily@09:30", t(19, 9, 31), t(23, 7, 0), True),
    ("daily@09:30", t(23, 7, 1), t(23, 8, 0), False),     # the catch-up ran; next at today's slot
    # weekly on a day (2026-11-23 is Monday)
    ("mon@09:30", t(16, 9, 40), t(23, 9, 29), False),
    ("mon@09:30", t(16, 9, 40), t(23, 9, 30), True),
    ("mon@09:30", t(23, 9, 40), t(29, 23, 0), False),     # Sunday after: not yet
    ("mon@09:30", t(9, 9, 40), t(20, 12, 0), True),       # missed last Monday: catch up
    ("fri@18:00", t(20, 18, 5), t(23, 9, 0), False),
])
def test_due_table(spec, last, now, expected):
    assert due(job(spec), last, now) is expected


def test_due_waits_for_absent_drive_then_catches_up_on_connect():
    j = job("daily@09:30")
    last, now = t(22, 9, 31), t(23, 12, 0)
    assert due(j, last, now, drive_present=False) is False
    # Drive comes back at 15:00: the missed slot runs once on connect...
    assert connect_due(j, last, t(23, 15, 0)) is True
    # ...and after that run it is not due again until tomorrow's slot.
    assert connect_due(j, t(23, 15, 0), t(23, 16, 0)) is False
    assert due(j, t(23, 15, 0), t(24, 9, 30)) is True


def test_job_without_schedule_is_never_due_by_time():
    assert due(job(None, on_connect=True), None, t(23, 10)) is False
    assert next_due(job(None), None, t(23, 10)) is None


@pytest.mark.parametrize("min_interval,last,now,expected", [
    (0, None, t(23, 10), True),
    (0, t(23, 9, 59), t(23, 10), True),
    (240, t(23, 7), t(23, 10, 59), False),
    (240, t(23, 7), t(23, 11), True),
])
def test_connect_min_interval(min_interval, last, now, expected):
    assert connect_due(job(on_connect=True, min_interval=min_interval), last, now) is expected


@pytest.mark.parametrize("spec,last,now,expected", [
    ("hourly", t(23, 9, 30), t(23, 10), t(23, 10, 30)),
    ("6h", None, t(23, 10), t(23, 10)),
    ("daily@09:30", t(23, 9, 31), t(23, 12), t(24, 9, 30)),
    ("daily@09:30", t(22, 9, 31), t(23, 12), t(23, 12)),
    ("mon@09:30", t(23, 9, 31), t(25, 12), t(30, 9, 30)),
])
def test_next_due(spec, last, now, expected):
    assert next_due(job(spec), last, now) == expected


@pytest.mark.parametrize("text,describe", [
    ("hourly", "every hour"), ("6h", "every 6 hours"), ("daily@09:30", "daily at 09:30"),
    ("MON@7:05", "every Monday at 07:05"), ("sun@23:59", "every Sunday at 23:59"),
])
def test_parse_spec(text, describe):
    assert parse_spec(text).describe() == describe


@pytest.mark.parametrize("text", ["", "daily", "0h", "200h", "daily@24:00", "daily@9:60", "mo@09:00", "every 6h"])
def test_parse_spec_rejects(text):
    with pytest.raises(ValueError, match="schedule|between|HH:MM"):
        parse_spec(text)


@pytest.mark.parametrize("last_check,first_backup,now,expected", [
    (None, None, t(23, 10), False),                    # nothing backed up: nothing to check
    (None, t(20, 10), t(23, 10), False),               # first backup 3 days ago
    (None, datetime(2026, 10, 20, 10, tzinfo=TZ), t(23, 10), True),
    (datetime(2026, 10, 25, 10, tzinfo=TZ), datetime(2026, 1, 1, tzinfo=TZ), t(23, 10), False),
    (datetime(2026, 10, 24, 10, tzinfo=TZ), datetime(2026, 1, 1, tzinfo=TZ), t(23, 10), True),
])
def test_integrity_due(last_check, first_backup, now, expected):
    from core.agent.schedule import integrity_due

    assert integrity_due(last_check, first_backup, now) is expected


# -- one grammar: canonical text, and the fields the window edits ------------------------------

@pytest.mark.parametrize("text,canonical,fields", [
    ("hourly", "hourly", {"kind": "hours", "hours": 1}),
    ("1h", "hourly", {"kind": "hours", "hours": 1}),
    (" 06H ", "6h", {"kind": "hours", "hours": 6}),
    ("Daily@09:30", "daily@09:30", {"kind": "daily", "time": "09:30"}),
    ("DAILY@9:05", "daily@09:05", {"kind": "daily", "time": "09:05"}),
    ("Mon@7:05", "mon@07:05", {"kind": "weekly", "day": "mon", "time": "07:05"}),
])
def test_canonical_form_and_window_fields(text, canonical, fields):
    spec = parse_spec(text)
    assert spec.canonical() == canonical and spec.fields() == fields
    assert from_fields(fields) == spec


@pytest.mark.parametrize("fields,message", [
    (None, "kind"), ({"kind": "monthly"}, "kind"), ({"kind": "hours"}, "between 1 and 168"),
    ({"kind": "hours", "hours": 0}, "between 1 and 168"), ({"kind": "hours", "hours": True}, "whole number"),
    ({"kind": "hours", "hours": "6"}, "whole number"), ({"kind": "daily"}, "HH:MM"),
    ({"kind": "daily", "time": "25:00"}, "HH:MM"), ({"kind": "daily", "time": "9.30"}, "HH:MM"),
    ({"kind": "weekly", "time": "09:30"}, "day"), ({"kind": "weekly", "day": "daily", "time": "09:30"}, "day"),
])
def test_window_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        from_fields(fields)


@given(st.one_of(
    st.builds(lambda h: Spec(every=timedelta(hours=h)), st.integers(1, 168)),
    st.builds(lambda hh, mm, d: Spec(at=time(hh, mm), weekday=d),
              st.integers(0, 23), st.integers(0, 59), st.one_of(st.none(), st.integers(0, 6))),
))
def test_every_spec_survives_text_and_fields(spec):
    assert parse_spec(spec.canonical()) == spec
    assert parse_spec(spec.canonical().upper()) == spec
    assert from_fields(spec.fields()) == spec
