"""Restore first (issue #14), on the real agent, the real engine and a real ext4 drive: scheduled runs,
checks and connects wait for a restore; a restore waits for a running backup; two restores cannot race;
the Restore page holds the automatic backup of a drive plugged in meanwhile."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from core.agent.handlers import Handlers
from core.agent.history import RunKind
from core.agent.restore_first import PageHold
from core.agent.runner import RESTORE
from core.engine.progress import FakeClock
from core.engine.repo import BackupSet
from core.engine.restore import RestoreOptions, restore
from core.errors import AgentBusy
from core.platform.notify import read_log
from tests.support.agent import add_drive_job, wait_for
from tests.support.cli import plugback_executable
from tests.support.env import subprocess_env
from tests.support.trees import make_tree, read_tree
from tray.menu import build_menu

FIRST = {"a.txt": b"alpha", "sub/b.txt": b"bravo" * 1000, "sub/deep/c.bin": bytes(range(256)) * 64}


class Gate:
    """Holds a runner thread at a change notification while ``when(runner)`` is true, until released.

    A listener on the agent (its public hook for the icon), so the run held is the real one:
    held inside a backup it holds the set's lock, as a long backup would.
    """

    made: list["Gate"] = []

    def __init__(self, agent, when):
        self.agent, self.when = agent, when
        self.reached, self.opened = threading.Event(), threading.Event()
        agent.listeners.append(self)
        Gate.made.append(self)

    def __call__(self) -> None:
        me = threading.current_thread()
        if self.opened.is_set() or not me.name.startswith("runner-"):
            return
        runner = next((r for r in list(self.agent.runners.values()) if r.thread is me), None)
        if runner is not None and self.when(runner):
            self.reached.set()
            self.opened.wait(60)

    def release(self) -> None:
        self.opened.set()


@pytest.fixture(autouse=True)
def _open_gates():
    """A failed test must not leave a runner held (the agent's shutdown would wait for it)."""
    yield
    while Gate.made:
        Gate.made.pop().release()


def in_backup(runner) -> bool:
    """Inside the engine's backup (it reported progress): the set's lock is held."""
    return runner.kind == RunKind.BACKUP and runner.progress is not None


def backups(agent, n, kind=RunKind.BACKUP):
    done = [r for r in agent.history.runs("Docs", kind=kind) if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def restore_done(agent):
    task = agent.restore_task
    return task if task and not task["running"] else None


@pytest.fixture
def setup(paths, make_agent, ext4_drive, tmp_path):
    """An agent with job Docs on a real ext4 drive, backed up once (snapshot ``first``)."""
    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], on_connect=False)
    agent, watcher = make_agent(settings_command=[sys.executable, "-c", "pass"])
    watcher.poll()
    agent.run_job("Docs")
    wait_for(lambda: backups(agent, 1), what="the first backup")
    set_path = next((ext4_drive.mount_point / "Plugback").glob("*/Docs"))
    first = BackupSet.open(set_path).newest_id()
    return agent, watcher, Handlers(agent).table(), src, set_path, first, drive_id



def backup_held_at_its_gate(agent) -> Gate:
    """Start the job "Docs" and hold its backup at the gate (``gate.release()`` lets it go on)."""
    gate = Gate(agent, in_backup)
    agent.run_job("Docs")
    assert gate.reached.wait(30)
    return gate


def restore_behind_a_backup(agent, handlers, snapshot: str, tmp_path):
    """A held backup of "Docs", and the window asking to restore ``snapshot`` into tmp_path/out meanwhile."""
    gate = backup_held_at_its_gate(agent)
    out = tmp_path / "out"
    handlers["restore"]({"job": "Docs", "snapshot": snapshot, "paths": ["Docs"], "target": str(out),
                         "create_target": True})
    return gate, out


