"""The rolling and monthly checks of a remote job's set (issue #13), run by core/agent/rolling.py.

When: right after a backup of the job succeeded (the remote was reachable a moment ago), on the
same low-priority thread as a drive's slice, stopped the same way (a run asked for on the remote,
pause, quit). There is no catch-up on the minute tick: a remote job runs on its schedule, and
trying an offline remote every minute would only start rclone for nothing.

What (core/agent/remote_scrub.py): with the ``read_back_remote`` preference, a slice of the set's
blobs is downloaded and checked after each backup, sized as a drive's (the pass ends within 30
days), then the quick check ends the pass. Without it (the default: downloads may be paid or
metered, docs/architecture.md "Rolling checks of remote sets"), a pass is the quick check alone
(the listing and the manifests), run once the last one is 30 days old.

A pass's state is kept like a drive's (core/agent/rolling_state.py, by set id); damage or a
finished pass is a ``verify`` run in history, and damage is notified. A damaged standalone object
is deleted, so that the next backup uploads its content again from a source that still has it; a
damaged pack is only reported (its other objects still read).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.agent.history import RunEnd, RunKind, RunStatus, Trigger
from core.agent.rolling_state import PassState, overdue, slice_budget
from core.agent.words import plural
from core.errors import PlugbackError

if TYPE_CHECKING:
    from core.agent.config import Job
    from core.agent.rolling import RollingChecks, SliceCancel

log = logging.getLogger("plugback.rolling")
SHOWN = 3      # damaged blobs named in a notification (the history names them all)


def due(checks: "RollingChecks", job: "Job") -> bool:
    """Whether a slice of ``job``'s remote set is worth opening the remote for now."""
    agent = checks.agent
    state = checks.states.load(job.set_id)
    if agent.config.prefs.read_back_remote or (state is not None and state.under_way):   # a pass to go on with
        return True
    first = agent.history.first_success(job.name)
    return overdue(state, first.started if first else None, agent.clock.now())


def slice_remote(checks: "RollingChecks", job: "Job", cancel: "SliceCancel") -> None:
    """One slice of the remote job's set; its state saved, damage or a finished pass recorded."""
    from core.agent.adopt import same_set
    from core.agent.remote_jobs import open_remote
    from core.agent.remote_scrub import scrub_slice, stored_bytes

    agent = checks.agent
    if not job.set_id or not due(checks, job):
        return
    read_back = agent.config.prefs.read_back_remote
    now = agent.clock.now()
    state = checks.states.load(job.set_id) or PassState(set_id=job.set_id)
    state.note_slice(now)
    catch_up = overdue(state, None, now) if state.under_way else False
    checks.live[cancel.key] = 0
    try:
        assert job.destination.remote is not None
        with open_remote(job.destination.remote, agent._unlocker()) as rset:
            if not same_set(job.set_id, rset.set_id):
                return   # another set there now: the backup says so (set_needs_confirmation)
            if not state.under_way:
                state.begin_pass(now)
            if state.total_bytes is None:
                state.total_bytes = stored_bytes(rset, cancel) if read_back else 0
                if state.total_bytes is None:
                    return
            budget = None if catch_up else slice_budget(state, now, checks.floor)
            result = scrub_slice(rset, state.cursor, budget, read_back=read_back, cancel=cancel,
                                 progress=checks._progress(cancel.key))
            removed = _remove_damaged(rset, result.damaged, agent.clock)
    except PlugbackError as err:   # offline again, the set cannot be opened: the next backup tries again
        log.info("no rolling check of %s now: %s", job.name, err.message)
        return
    finally:
        checks.live.pop(cancel.key, None)
    state.cursor, state.done_bytes = result.cursor, state.done_bytes + result.bytes_read
    if result.finished:
        state.last_full = agent.clock.now()
    checks.states.save(state)
    log.info("rolling check of %s: %s read%s", job.name, plural(result.bytes_read, "byte"),
             ", pass finished" if result.finished else "")
    if result.damaged or result.finished:
        _record(checks, job, state, result, now, read_back, removed)
    agent.changed()


def _remove_damaged(rset, damaged, clock) -> list[str]:
    """Delete the damaged standalone objects (under the set's lock, so no backup runs meanwhile);
    the blobs removed. Such a blob can never be read again (its content does not authenticate),
    and the next backup uploads content the listing lacks from any source file that still holds
    it, which mends every snapshot naming it. A damaged pack is left: its other objects still
    read. A remote that fails here leaves the rest for the next pass."""
    from core.engine.storage.lock import RemoteLock

    objects = [d.where for d in damaged if d.where.startswith("objects/")]
    removed: list[str] = []
    if not objects:
        return removed
    try:
        with RemoteLock(rset.backend, clock, purpose="repair"):
            for blob in objects:
                rset.backend.delete(blob)
                removed.append(blob)
    except PlugbackError as err:
        log.warning("damaged objects at %s not removed now: %s", rset.root, err.message)
    return removed


def _record(checks: "RollingChecks", job: "Job", state: PassState, result, started, read_back: bool,
            removed: list[str]) -> None:
    """History (a ``verify`` run) and, for damage, a notification."""
    agent = checks.agent
    spec = job.destination.remote
    began = state.pass_started if result.finished and not result.damaged and state.pass_started else started
    run_id = agent.history.start(job.name, began, kind=RunKind.VERIFY, trigger=Trigger.SCHEDULE)
    lines = []
    if result.finished:
        what = "every stored byte of this set was downloaded and checked again" if read_back else \
            "the listing and every snapshot's manifest were checked (the content was not downloaded: " \
            "Preferences, 'Also read back cloud and network backups')"
        lines.append(f"rolling check of {spec}: {what}")
    lines.extend(result.notices)
    lines.extend(f"damaged: {d.where}: {d.reason}" for d in result.damaged)
    lines.extend(f"removed {blob}: the next backup stores this content again from any file here that still "
                 "holds it" for blob in removed)
    error = None
    if result.damaged:
        names = "; ".join(d.where for d in result.damaged[:SHOWN]) + (" …" if len(result.damaged) > SHOWN else "")
        error = f"{plural(len(result.damaged), 'damaged item')} at {spec}: {names}"
        lines.append(f"to see which files are affected: plugback verify {spec} --read-all")
    agent.history.append_log(run_id, "\n".join(lines))
    status = RunStatus.FAILED if result.damaged else RunStatus.OK
    agent.history.finish(run_id, RunEnd(status=status, ended=agent.clock.now(), error=error,
                                        error_code="damaged" if result.damaged else None))
    if result.damaged:
        again = " The next backup stores the damaged content again where this computer still has it." \
            if removed else ""
        agent.notifier.notify(f"{job.name}: damage found at {spec}", f"{error}.{again} The history has the details.",
                              "failed")
