"""Rolling verification in the real agent on a real ext4 loop drive, over several connects (issue #14).

The clock is fake (one connect a day); the drive, the engine, the files and the
threads are real. Slices are kept small (``rolling_floor``) so a pass of a
small set takes several connects.
"""

import hashlib
import threading
from datetime import datetime, timedelta, timezone

import pytest

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.config_file import update_config
from core.agent.handlers import Handlers
from core.agent.ipc import Server
from core.agent.rolling_state import PassState, opportunities_per_day, overdue, slice_budget
from core.agent.watcher import DriveWatcher
from core.engine.layout import SetLayout
from core.engine.pass_cursor import Cursor
from core.engine.progress import FakeClock
from core.platform.notify import read_log
from tests.support.agent import add_drive_job, wait_for
from tests.support.cli import run_cli
from tests.support.trees import make_tree
from tray.menu import build_menu, icon_state, status_line

FLOOR = 40_000
T0 = datetime(2026, 11, 3, 9, tzinfo=timezone.utc)


@pytest.fixture
def src(tmp_path):
    return make_tree(tmp_path / "Docs", {f"f{i:02}.bin": bytes([i]) * 9_000 for i in range(20)})


@pytest.fixture
def rig(paths, ext4_drive, src):
    """(agent, watcher, clock, drive_id) with a drive job on the ext4 drive; shut down at the end."""
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])
    clock = FakeClock(T0)
    agent = Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None, rolling_floor=FLOOR,
                                                                  rolling_delay=0))
    yield agent, DriveWatcher(agent, interval=0.2), clock, drive_id
    agent.shutdown(cancel=True, timeout=30)


def _settled(agent, drive_id, backups):
    """Wait until ``backups`` backups ended and no slice runs on the drive."""
    def done():
        ended = [r for r in agent.history.runs("Docs") if r.status != "running"]
        return len(ended) >= backups and not agent.running() and not agent.rolling.checking(f"drive:{drive_id}")
    wait_for(done, timeout=60, what=f"backup {backups} and its slice")


def _connect(rig, drive, backups, *, days=1):
    """A day later, plug the drive in again: its connect backup runs, then a slice."""
    agent, watcher, clock, drive_id = rig
    if drive.mounted:
        drive.unmount()
        watcher.poll()
    clock.advance(days * 86400)
    drive.mount()
    watcher.poll()
    _settled(agent, drive_id, backups)


def _state(agent):
    return agent.rolling.states.load(agent.config.jobs[0].set_id)


def _drive_fields(agent, drive_id):
    (vol,) = [v for v in Handlers(agent).drives_list({}) if v.get("drive_id") == drive_id]
    return {k: vol[k] for k in ("last_full_check", "check_percent", "check_since", "checking")}


def _verify_runs(agent):
    return [r for r in agent.history.runs("Docs", kind="verify") if r.status != "running"]


def test_slices_over_several_connects_complete_a_pass(rig, ext4_drive, paths):
    agent, watcher, clock, drive_id = rig
    watcher.poll()
    _settled(agent, drive_id, 1)
    state = _state(agent)
    assert state.under_way and state.pass_started == T0 and 0 < state.done_bytes < state.total_bytes
    assert state.total_bytes == 20 * 9_000       # a first backup: everything is in Latest/, no objects
    fields = _drive_fields(agent, drive_id)
    assert fields["last_full_check"] is None and fields["check_since"] == T0.isoformat()
    assert 0 < fields["check_percent"] < 100 and fields["checking"] is False
    kinds = [n["kind"] for n in read_log(paths.notifications_log)]
    assert kinds == ["finished", "safe_to_unplug"]       # the slice came after, and said nothing
    cursors, n = [state.cursor], 1
    while not _state(agent).cursor.done:
        n += 1
        _connect(rig, ext4_drive, n)
        s = _state(agent)
        assert s.cursor != cursors[-1] and (s.done_bytes > state.done_bytes or s.cursor.done)
        cursors.append(s.cursor)
        state = s
        assert n < 10, "the pass should end within a few connects"
    assert n >= 4 and state.done_bytes == state.total_bytes   # every byte read once, none twice
    assert [c.phase for c in cursors[:-1]] == ["latest"] * (n - 1)
    assert state.last_full == T0 + timedelta(days=n - 1)
    assert _drive_fields(agent, drive_id)["last_full_check"] == state.last_full.isoformat()
    (row,) = _verify_runs(agent)
    assert row.status == "ok" and row.started == T0 and "every stored byte" in agent.history.log(row.id)
    # A new pass begins at the next connect.
    _connect(rig, ext4_drive, n + 1)
    assert _state(agent).under_way and _state(agent).pass_started == T0 + timedelta(days=n)


