"""Drive letters change between plug-ins (issue #16): Windows hands letters out in plug-in order, so
two sticks plugged in the other way round swap E: and F:. A drive is its drive.json, never its
letter or mount point. Real ext4 drives, mounted at two fixed folders standing in for the letters."""

from __future__ import annotations

from core.agent.drives import find_drive
from core.engine.repo import BackupSet
from tests.support.agent import add_drive_job, wait_for
from tests.support.trees import make_tree


def _done(agent, job: str, n: int):
    done = [r for r in agent.history.runs(job) if r.status != "running"]
    return done if len(done) >= n and not agent.running() else None


def _sets(mount) -> dict[str, int]:
    """The sets on a drive, by job folder name, with their snapshot counts."""
    return {p.name: len(BackupSet.open(p).snapshot_ids()) for p in (mount / "Plugback").glob("*/*")}


def test_two_drives_swap_letters_and_each_job_keeps_its_drive(paths, make_agent, make_drive, tmp_path):
    e, f = tmp_path / "E", tmp_path / "F"
    blue, red = make_drive("ext4", label="BLUE", mount=False), make_drive("ext4", label="RED", mount=False)
    blue.mount(at=e)
    red.mount(at=f)
    docs = make_tree(tmp_path / "Docs", {"a.txt": b"docs v1"})
    photos = make_tree(tmp_path / "Photos", {"p.jpg": b"photo v1"})
    blue_id = add_drive_job(paths, e, [docs], name="Docs", label="Blue")
    red_id = add_drive_job(paths, f, [photos], name="Photos", label="Red")
    agent, watcher = make_agent()
    watcher.poll()
    assert agent.present == {blue_id: str(e), red_id: str(f)}
    wait_for(lambda: _done(agent, "Docs", 1) and _done(agent, "Photos", 1), what="the first backups")

    blue.unmount()
    red.unmount()
    watcher.poll()
    assert agent.present == {}
    (docs / "a.txt").write_bytes(b"docs v2")
    (photos / "p.jpg").write_bytes(b"photo v2")
    red.mount(at=e)            # plugged in first this time: it gets the first letter
    blue.mount(at=f)
    assert find_drive(blue_id) == f and find_drive(red_id) == e
    watcher.poll()
    assert agent.present == {blue_id: str(f), red_id: str(e)}
    second = wait_for(lambda: _done(agent, "Docs", 2) and _done(agent, "Photos", 2), what="the second backups")
    assert all(r.status == "ok" for r in second)
    assert [r.drive_id for r in agent.history.runs("Docs")] == [blue_id, blue_id]
    # Each drive holds its own job's set only, now with two snapshots; nothing crossed over.
    assert _sets(f) == {"Docs": 2} and _sets(e) == {"Photos": 2}
