"""Issue #14 through the real pystray menu under Xvfb: a drive that is not Plugback's is offered in the
menu ("Set it up…" opens the settings at the drive setup, "Not this drive" is remembered), and the
"not backed up for N days" reminder is the status line."""

import sys
from datetime import datetime, timedelta, timezone

from core.agent.config import Destination, Job
from core.agent.config_file import read_config
from core.agent.history import History, RunEnd, RunStatus
from tests.support.agent import wait_for
from tests.tray.test_icon_gui import item, tray  # noqa: F401 - the fixture, used by name


def test_offer_and_reminder_in_the_tray_menu(tray, paths, make_drive, tmp_path):  # noqa: F811
    icon, agent, watcher, _ = tray
    pi = icon.icon
    watcher.poll()
    drive = make_drive("exfat", label="HOLIDAYS", mount=False)
    drive.mount(at=tmp_path / "sdz1")
    watcher.poll()
    agent.offers.wait()
    wait_for(lambda: any(str(i.text) == "Use ‘HOLIDAYS’ for backups?" for i in pi.menu.items), 10, what="the offer")
    entry = item(icon, "Use ‘HOLIDAYS’")
    assert [str(i.text) for i in entry.submenu.items] == ["Set it up as a backup drive…", "Not this drive"]

    opened = tmp_path / "opened.txt"
    agent.options.settings_command = [sys.executable, "-c",
                                      "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]))", str(opened)]
    entry.submenu.items[0](pi)
    wait_for(lambda: opened.exists() and opened.read_text(), 20, what="the settings window to be started")
    assert opened.read_text() == "--page welcome"             # no job yet: the first-run page sets it up

    entry.submenu.items[1](pi)                                # Not this drive
    assert [d["name"] for d in read_config(paths.config_file).declined_drives] == ["HOLIDAYS"]
    wait_for(lambda: not any("HOLIDAYS" in str(i.text) for i in pi.menu.items), 10, what="the offer to go")

    # A job whose last backup is 9 days old: the reminder is the status line and the icon asks for attention.
    agent.edit_config(lambda c: c.jobs.append(Job(name="Docs", sources=[str(tmp_path)],
                                                  destination=Destination(path=str(tmp_path / "set")))))
    history = History(paths.history_file)
    when = datetime.now(timezone.utc) - timedelta(days=9)
    history.finish(history.start("Docs", when), RunEnd(status=RunStatus.OK, ended=when))
    agent.changed()
    wait_for(lambda: str(pi.menu.items[0].text) == "Docs: no backup for 9 days", 10, what="the reminder line")
    wait_for(lambda: pi.icon is icon.images["attention"], 10, what="the attention icon")