def test_a_scheduled_run_waits_for_a_restore_of_the_window_and_then_runs(setup, paths, tmp_path):
    agent, _, handlers, src, _, first, _ = setup
    (src / "a.txt").write_bytes(b"changed after the first backup")
    overlap = []
    agent.listeners.append(lambda: overlap.append(1) if agent.restore_task and agent.restore_task["running"]
                           and agent.running() else None)
    gate = Gate(agent, lambda r: r.kind == RESTORE)
    out = tmp_path / "out"
    assert handlers["restore"]({"job": "Docs", "snapshot": first, "paths": ["Docs"], "target": str(out),
                                "create_target": True}) == {"started": True}
    assert gate.reached.wait(30)
    # An hour later the schedule comes due while the restore runs: the backup queues behind it.
    agent.edit_config(lambda c: setattr(c.jobs[0].triggers, "schedule", "hourly"))
    agent.clock = FakeClock(datetime.now(timezone.utc) + timedelta(hours=2))
    assert agent.check_schedule() == ["Docs"]
    assert agent.queued() == ["Docs"] and agent.running() == [] and len(agent.history.runs("Docs")) == 1
    assert agent.status()["jobs"][0]["queued"] and not agent.status()["jobs"][0]["running"]
    gate.release()
    task = wait_for(lambda: restore_done(agent), what="the restore")
    assert task["error"] is None and task["result"]["files_restored"] == 3
    assert read_tree(out / "Docs") == FIRST                               # the first snapshot, byte for byte
    second = wait_for(lambda: backups(agent, 2), what="the scheduled backup")[0]
    assert second.status == "ok" and second.trigger == "schedule" and second.files_copied == 1
    assert overlap == []                                                   # never both at once


def test_a_backup_waits_for_a_restore_by_another_process(setup, tmp_path):
    """``plugback restore`` in a terminal holds the set's lock: the agent's run waits for it, then runs."""
    agent, _, _, src, set_path, first, _ = setup
    reading, go_on = threading.Event(), threading.Event()

    def progress(_):
        reading.set()
        go_on.wait(60)

    out = tmp_path / "out"
    results = []
    other = threading.Thread(target=lambda: results.append(restore(
        BackupSet.open(set_path), out, RestoreOptions(snapshot=first, progress=progress))))
    other.start()
    assert reading.wait(30)
    assert BackupSet.open(set_path).layout.lock.exists()                  # the restore holds the set
    (src / "a.txt").write_bytes(b"changed")
    agent.run_job("Docs")
    wait_for(lambda: [r for r in agent.running() if r["phase"] == "waiting"], what="the backup to wait")
    assert "a restore from this backup" in agent.running()[0]["progress"]["current"]
    assert len(agent.history.runs("Docs", kind=None)) == 1                # nothing started, nothing failed
    go_on.set()
    other.join(30)
    assert results and read_tree(out / "Docs") == FIRST
    second = wait_for(lambda: backups(agent, 2), what="the backup after the restore")
    assert second[0].status == "ok" and second[0].files_copied == 1


def test_a_restore_waits_for_the_running_backup_then_restores_byte_for_byte(setup, paths, tmp_path):
    agent, _, handlers, src, _, first, _ = setup
    make_tree(src, {f"more/{i}.bin": bytes([i]) * 5000 for i in range(50)})
    gate, out = restore_behind_a_backup(agent, handlers, first, tmp_path)
    status = agent.status()["restore"]
    assert status["running"] and status["waiting"] == "Waiting for the backup of Docs to finish."
    assert list(out.iterdir()) == []                                      # nothing restored while it waits
    with pytest.raises(AgentBusy, match="in use by a backup or restore"):
        agent.eject(setup[6])                                            # the drive is in use
    gate.release()
    task = wait_for(lambda: restore_done(agent), what="the restore")
    assert task["error"] is None and task["waiting"] is None
    assert read_tree(out / "Docs") == FIRST
    assert wait_for(lambda: backups(agent, 2))[0].status == "ok"         # the backup was not disturbed
    # Not "safe to unplug" after that backup: the restore from the drive was still to come.
    assert [n["kind"] for n in read_log(paths.notifications_log)].count("safe_to_unplug") == 1


def test_a_restore_waiting_behind_a_backup_when_the_drive_is_pulled(setup, ext4_drive, tmp_path):
    agent, watcher, handlers, src, _, first, _ = setup
    make_tree(src, {"new.txt": b"new"})
    gate, out = restore_behind_a_backup(agent, handlers, first, tmp_path)
    ext4_drive.unmount(lazy=True)
    watcher.poll()
    gate.release()
    task = wait_for(lambda: restore_done(agent), what="the restore to give up")
    assert task["error"] == {"code": "drive_removed", "message": "The backup drive was removed before the restore "
                                                                "started. Plug it in and start the restore again."}
    assert list(out.iterdir()) == [] and agent.restore_drive is None
    assert wait_for(lambda: backups(agent, 2))[0].status == "drive_removed"


