"""The agent's rolling check passes this computer's engine folder to the check phase's verify
(issue #11), as ``plugback verify`` does: the newest manifest, which this agent's backup wrote
and recorded (core/engine/trust.py), is read without decoding its entries when the drive holds
those very bytes (``rawlines.proven_files``); other bytes are decoded and their damage named.

The real agent, a real ext4 loop drive and the engine; the clock is fake (the monthly check
runs a whole pass in one go).
"""

import gzip
import hashlib
import json
from datetime import datetime, timezone

import pytest

from core.agent.agent import Agent
from core.agent.agent_state import AgentOptions
from core.agent.watcher import DriveWatcher
from core.engine import rawlines, verify
from core.engine.progress import FakeClock
from tests.support.agent import add_drive_job, wait_for
from tests.support.trees import make_tree

T0 = datetime(2026, 11, 3, 9, tzinfo=timezone.utc)


@pytest.fixture
def rig(paths, ext4_drive, tmp_path, monkeypatch):
    """(agent, drive_id, used): one backup of a job on the ext4 drive, and the first slice, done;
    ``used`` lists the manifests verify read proven ("proven") or decoded ("decoded")."""
    src = make_tree(tmp_path / "Docs", {f"d{d}/f{i}.txt": f"file {d} {i} ".encode() * (i + 1)
                                        for d in range(3) for i in range(5)})
    drive_id = add_drive_job(paths, ext4_drive.mount_point, [src])
    agent = Agent(paths, clock=FakeClock(T0), options=AgentOptions(battery=lambda: None, rolling_delay=0))
    used = []
    files, add = rawlines.proven_files, verify._Contents.add_manifest

    def spy_files(reader, *args):
        yield from files(reader, *args)
        used.append(("proven", reader.name))   # (read to its end, and proven)

    def spy_add(self, bset, sid, *args):
        used.append(("decoded", sid))
        return add(self, bset, sid, *args)

    monkeypatch.setattr(rawlines, "proven_files", spy_files)
    monkeypatch.setattr(verify._Contents, "add_manifest", spy_add)
    DriveWatcher(agent, interval=0.2).poll()
    wait_for(lambda: agent.history.runs("Docs") and not agent.running()
             and not agent.rolling.checking(f"drive:{drive_id}"), timeout=60, what="the backup and its slice")
    used.clear()
    yield agent, drive_id, used
    agent.shutdown(cancel=True, timeout=30)


def _check_in_one_go(agent, drive_id):
    """The monthly check: the rest of the pass (its check phase too) read now; its verify run."""
    agent.clock.advance(30 * 86400)
    assert agent.check_integrity() == ["Docs"]
    wait_for(lambda: not agent.rolling.checking(f"drive:{drive_id}"), timeout=60, what="the catch-up")
    state = agent.rolling.states.load(agent.config.jobs[0].set_id)
    assert state.cursor.done
    runs = [r for r in agent.history.runs("Docs", kind="verify") if r.status != "running"]
    return runs[0]   # (newest first; the first slice may have finished a pass of this small set)


def _manifest(ext4_drive):
    (path,) = (ext4_drive.mount_point / "Plugback").glob("*/Docs/snapshots/*.json.gz")
    return path, path.name.split(".")[0]


def test_the_check_reads_the_newest_manifest_proven(rig, ext4_drive):
    agent, drive_id, used = rig
    manifest, sid = _manifest(ext4_drive)
    run = _check_in_one_go(agent, drive_id)
    assert run.status == "ok"
    assert ("proven", f"snapshots/{manifest.name}") in used and ("decoded", sid) not in used


def _rewrite_a_size(p):
    """A file's size changed and the trailer recomputed: valid bytes, but not the recorded ones."""
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-2]
    at = next(i for i, line in enumerate(lines) if b'"type":"f"' in line)
    entry = json.loads(lines[at])
    entry["size"] = 3
    lines[at] = json.dumps(entry, separators=(",", ":")).encode()
    body = b"".join(line + b"\n" for line in lines)
    trailer = {"type": "trailer", "entries": len(lines) - 1, "sha256": hashlib.sha256(body).hexdigest()}
    p.write_bytes(gzip.compress(body + json.dumps(trailer, separators=(",", ":")).encode() + b"\n"))


@pytest.mark.parametrize("tamper", ["valid, not recorded", "truncated"])
def test_a_tampered_manifest_is_decoded_and_fails(rig, ext4_drive, tamper):
    agent, drive_id, used = rig
    manifest, sid = _manifest(ext4_drive)
    if tamper == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:-9])
    else:
        _rewrite_a_size(manifest)
    run = _check_in_one_go(agent, drive_id)
    assert ("proven", f"snapshots/{manifest.name}") not in used and ("decoded", sid) in used
    assert run.status != "ok" and run.error
