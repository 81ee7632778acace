"""Issue #14 "Unknown drive": a drive that is not Plugback's is offered once per plug-in, by its label.

Real loop drives (ext4, exFAT) are plugged into the real agent; its watcher is polled as its thread would.
Other tests on this machine may mount drives at the same time, so every check names this test's drive.
"""

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.agent.config_file import read_config
from core.agent.drives import write_drive_file
from core.agent.handlers import Handlers
from core.agent.offers import NEW, PLUGBACK, decide
from core.agent.rotation import status_lines
from core.errors import ConfigError, NotFound
from core.platform.notify import read_log
from tests.support.agent import add_drive_job, wait_for
from tray.menu import build_menu

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
BASE = dict(removable=True, writable=True, system_reason=None, drive_id=None, has_plugback_folder=False,
            enrolled=frozenset({"enrolled-id"}), drive_key="UUID-1", declined=frozenset({"UUID-9"}))


@pytest.mark.parametrize("change,kind", [
    ({}, NEW),
    ({"removable": False}, None),                               # an internal disk is never offered
    ({"writable": False}, None),                                # read-only: cannot hold backups
    ({"system_reason": "it holds your home folder"}, None),
    ({"drive_id": "enrolled-id"}, None),                        # ours: the watcher connects it
    ({"drive_id": "someone-elses"}, PLUGBACK),                  # another computer's Plugback drive
    ({"has_plugback_folder": True}, PLUGBACK),                  # a Plugback folder without drive.json
    ({"drive_key": "UUID-9"}, None),                            # "Not this drive"
    ({"drive_key": "UUID-9", "drive_id": "someone-elses"}, None),
    ({"drive_key": None}, NEW),                                 # no identity: offered (cannot be remembered)
])
def test_which_volumes_are_offered(change, kind):
    assert decide(**{**BASE, **change}) == kind


def offers_at(agent, mount):
    return [o for o in agent.status()["offers"] if o["mount"] == str(mount)]


def offer_notes(paths, word):
    return [n for n in read_log(paths.notifications_log) if n["kind"] == "offer" and word in n["title"]]


def plug(agent, watcher, drive, at):
    drive.mount(at=at)
    watcher.poll()
    agent.offers.wait()


def test_an_unknown_drive_is_offered_by_its_label_and_not_this_drive_is_remembered(paths, make_agent, make_drive,
                                                                                     tmp_path):
    agent, watcher = make_agent()
    watcher.poll()                                             # the agent's first look: nothing of ours yet
    drive = make_drive("exfat", label="HOLIDAYS", mount=False)
    plug(agent, watcher, drive, tmp_path / "sdb1")             # the mount folder is not the label

    (note,) = offer_notes(paths, "HOLIDAYS")
    assert note["title"] == "Use ‘HOLIDAYS’ for backups?" and "Not this drive" in note["message"]
    (offer,) = offers_at(agent, drive.mount_point)
    assert offer["kind"] == "new" and offer["label"] == "HOLIDAYS" and offer["filesystem"] == "exfat"
    assert (f"Drive not used by Plugback, at {drive.mount_point}: Use ‘HOLIDAYS’ for backups?; "
            f"'plugback drive init {drive.mount_point}' sets it up") in status_lines(agent.status(), NOW)
    # The tray menu offers the same choices as the window.
    (entry,) = [i for i in build_menu(agent.tray_state()) if "HOLIDAYS" in i.text]
    assert [(i.text, i.action, i.args) for i in entry.submenu] == [
        ("Set it up as a backup drive…", "open_page", ("welcome",)),    # no job yet: the first-run page
        ("Not this drive", "decline_offer", (str(drive.mount_point),))]

    watcher.poll()
    agent.offers.wait()
    assert len(offer_notes(paths, "HOLIDAYS")) == 1            # one notification per plug-in, not per look

    Handlers(agent).offer_decline({"mount": str(drive.mount_point)})
    assert offers_at(agent, drive.mount_point) == []
    declined = read_config(paths.config_file).declined_drives
    assert declined == [{"key": offer["drive_key"], "name": "HOLIDAYS"}]
    with pytest.raises(NotFound):
        Handlers(agent).offer_decline({"mount": str(drive.mount_point)})

    # Plugged in again somewhere else, and after a restart of the agent: never offered again.
    drive.unmount()
    watcher.poll()
    plug(agent, watcher, drive, tmp_path / "sdc1")
    agent.shutdown()
    agent2, watcher2 = make_agent()
    watcher2.poll()
    agent2.offers.wait()
    assert offers_at(agent2, drive.mount_point) == []
    drive.unmount()
    watcher2.poll()
    plug(agent2, watcher2, drive, tmp_path / "sdd1")
    assert offers_at(agent2, drive.mount_point) == [] and len(offer_notes(paths, "HOLIDAYS")) == 1


