"""Issue #14: when a check's unrepaired damage stops needing attention (core.agent.status.check_damage),
as a table over real history rows: only a clean check of the same set begun after the damage clears it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.agent.history import History, RunEnd, RunKind, RunStatus
from core.agent.status import check_damage, job_record

T0 = datetime(2026, 11, 1, 9, tzinfo=timezone.utc)
OK, REPAIRED, DAMAGED, NO_ACCESS = "ok", "warnings", "damaged", "failed"


def add(history, day: float, what: str, drive="A", length=0.1, kind=RunKind.VERIFY):
    """A finished run that began ``day`` days after T0 (``what``: its result)."""
    started = T0 + timedelta(days=day)
    run_id = history.start("Docs", started, drive_id=drive, kind=kind)
    status = RunStatus.FAILED if what in (DAMAGED, NO_ACCESS) else RunStatus(what)
    history.finish(run_id, RunEnd(status=status, ended=started + timedelta(days=length),
                                  error=f"damage {day}" if what == DAMAGED else "other" if what == NO_ACCESS else None,
                                  error_code="damaged" if what == DAMAGED else "no_access" if what == NO_ACCESS
                                  else None))
    return run_id


@pytest.mark.parametrize("rows, expected", [
    ([], None),
    ([(1, OK)], None),
    ([(1, DAMAGED)], "damage 1"),
    ([(1, DAMAGED), (2, REPAIRED)], "damage 1"),                 # a repair elsewhere clears nothing
    ([(1, DAMAGED), (2, DAMAGED)], "damage 2"),                  # the newest is shown
    ([(1, DAMAGED), (2, OK)], None),                             # a round begun since ended clean
    ([(0.5, OK, "A", 3), (1, DAMAGED)], "damage 1"),             # a round begun before the damage clears nothing
    ([(1, DAMAGED), (2, OK, "B")], "damage 1"),                  # a clean round of the other drive's set
    ([(1, DAMAGED, "B"), (2, OK, "A")], "damage 1"),
    ([(1, DAMAGED, "B"), (2, DAMAGED, "A"), (3, OK, "A")], "damage 1"),
    ([(1, DAMAGED), (2, OK), (3, DAMAGED)], "damage 3"),         # found again
    ([(1, NO_ACCESS)], None),                                    # a check that failed otherwise: no damage known
])
def test_which_damage_needs_attention(tmp_path, rows, expected):
    history = History(tmp_path / "history.sqlite3")
    for row in rows:
        add(history, *row)
    found = check_damage(history, "Docs")
    assert (found.error if found else None) == expected


def test_a_backup_neither_sets_nor_clears_it(tmp_path):
    history = History(tmp_path / "history.sqlite3")
    add(history, 1, DAMAGED)
    add(history, 2, OK, kind=RunKind.BACKUP)
    add(history, 3, DAMAGED, kind=RunKind.BACKUP)                # a backup's own failure is `attention`
    record = job_record(history, "Docs")
    assert record.to_dict()["damage"] == "damage 1" and record.attention == "damage 3"
