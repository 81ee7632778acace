"""core/agent/browse.py: the exclude preview the Jobs page shows, and restoring to the original place,
on real folders and sets."""

import dataclasses
import os

import pytest

from core.agent.browse import exclude_preview, original_places
from core.agent.config import Destination, Job
from core.agent.handlers import Handlers
from core.engine.repo import BackupSet
from core.errors import UsageError
from tests.support.agent import wait_for
from tests.support.trees import make_tree


def test_exclude_preview_lists_what_is_left_out(tmp_path):
    src = make_tree(tmp_path / "S", {"a.tmp": b"", "b.txt": b"", "node_modules/x/y.js": b"", ".DS_Store": b"",
                                     "sub/c.tmp": b"", "sub/d.txt": b""})
    preview = exclude_preview([str(src)], ["*.tmp", "node_modules/"])
    # An excluded folder is one line (nothing below it is looked at); the defaults count too.
    assert preview == {"excluded": [str(src / "node_modules") + os.sep, str(src / ".DS_Store"), str(src / "a.tmp"),
                                    str(src / "sub" / "c.tmp")],
                       "count": 4}
    assert exclude_preview([str(src)], ["nothing-matches"]) == {"excluded": [str(src / ".DS_Store")], "count": 1}


def test_exclude_preview_skips_missing_sources(tmp_path):
    assert exclude_preview([str(tmp_path / "gone")], ["*"]) == {"excluded": [], "count": 0}


# -- restore to the original place (issue #10): this computer's sources of the job, never the drive's word --




def _job(*sources):
    return Job(name="Docs", sources=[str(s) for s in sources], destination=Destination(path="/x"))


def test_original_places_come_from_the_jobs_sources():
    job = _job("/home/me/Docs", "/home/me/work/Docs", "/home/me/Photos")
    recorded = [{"name": "Docs", "path": "/etc"}, {"name": "Docs-2", "path": "/home/me/work/Docs"}]
    assert original_places(job, recorded, {"Docs", "Docs-2", "Photos"}) == {
        "Docs": "/home/me/Docs",            # recorded /etc is not a source: by its name
        "Docs-2": "/home/me/work/Docs",     # recorded and still configured
        "Photos": "/home/me/Photos"}        # not recorded at all: by its name
    with pytest.raises(UsageError, match="no folder to back up that matches 'Music'.*folder you choose"):
        original_places(job, recorded, {"Music"})


def _rewrite_sources(set_path, sources):
    """Make the newest manifest record other source paths (as a crafted drive would)."""
    bset = BackupSet.open(set_path)
    sid = bset.newest_id()
    forged = dataclasses.replace(bset.manifest(sid), sources=sources)
    bset.layout.manifest(sid).write_bytes(bset.encode_manifest(forged))


def test_restore_to_the_original_place_writes_to_the_configured_source(make_agent, tmp_path):
    agent, _ = make_agent()
    handlers = Handlers(agent).table()
    mine = make_tree(tmp_path / "me" / "Docs", {"a.txt": b"alpha", "sub/b.txt": b"bravo"})
    job = {"name": "Docs", "sources": [str(mine)], "destination": {"path": str(tmp_path / "set")},
           "triggers": {"on_connect": False}}
    handlers["job_save"]({"job": job})
    handlers["run_job"]({"name": "Docs"})
    wait_for(lambda: agent.history.runs("Docs") and agent.history.runs("Docs")[0].status == "ok", what="the backup")
    elsewhere = tmp_path / "other-user" / "Docs"      # another user's home, as the drive says
    _rewrite_sources(tmp_path / "set", [{"name": "Docs", "path": str(elsewhere)}])
    (mine / "a.txt").unlink()

    plan = handlers["restore_plan"]({"job": "Docs", "paths": ["Docs/a.txt"]})
    assert plan["destinations"] == [{"top": "Docs", "to": str(mine)}]
    handlers["restore"]({"job": "Docs", "snapshot": "latest", "paths": ["Docs/a.txt"], "target": None})
    task = wait_for(lambda: not agent.restore_task["running"] and agent.restore_task, what="the restore")
    assert task["error"] is None and task["result"]["files_restored"] == 1
    assert task["destinations"] == plan["destinations"]
    assert (mine / "a.txt").read_bytes() == b"alpha"
    assert not (tmp_path / "other-user").exists()

    # A snapshot folder the job no longer backs up has no original place: refused, nothing written.
    handlers["job_save"]({"job": {**job, "sources": [str(make_tree(tmp_path / "me" / "Photos", {}))]},
                          "original_name": "Docs"})
    with pytest.raises(UsageError, match="folder you choose"):
        handlers["restore_plan"]({"job": "Docs", "paths": ["Docs"]})
    with pytest.raises(UsageError, match="folder you choose"):
        handlers["restore"]({"job": "Docs", "paths": ["Docs/a.txt"], "target": None})
    # Another folder is always possible, and shown in full.
    plan = handlers["restore_plan"]({"job": "Docs", "paths": ["Docs/a.txt"], "target": str(tmp_path / "out")})
    assert plan["destinations"] == [{"top": "Docs", "to": str(tmp_path / "out" / "Docs")}]