def test_a_drive_already_there_at_start_is_offered_quietly_and_goes_when_unplugged(paths, make_agent, make_drive):
    drive = make_drive("ext4", label="Quiet One")
    agent, watcher = make_agent()
    watcher.poll()
    agent.offers.wait()
    assert [o["name"] for o in offers_at(agent, drive.mount_point)] == ["‘Quiet One’"]
    assert offer_notes(paths, "Quiet One") == []               # not plugged in while we watched: no pop-up
    mount = drive.mount_point
    drive.unmount()
    watcher.poll()
    assert offers_at(agent, mount) == []


def test_an_enrolled_drive_is_connected_not_offered_and_enrolling_ends_the_offer(paths, make_agent, make_drive,
                                                                                   tmp_path):
    agent, watcher = make_agent()
    watcher.poll()
    drive = make_drive("ext4", label="NEWONE", mount=False)
    plug(agent, watcher, drive, tmp_path / "new")
    assert len(offers_at(agent, drive.mount_point)) == 1, read_log(paths.notifications_log)
    assert len(offer_notes(paths, "NEWONE")) == 1, read_log(paths.notifications_log)
    Handlers(agent).drive_init({"mount": str(drive.mount_point), "label": "Blue"})   # "Set it up"
    assert offers_at(agent, drive.mount_point) == []

    drive.unmount()
    watcher.poll()
    plug(agent, watcher, drive, tmp_path / "again")
    assert list(agent.present.values()) == [str(drive.mount_point)]
    assert offers_at(agent, drive.mount_point) == [] and len(offer_notes(paths, "NEWONE")) == 1


def test_another_computers_plugback_drive_says_so_and_offers_restore(paths, make_agent, make_drive, tmp_path):
    drive = make_drive("ext4", label="ANNS")
    write_drive_file(drive.mount_point, "Ann's backups")
    (drive.mount_point / "Plugback" / "ann-laptop" / "Docs").mkdir(parents=True)
    (drive.mount_point / "Plugback" / "evil\x1b[2J").mkdir()        # names from the drive are cleaned
    (drive.mount_point / "Plugback" / "link").symlink_to("/etc")    # and no symlink is followed
    drive.unmount()
    agent, watcher = make_agent()
    watcher.poll()
    plug(agent, watcher, drive, tmp_path / "sde1")
    (offer,) = offers_at(agent, drive.mount_point)
    assert offer["kind"] == "plugback" and offer["computers"] == ["ann-laptop", "evil[2J"]
    assert offer["drive_label"] == "Ann's backups" and not offer["this_computer"]
    (note,) = offer_notes(paths, "ANNS")
    assert note["title"] == "‘ANNS’ has Plugback backups"
    assert "backups made on ann-laptop" in note["message"] and "Restore" in note["message"]
    (entry,) = [i for i in build_menu(agent.tray_state()) if "ANNS" in i.text]
    assert [i.action for i in entry.submenu] == ["open_page", "open_page", "decline_offer"]
    assert entry.submenu[0].args == ("restore",)