def test_damage_is_found_by_a_later_slice_and_repaired_from_the_source(rig, ext4_drive, src, paths):
    agent, watcher, clock, drive_id = rig
    watcher.poll()
    _settled(agent, drive_id, 1)
    (src / "f03.bin").write_bytes(b"new" * 3000)     # the old f03 goes to objects/ at the next backup
    _connect(rig, ext4_drive, 2)
    layout = SetLayout(next((ext4_drive.mount_point / "Plugback").glob("*/Docs")))
    old_f03 = layout.object(hashlib.sha256(bytes([3]) * 9_000).hexdigest())
    assert old_f03.is_file()
    # Bit rot: in a Latest/ copy whose source is unchanged, and in the old version of f03 (whose
    # source has changed since). The pass under way has already read neither of them.
    assert _state(agent).cursor.phase == "latest" and _state(agent).cursor.key < "Docs/f10.bin"
    for victim in (layout.latest / "Docs" / "f10.bin", old_f03):
        data = bytearray(victim.read_bytes())
        data[100] ^= 0x20
        victim.write_bytes(bytes(data))
    n = 2
    while len([r for r in _verify_runs(agent) if r.status != "ok"]) < 2:
        n += 1
        _connect(rig, ext4_drive, n)
        assert n < 14, "the damage should be found within a pass"
    bad = [r for r in _verify_runs(agent) if r.status != "ok"]
    layout = SetLayout(next((ext4_drive.mount_point / "Plugback").glob("*/Docs")))   # mounted elsewhere now
    repaired = next(r for r in bad if r.status == "warnings")
    assert "Latest/Docs/f10.bin" in agent.history.log(repaired.id) and repaired.drive_id == drive_id
    assert (layout.latest / "Docs" / "f10.bin").read_bytes() == bytes([10]) * 9_000
    failed = next(r for r in bad if r.status == "failed")
    assert failed.error_code == "damaged" and "Docs/f03.bin (in 1 snapshot)" in failed.error
    assert "changed since" in agent.history.log(failed.id)
    notes = {n["title"]: n for n in read_log(paths.notifications_log)}
    assert notes["Docs: damage on 'Blue' repaired"]["kind"] == "failed"
    assert "f03.bin" in notes["Docs: damage found on 'Blue'"]["message"]
    # Damage left unrepaired is the attention state too, not only a notification: status (the Overview's
    # banner), the tray, `plugback status` (exit 1). A repair or a backup since does not clear it.
    _connect(rig, ext4_drive, n + 1)
    status = agent.status()
    assert status["jobs"][0]["damage"] == failed.error and status["jobs"][0]["attention"] is None
    assert status["attention"] == [{"job": "Docs", "message": f"Docs: {failed.error}"}]
    assert status["reminders"] == [] and status["problem"] is None     # exit 1 below is for the damage
    state = agent.tray_state()
    assert icon_state(state) == "attention" and status_line(state) == "Docs needs attention: damage on the drive"
    assert (f"Docs: {failed.error}"[:89], "open_page", ("history",)) in \
        [(i.text.rstrip("…"), i.action, i.args) for i in build_menu(state)]
    server = Server(paths, Handlers(agent).table()).start()   # `plugback status` asks this agent
    try:
        cli = run_cli("status")
    finally:
        server.close()
    assert cli.returncode == 1 and "Needs attention: the backup check found damage: 1 damaged file" in cli.stdout


