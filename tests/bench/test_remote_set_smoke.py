"""bench/remote_set.py must not rot: one round of plugback and restic through rclone to a loopback
WebDAV server on a tiny source, every restore identical (speed is never asserted), no restored tree
or remote folder deleted before the last command ran."""

import os
import re

from tests.bench.kept import deleted_between, run_watched
from tests.support.tools import need

ROW = r"\| {} \| [\d.]+ \([\d.]+\) \| [\d.]+ \([\d.]+\) \| [\d.]+ \([\d.]+\) \| [\d.]+ \| True \|"


def test_remote_set_backs_up_and_restores_with_plugback_and_restic(tmp_path):
    need("rclone", "restic")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, events = run_watched(tmp_path, tmp, 3, ":timed", "remote_set.py", "--small", "20", "--big", "1",
                               "--rounds", "1", "--tools", "plugback,restic", "--markdown", env={"TMPDIR": str(tmp)},
                               timeout=300)
    assert deleted_between(events, 3) == [] and len(events) == (3 * 2 + 1) * 2, events
    for tool in ("plugback", "restic"):
        assert re.search(ROW.format(tool), proc.stdout), proc.stdout
    assert os.listdir(tmp) == []