def test_two_restores_started_together_cannot_race(setup, tmp_path):
    agent, _, handlers, _, _, first, _ = setup
    gate = Gate(agent, lambda r: r.kind == RESTORE)
    start = threading.Barrier(2)
    replies = []

    def ask(name):
        start.wait()
        try:
            replies.append(handlers["restore"]({"job": "Docs", "snapshot": first, "paths": ["Docs"],
                                                "target": str(tmp_path / name), "create_target": True}))
        except AgentBusy as err:
            replies.append(err.message)

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(map(str, replies)) == sorted([str({"started": True}),
                                                "Plugback is busy: a restore is already running; wait for it "
                                                "to finish, or stop it. Try again when it has finished."])
    gate.release()
    assert wait_for(lambda: restore_done(agent))["error"] is None
    restored = [p for p in tmp_path.iterdir() if p.name in ("one", "two") and (p / "Docs").exists()]
    assert len(restored) == 1 and read_tree(restored[0] / "Docs") == FIRST
    # Once it finished, the next restore runs.
    handlers["restore"]({"job": "Docs", "snapshot": first, "paths": ["Docs"], "target": str(tmp_path / "three"),
                         "create_target": True})
    assert wait_for(lambda: restore_done(agent))["error"] is None and read_tree(tmp_path / "three" / "Docs") == FIRST


def test_a_waiting_restore_can_be_stopped_and_stop_backup_leaves_a_restore_alone(setup, tmp_path):
    agent, _, handlers, _, _, first, _ = setup
    gate, out = restore_behind_a_backup(agent, handlers, first, tmp_path)
    assert handlers["restore_stop"]({}) == {"stopped": True}
    task = agent.restore_task
    assert not task["running"] and task["error"]["code"] == "cancelled" and "before it started" in task["error"]["message"]
    gate.release()
    wait_for(lambda: backups(agent, 2))
    assert list(out.iterdir()) == []                                      # it never ran
    # "Stop backup" stops backups, never a restore queued behind one.
    gate2 = Gate(agent, in_backup)
    agent.run_job("Docs")
    assert gate2.reached.wait(30)
    handlers["restore"]({"job": "Docs", "snapshot": first, "paths": ["Docs"], "target": str(out)})
    assert agent.stop_job(None)
    gate2.release()
    task = wait_for(lambda: restore_done(agent), what="the restore")
    assert task["error"] is None and read_tree(out / "Docs") == FIRST


def test_restore_page_open_holds_the_connect_backup_until_it_closes(paths, make_agent, ext4_drive, tmp_path):
    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])        # on connect, no delay
    agent, watcher = make_agent()
    handlers = Handlers(agent).table()
    assert handlers["restore_page"]({"open": True}) == {"open": True}
    watcher.poll()                                                        # plugged in while the page is open
    assert agent.present == {drive_id: str(ext4_drive.mount_point)}
    (pending,) = agent.status()["pending"]
    assert pending["held"] and pending["jobs"] == ["Docs"] and agent.queued() == [] and agent.running() == []
    note = read_log(paths.notifications_log)[-1]
    assert note["title"] == "Backup to 'Blue' waits: a restore is open"
    assert "'Back up Blue now', or 'Restore from Blue instead'" in note["message"]
    menu = [(i.text, i.action, i.args) for i in build_menu(agent.tray_state())]
    assert ("Back up Blue now", "start_pending", (drive_id,)) in menu
    assert ("Restore from Blue instead", "restore_instead", (drive_id,)) in menu
    assert agent.history.runs("Docs") == []
    handlers["restore_page"]({"open": True})                              # renewed: still held
    assert agent.status()["pending"][0]["held"] and agent.history.runs("Docs") == []
    handlers["restore_page"]({"open": False})                             # the page closed
    (run,) = wait_for(lambda: backups(agent, 1), what="the held backup")
    assert run.status == "ok" and run.trigger == "connect" and agent.status()["pending"] == []


def test_a_restore_started_while_the_backup_is_held_goes_first(setup, ext4_drive, tmp_path):
    """Plugged in to restore: the held backup runs only after that restore, when the page closes."""
    agent, watcher, handlers, src, _, first, _ = setup
    agent.edit_config(lambda c: setattr(c.jobs[0].triggers, "on_connect", True))
    ext4_drive.unmount()
    watcher.poll()
    (src / "a.txt").write_bytes(b"changed")
    handlers["restore_page"]({"open": True})
    ext4_drive.mount()
    watcher.poll()
    assert agent.status()["pending"][0]["held"]
    gate = Gate(agent, lambda r: r.kind == RESTORE)
    out = tmp_path / "out"
    handlers["restore"]({"job": "Docs", "snapshot": first, "paths": ["Docs"], "target": str(out),
                         "create_target": True})
    assert gate.reached.wait(30)
    handlers["restore_page"]({"open": False})                             # done choosing: the page closes
    assert agent.queued() == ["Docs"] and agent.running() == [] and agent.status()["pending"] == []
    gate.release()
    assert wait_for(lambda: restore_done(agent))["error"] is None and read_tree(out / "Docs") == FIRST
    second = wait_for(lambda: backups(agent, 2), what="the backup after the restore")[0]
    assert second.status == "ok" and second.trigger == "connect" and second.files_copied == 1