def _on_first_slice_progress(agent, drive_id, action):
    """Run ``action`` once, inside the slice's thread, as soon as the slice has read something."""
    fired = threading.Event()

    def listener():
        in_slice = threading.current_thread().name == f"check-drive:{drive_id}"   # not the runner's calls
        if in_slice and not fired.is_set() and agent.rolling.live.get(f"drive:{drive_id}", 0) > 0:
            fired.set()
            action()
    agent.listeners.append(listener)
    return fired


def test_a_drive_pulled_mid_slice_loses_nothing_and_the_next_connect_resumes(rig, ext4_drive, paths):
    agent, watcher, clock, drive_id = rig

    def pull():
        ext4_drive.unmount(lazy=True)          # yanked while the slice reads
        watcher.poll()
    fired = _on_first_slice_progress(agent, drive_id, pull)
    watcher.poll()
    _settled(agent, drive_id, 1)
    assert fired.is_set() and drive_id not in agent.present
    state = _state(agent)
    assert state.under_way and state.cursor.key and state.done_bytes < FLOOR   # stopped early, saved
    assert _verify_runs(agent) == []                                           # not called damage
    assert [n["kind"] for n in read_log(paths.notifications_log)] == ["finished", "safe_to_unplug"]
    n = 1
    while not _state(agent).cursor.done:
        n += 1
        _connect(rig, ext4_drive, n)
    final = _state(agent)
    assert final.done_bytes == final.total_bytes    # resumed where it stopped: nothing skipped or read twice
    assert [r.status for r in _verify_runs(agent)] == ["ok"]


def test_a_backup_asked_for_during_a_slice_starts_at_once_and_stops_the_slice(rig, ext4_drive, src):
    agent, watcher, clock, drive_id = rig
    started_while_slicing = []

    def back_up_now():
        (src / "f00.bin").write_bytes(b"changed")
        agent.run_job("Docs")
        # Still inside the slice's thread: the backup must start without waiting for the slice.
        started_while_slicing.append(wait_for(lambda: len(agent.history.runs("Docs")) == 2, timeout=10,
                                              what="the backup to start"))
    fired = _on_first_slice_progress(agent, drive_id, back_up_now)
    watcher.poll()
    _settled(agent, drive_id, 2)
    assert fired.is_set() and started_while_slicing
    runs = agent.history.runs("Docs")
    assert [r.status for r in runs] == ["ok", "ok"] and runs[0].files_copied == 1
    state = _state(agent)
    # The first slice stopped after one file; the second backup's slice went on from there.
    assert state.under_way and FLOOR <= state.done_bytes < state.total_bytes


def test_an_encrypted_set_is_checked_with_its_keyring_passphrase_and_repaired(paths, ext4_drive, src):
    from core.agent import keys
    from core.agent.jobs import job_key_name

    keys.store_passphrase(job_key_name("Docs"), "correct horse")
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src], encrypt=True)
    clock = FakeClock(T0)
    agent = Agent(paths, clock=clock, options=AgentOptions(battery=lambda: None, rolling_floor=10**9,
                                                           rolling_delay=0))
    try:
        rig = (agent, DriveWatcher(agent, interval=0.2), clock, drive_id)
        rig[1].poll()
        _settled(agent, drive_id, 1)
        state = _state(agent)
        # Encrypted and compressed (encryption format 2): each object is a header, a small zstd frame, a tag.
        assert state.cursor.done and state.done_bytes == state.total_bytes > 20 * 60
        layout = SetLayout(next((ext4_drive.mount_point / "Plugback").glob("*/Docs")))
        victim = layout.object(next(iter(layout.iter_object_names())))
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        _connect(rig, ext4_drive, 2)
        bad = [r for r in _verify_runs(agent) if r.status != "ok"]
        assert [r.status for r in bad] == ["warnings"], [agent.history.log(r.id) for r in bad]
        assert "copied again from this computer" in agent.history.log(bad[0].id)
        layout = SetLayout(next((ext4_drive.mount_point / "Plugback").glob("*/Docs")))
        assert layout.object(victim.name).read_bytes() != bytes(data)       # a fresh copy (new nonce too)
    finally:
        agent.shutdown(cancel=True, timeout=30)