def test_a_read_only_drive_is_not_offered(paths, make_agent, make_drive, tmp_path):
    agent, watcher = make_agent()
    watcher.poll()
    drive = make_drive("ext4", label="RO", mount=False)
    drive.mount(at=tmp_path / "ro")
    subprocess.run(["mount", "-o", "remount,ro", str(drive.mount_point)], check=True)
    watcher.poll()
    agent.offers.wait()
    assert offers_at(agent, drive.mount_point) == [] and offer_notes(paths, "RO") == []


def test_declined_drives_are_validated_on_load(paths):
    bad = {"version": 1, "declined_drives": [{"key": "has space", "name": "x"}]}
    paths.config_file.write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as err:
        read_config(paths.config_file)
    assert err.value.details["field"] == "declined_drives[0].key"
    paths.config_file.write_text(json.dumps({"version": 1, "declined_drives": [{"key": "EB4F-D094", "name": "A"}]}))
    assert read_config(paths.config_file).declined_keys() == {"EB4F-D094"}


def test_add_drive_job_helper_still_sees_no_offer_for_its_drive(paths, make_agent, ext4_drive, tmp_path):
    add_drive_job(paths, ext4_drive.mount_point, [tmp_path])
    agent, watcher = make_agent()
    watcher.poll()
    agent.offers.wait()
    wait_for(lambda: agent.present, what="the enrolled drive")
    assert offers_at(agent, Path(ext4_drive.mount_point)) == []


def test_not_this_drive_from_the_command_line(paths, make_agent, make_drive, tmp_path):
    from tests.support.cli import run_cli

    agent, watcher = make_agent()
    watcher.poll()
    drive = make_drive("ext4", label="CLI STICK", mount=False)
    plug(agent, watcher, drive, tmp_path / "sdf1")
    assert len(offers_at(agent, drive.mount_point)) == 1
    declined = run_cli("drive", "decline", str(drive.mount_point))
    assert declined.returncode == 0, declined.stderr
    assert "will not offer ‘CLI STICK’ for backups again" in declined.stdout
    assert agent.check_config() and offers_at(agent, drive.mount_point) == []   # the agent reads the edit
    assert [d["name"] for d in read_config(paths.config_file).declined_drives] == ["CLI STICK"]
    refused = run_cli("drive", "decline", str(tmp_path))
    assert refused.returncode != 0 and "No drive is mounted at" in refused.stderr


def test_an_eject_right_after_the_plug_in_waits_for_the_look_at_the_volume(paths, make_agent, ext4_drive,
                                                                            monkeypatch):
    """The agent looks at every new volume on a thread of its own; a file that look holds open made
    an eject at that moment fail with "target is busy" (the landing CI of 2026-11-27 met it)."""
    import threading
    import time

    from core.agent import offers
    from core.agent.config_file import update_config
    from core.agent.drives import enroll
    from core.platform.eject import LinuxEjector

    info, _ = enroll(ext4_drive.mount_point, "Blue")
    update_config(paths.config_file, lambda c: c.drives.append({"drive_id": info.drive_id, "label": "Blue"}))
    ext4_drive.unmount()
    agent, watcher = make_agent()
    agent.ejector = LinuxEjector()
    watcher.poll()
    looking = threading.Event()
    real = offers.computers_on

    def slow_look(mount):
        with open(Path(mount) / "Plugback" / "drive.json", "rb"):   # a file of the drive held open
            looking.set()
            time.sleep(0.8)
        return real(mount)
    monkeypatch.setattr(offers, "computers_on", slow_look)
    mount = ext4_drive.mount()
    watcher.poll()
    assert looking.wait(5) and agent.present.get(info.drive_id) == str(mount)
    agent.eject(info.drive_id)                                  # was: EjectFailed, "target is busy"
    assert not os.path.ismount(mount) and info.drive_id not in agent.present