def test_a_restore_page_that_stops_renewing_lets_the_backup_go(paths, make_agent, ext4_drive, tmp_path):
    """A window that crashed never says the page closed: the hold ends by itself."""
    src = make_tree(tmp_path / "Docs", FIRST)
    add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent()
    agent.page_hold.set(True, seconds=0.5)
    watcher.poll()
    assert agent.status()["pending"][0]["held"]
    (run,) = wait_for(lambda: backups(agent, 1), what="the backup after the hold ran out")
    assert run.status == "ok" and not agent.page_hold.active


def test_tray_back_up_now_and_restore_instead_for_a_held_drive(paths, make_agent, ext4_drive, tmp_path):
    from tray.icon import TrayIcon

    src = make_tree(tmp_path / "Docs", FIRST)
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])
    agent, watcher = make_agent(settings_command=[sys.executable, "-c", "pass"])
    agent.page_hold.set(True)
    watcher.poll()
    TrayIcon.ACTIONS["restore_instead"](agent, None, drive_id)            # the menu item's action
    assert agent.status()["pending"] == [] and agent.settings_proc.args[-2:] == ["--page", f"restore/{drive_id}"]
    agent.settings_proc.wait(30)
    agent.page_hold.set(False)                                            # nothing was left held
    assert agent.history.runs("Docs") == [] and agent.queued() == []
    ext4_drive.unmount()
    watcher.poll()
    ext4_drive.mount()
    watcher.poll()
    assert agent.status()["pending"] == []                                 # page closed now: no hold
    wait_for(lambda: backups(agent, 1))
    agent.page_hold.set(True)
    ext4_drive.unmount()
    watcher.poll()
    (src / "a.txt").write_bytes(b"new")
    ext4_drive.mount()
    agent.edit_config(lambda c: setattr(c.jobs[0].triggers, "min_interval_minutes", 0))
    watcher.poll()
    assert agent.status()["pending"][0]["held"]
    TrayIcon.ACTIONS["start_pending"](agent, None, drive_id)              # "Back up Blue now"
    second = wait_for(lambda: backups(agent, 2), what="the backup started from the menu")[0]
    assert second.status == "ok" and agent.page_hold.active


def test_page_hold_table():
    """PageHold on its own: renewals, closing, and expiry on a clock the test moves."""
    now = [0.0]
    released = []
    hold = PageHold(lambda: released.append(now[0]), monotonic=lambda: now[0])
    assert not hold.active
    hold.set(True, seconds=60)
    now[0] = 59.0
    assert hold.active
    hold.set(True, seconds=60)                                           # renewed at 59
    now[0] = 100.0
    assert hold.active and released == []
    hold._expire()                                                        # the old timer firing late: ignored
    assert hold.active and released == []
    now[0] = 119.5
    hold.set(False)
    assert not hold.active and released == [119.5]
    hold.set(False)                                                       # closing twice releases once
    assert released == [119.5]
    hold.close()


def test_cli_restore_waits_for_the_agents_backup_of_the_same_set(setup, tmp_path):
    agent, _, _, src, set_path, first, _ = setup
    make_tree(src, {"new.txt": b"new"})
    gate = backup_held_at_its_gate(agent)
    refused = subprocess.run([str(plugback_executable()), "restore", str(set_path), str(tmp_path / "no"),
                              "--snapshot", first, "--wait", "0"], capture_output=True, text=True,
                             env=subprocess_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert refused.returncode == 1 and "Another backup is writing to this set right now (backup by process" \
        in refused.stderr and not (tmp_path / "no").exists()
    out = tmp_path / "out"
    proc = subprocess.Popen([str(plugback_executable()), "restore", str(set_path), str(out), "--snapshot", first,
                             "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), stdin=subprocess.DEVNULL)
    try:
        line = proc.stderr.readline()
        assert line.startswith("plugback: waiting for the backup of Docs to finish (process ")
        assert "Ctrl-C stops waiting" in line and proc.poll() is None and not out.exists()
        gate.release()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert read_tree(out / "Docs") == FIRST and "Restored 3 files" in stdout
    assert wait_for(lambda: backups(agent, 2))[0].status == "ok"