def test_pausing_stops_the_slice_and_holds_the_next_until_resumed(rig, ext4_drive):
    agent, watcher, clock, drive_id = rig
    fired = _on_first_slice_progress(agent, drive_id, lambda: agent.pause(None))
    watcher.poll()
    _settled(agent, drive_id, 1)
    first = _state(agent)
    assert fired.is_set() and first.under_way and 0 < first.done_bytes < FLOOR
    agent.run_job("Docs")                                 # "Back up now" works while paused...
    _settled(agent, drive_id, 2)
    assert _state(agent) == first                         # ... but no check follows it
    agent.resume()
    agent.run_job("Docs")
    _settled(agent, drive_id, 3)
    assert _state(agent).done_bytes > first.done_bytes


def test_the_monthly_check_finishes_an_overdue_pass_in_one_go(rig, ext4_drive):
    agent, watcher, clock, drive_id = rig
    watcher.poll()
    _settled(agent, drive_id, 1)
    assert agent.check_integrity() == []                  # a pass is under way and on time
    clock.advance(29 * 86400)
    assert agent.check_integrity() == []
    clock.advance(86400)                                  # the drive stayed in; no backup for 30 days
    assert agent.check_integrity() == ["Docs"]
    wait_for(lambda: not agent.rolling.checking(f"drive:{drive_id}"), what="the catch-up")
    state = _state(agent)
    assert state.cursor.done and state.done_bytes == state.total_bytes and state.last_full == clock.now()
    assert agent.check_integrity() == []
    agent.edit_config(lambda c: setattr(c.prefs, "monthly_integrity_check", False))
    clock.advance(40 * 86400)
    assert agent.check_integrity() == []                  # turned off in Preferences


# --- the pure decisions ----------------------------------------------------------------------

GB = 1 << 30


def _pass(total, done, started_days_ago, slices_days_ago=()):
    now = T0 + timedelta(days=40)
    s = PassState(set_id="6f1c0e4a-3f7b-4c1e-9a53-1d2e3f4a5b6c", cursor=Cursor("objects", "ab"),
                  pass_started=now - timedelta(days=started_days_ago), done_bytes=done, total_bytes=total,
                  slices=[now - timedelta(days=d) for d in slices_days_ago])
    return s, now


@pytest.mark.parametrize("total, done, started, slices, expected", [
    (300 * GB, 0, 0, (), 10 * GB),                       # a new pass, one chance a day assumed: 1/30 a day
    (300 * GB, 150 * GB, 15, [d / 2 for d in range(31)], 5 * GB),   # twice a day for 15 days: 30 chances left
    (300 * GB, 100 * GB, 29, (), 200 * GB),             # one day left, one chance: everything that is left
    (300 * GB, 100 * GB, 45, (), 200 * GB),             # overdue: everything that is left
    (1 * GB, 0, 0, (), 256 << 20),                      # small sets: the floor
    (300 * GB, 300 * GB, 10, (), 256 << 20),
])
def test_slice_budget(total, done, started, slices, expected):
    state, now = _pass(total, done, started, slices)
    assert slice_budget(state, now) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("days_ago, expected", [
    ((), 1.0), ((0,), 1.0), ((0, 0.5, 1, 1.5, 2), 2.0), ((0, 10, 20), 0.1), ((0, 31, 40), 1.0), ((0, 0.1), 1.0),
])
def test_opportunities_per_day(days_ago, expected):
    now = T0
    assert opportunities_per_day([now - timedelta(days=d) for d in days_ago], now) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("state_kw, first_backup_days_ago, expected", [
    (None, None, False),                                          # never backed up
    (None, 29, False), (None, 30, True),                         # never checked: counted from the first backup
    ({"pass_started": 29}, 100, False), ({"pass_started": 30}, 100, True),   # a pass under way
    ({"last_full": 10, "done": True}, 100, False), ({"last_full": 31, "done": True}, 100, True),
])
def test_overdue(state_kw, first_backup_days_ago, expected):
    now = T0
    state = None
    if state_kw is not None:
        ago = lambda k: now - timedelta(days=state_kw[k]) if k in state_kw else None  # noqa: E731
        state = PassState(set_id="6f1c0e4a-3f7b-4c1e-9a53-1d2e3f4a5b6c",
                          cursor=Cursor("done") if state_kw.get("done") else Cursor(),
                          pass_started=ago("pass_started") or (now - timedelta(days=40)), last_full=ago("last_full"))
    first = now - timedelta(days=first_backup_days_ago) if first_backup_days_ago is not None else None
    assert overdue(state, first, now) is expected


