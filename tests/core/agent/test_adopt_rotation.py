"""Issue #14 with issue #10: a job on several drives (rotation) is bound to a set on each drive, so
"Review the backup on the drive…" (IPC set_info / adopt_set) and `plugback job adopt --drive` look at
and bind the set on the drive asked for, not the job's first drive. Real agent, two real ext4 drives."""

from core.agent.config import Config, Destination, Job, Triggers
from core.agent.config_file import read_config, update_config
from core.agent.drives import enroll
from core.agent.handlers import Handlers
from core.agent.jobs import host_name
from core.engine.layout import drive_set_path
from tests.core.agent.test_adopt import foreign_set, run_once
from tests.support.cli import run_cli
from tests.support.trees import make_tree


def blue_and_red(paths, make_drive, tmp_path):
    """Two enrolled ext4 drives and a job "Docs" (no plug-in trigger) on Blue, rotating to Red."""
    blue, red = make_drive("ext4", label="BLUE"), make_drive("ext4", label="RED")
    blue_id, red_id = enroll(blue.mount_point, "Blue")[0].drive_id, enroll(red.mount_point, "Red")[0].drive_id
    src = make_tree(tmp_path / "Docs", {"a.txt": b"alpha"})

    def setup(cfg: Config):
        cfg.drives += [{"drive_id": blue_id, "label": "Blue"}, {"drive_id": red_id, "label": "Red"}]
        cfg.jobs.append(Job(name="Docs", sources=[str(src)], triggers=Triggers(on_connect=False),
                            destination=Destination(drive_id=blue_id, rotation=[{"drive_id": red_id}])))
    update_config(paths.config_file, setup)
    return blue, red, blue_id, red_id


def test_the_set_on_a_drive_in_rotation_is_reviewed_and_adopted_there(paths, make_agent, make_drive, tmp_path):
    blue, red, blue_id, red_id = blue_and_red(paths, make_drive, tmp_path)
    theirs = foreign_set(drive_set_path(red.mount_point, host_name(), "Docs"), tmp_path)   # already on Red
    blue_mount = blue.mount_point
    blue.unmount()
    agent, watcher = make_agent()
    handlers = Handlers(agent).table()
    watcher.poll()
    refused = run_once(agent, handlers, "Docs")                   # only Red is here
    assert refused.error_code == "set_needs_confirmation" and refused.drive_id == red_id

    blue.mount(at=blue_mount)                                     # now the first drive is here too
    watcher.poll()
    assert handlers["set_info"]({"name": "Docs"})["drive_id"] == blue_id   # by default: the run's drive
    info = handlers["set_info"]({"name": "Docs", "drive_id": red_id})      # the window passes the run's drive
    assert info["drive_id"] == red_id and not info["own"] and info["set"]["set_id"] == theirs.set_id
    assert info["set"]["host"] == "strangers-pc"

    wrong = run_cli("job", "adopt", "Docs", "--drive", "Green", "--yes")
    assert wrong.returncode != 0 and "its drives: 'Blue', 'Red'" in wrong.stderr
    adopted = run_cli("job", "adopt", "Docs", "--drive", "Red", "--yes")
    assert adopted.returncode == 0 and "strangers-pc" in adopted.stdout, adopted.stderr
    job = read_config(paths.config_file).jobs[0]
    assert job.destination.rotation[0]["set_id"] == theirs.set_id and job.set_id is None   # Blue's is untouched
    agent.check_config()
    assert handlers["set_info"]({"name": "Docs", "drive_id": red_id})["own"]

    blue.unmount()
    watcher.poll()
    run = run_once(agent, handlers, "Docs")
    assert run.status == "ok" and run.drive_id == red_id
    assert len(theirs.snapshot_ids()) == 2                         # into the adopted set on Red


def test_the_window_adopts_the_set_on_the_drive_it_was_shown(paths, make_agent, make_drive, tmp_path):
    blue, red, blue_id, red_id = blue_and_red(paths, make_drive, tmp_path)
    theirs = foreign_set(drive_set_path(red.mount_point, host_name(), "Docs"), tmp_path)
    agent, watcher = make_agent()
    handlers = Handlers(agent).table()
    watcher.poll()
    reply = handlers["adopt_set"]({"name": "Docs", "set_id": theirs.set_id, "drive_id": red_id})
    assert reply == {"job": "Docs", "set_id": theirs.set_id, "drive_id": red_id}
    job = read_config(paths.config_file).jobs[0]
    assert job.destination.rotation[0]["set_id"] == theirs.set_id and job.set_id is None
