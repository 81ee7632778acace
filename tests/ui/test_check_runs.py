"""Checks of the backup in the window (issue #14, rolling verification), from the real agent process and
its history: the History page lists them beside the backups (a Kind column), and damage a check could
not repair is on the Overview's attention banner and the job's card until a clean round."""

from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from core.agent.history import History, RunEnd, RunKind, RunStatus
from tests.support.trees import make_tree

DAMAGE = "1 damaged file on 'Blue' could not be repaired: Docs/f03.bin (in 2 snapshots)"


def check_run(agent, status, *, error=None, days_ago=0.0):
    history = History(agent.paths.history_file)
    started = datetime.now(timezone.utc) - timedelta(days=days_ago)
    run_id = history.start("Docs", started, kind=RunKind.VERIFY)
    history.append_log(run_id, "damaged: Latest/Docs/f03.bin: content does not match" if error else "read all")
    history.finish(run_id, RunEnd(status=status, ended=started + timedelta(seconds=3), error=error,
                                  error_code="damaged" if error else None))


def test_history_lists_checks_and_damage_needs_attention(open_page, agent, tmp_path):
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})
    agent.call("job_save", job={"name": "Docs", "sources": [str(src)], "destination": {"path": str(tmp_path / "set")}},
               start=False)
    agent.backup("Docs")
    check_run(agent, RunStatus.OK, days_ago=2)
    check_run(agent, RunStatus.FAILED, error=DAMAGE)

    page = open_page("history")
    rows = page.locator("#history-runs tbody tr[data-run]")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator(".kind")).to_have_text("Check")
    expect(rows.nth(0)).to_contain_text("Damage found")
    expect(page.locator("#history-runs .error-row").first).to_contain_text(DAMAGE)
    expect(rows.nth(1).locator(".kind")).to_have_text("Backup")
    expect(rows.nth(1)).to_contain_text("Completed")
    expect(rows.nth(2).locator(".kind")).to_have_text("Check")                 # two days ago
    expect(rows.nth(2)).to_contain_text("No damage")
    assert [r["kind"] for r in agent.call("history")] == ["backup"]              # IPC default: backups only

    page = open_page("overview")
    expect(page.locator("#attention-banner")).to_contain_text(f"Docs: {DAMAGE}")
    expect(page.locator(".damage")).to_have_text(DAMAGE)

    check_run(agent, RunStatus.OK)                                              # a clean round since
    page = open_page("overview")
    expect(page.locator(".damage")).to_have_count(0)
    expect(page.locator("#attention-banner")).to_have_count(0)