def test_a_state_file_that_does_not_check_out_starts_a_new_pass(paths, tmp_path):
    from core.agent.rolling_state import StateStore

    store = StateStore(tmp_path / "rolling")
    state, _ = _pass(10, 5, 3, (1, 2))
    store.save(state)
    assert store.load(state.set_id) == state
    path = tmp_path / "rolling" / f"{state.set_id}.json"
    good = path.read_text()
    for bad in ("{", "[]", good.replace('"done_bytes": 5', '"done_bytes": -5'),
                good.replace('"phase": "objects"', '"phase": "elsewhere"'),
                good.replace(state.set_id, "6f1c0e4a-3f7b-4c1e-9a53-000000000000", 1)):
        path.write_text(bad)
        assert store.load(state.set_id) is None
    assert store.load(None) is None
    with pytest.raises(ValueError):
        store.load("../../etc/passwd")


def test_a_drive_is_fully_checked_when_every_set_on_it_is():
    from core.agent.rolling_state import drive_summary

    def state(last_full=None, started=None, done=0, total=None, finished=False):
        return PassState(set_id="6f1c0e4a-3f7b-4c1e-9a53-1d2e3f4a5b6c", cursor=Cursor("done" if finished else "latest"),
                         pass_started=started, done_bytes=done, total_bytes=total, last_full=last_full)

    d1, d2, d3 = (T0 + timedelta(days=n) for n in (1, 2, 3))
    assert drive_summary([], False) == {"last_full_check": None, "check_percent": None, "check_since": None,
                                        "checking": False}
    # One set checked, the other never: not fully checked; the pass under way counts both sets' bytes.
    s = drive_summary([state(d1, d2, 100, 400, finished=True), state(None, d3, 300, 600)], True, live=60)
    assert s == {"last_full_check": None, "check_percent": 60, "check_since": d3.isoformat(), "checking": True}
    s = drive_summary([state(d1, d1, 400, 400, finished=True), state(d2, d3, 0, None)], False)
    assert s["last_full_check"] == d1.isoformat() and s["check_percent"] == 0 and s["check_since"] == d3.isoformat()
    assert drive_summary([state(d2, d1, 10, 10, finished=True), None], False)["last_full_check"] is None


def test_each_drive_of_a_job_in_rotation_shows_its_own_sets_check(paths):
    """Issue #14: a drive's "Last fully checked" reads the set config.json binds on that drive (a job in
    rotation holds one per drive), plugged in or not (status.drives[].check)."""
    from core.agent.config import Config, Destination, Job

    blue_set, red_set = "6f1c0e4a-3f7b-4c1e-9a53-1d2e3f4a5b6c", "7a2d1f5b-4a8c-4d2f-8b64-2e3f4a5b6c7d"

    def setup(cfg: Config):
        cfg.drives += [{"drive_id": "blue", "label": "Blue"}, {"drive_id": "red", "label": "Red"}]
        cfg.jobs.append(Job(name="Docs", sources=["/nowhere"], set_id=blue_set, destination=Destination(
            drive_id="blue", rotation=[{"drive_id": "red", "set_id": red_set}])))
    update_config(paths.config_file, setup)
    agent = Agent(paths, options=AgentOptions(battery=lambda: None))
    try:
        agent.rolling.states.save(PassState(set_id=red_set, cursor=Cursor("done"), pass_started=T0, done_bytes=10,
                                            total_bytes=10, last_full=T0 + timedelta(days=1)))
        checks = {d["label"]: d["check"] for d in agent.status()["drives"]}
        assert checks["Red"]["last_full_check"] == (T0 + timedelta(days=1)).isoformat()
        assert checks["Blue"]["last_full_check"] is None and not any(d["present"] for d in agent.status()["drives"])
    finally:
        agent.shutdown()
