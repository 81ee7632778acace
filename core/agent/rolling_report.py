"""What a rolling check found, in words (issue #14): repairs made, the history's log lines, the
notification. Damage is repaired here (core/engine/mend.py) from the job's own sources only."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.agent.config import Job
from core.agent.history import RunStatus
from core.agent.words import plural
from core.errors import PlugbackError

SHOWN = 3      # damaged files named in a notification (the history names them all)


@dataclass
class Report:
    """The history row's status, error and log, and the notification (none when ``title`` is None)."""

    status: RunStatus
    log: list[str] = field(default_factory=list)
    error: str | None = None
    title: str | None = None
    text: str = ""
    kind: str = "info"
    repaired: int = 0


def damage_report(job: Job, bset, result, state, label: str, clock) -> Report:
    """Mend what ``result`` (a scrub slice) found damaged, and say so."""
    log = []
    if result.finished:
        since = state.pass_started.astimezone().strftime("%Y-%m-%d %H:%M") if state.pass_started else "?"
        log.append(f"rolling check: every stored byte of this set was read again since {since} "
                   f"({plural(state.done_bytes, 'byte')})")
    log.extend(result.notices)
    if not result.damaged:
        return Report(RunStatus.OK, log)
    mended = _mend(job, bset, result.damaged, clock)
    for m in mended:
        held = m.holders
        where = f" (held by {plural(len(held.snapshots), 'snapshot')}: {', '.join(held.paths)})" \
            if held.snapshots else ""
        log.append(f"damaged: {m.damage.where}: {m.damage.reason}{where}")
        log.append(f"  {'repaired' if m.repaired else 'nothing lost' if m.moot else 'not repaired'}: {m.note}")
    fixed = sum(1 for m in mended if m.repaired)
    bad = [m for m in mended if not m.repaired and not m.moot]
    if not fixed and not bad:
        return Report(RunStatus.OK, log)
    if not bad:
        return Report(RunStatus.WARNINGS, log, title=f"{job.name}: damage on '{label}' repaired",
                      text=f"{plural(fixed, 'file')} had changed on the drive and {'was' if fixed == 1 else 'were'} "
                           "copied again from this computer. If this happens again, the drive may be failing.",
                      kind="failed", repaired=fixed)
    names = "; ".join(_what(m) for m in bad[:SHOWN]) + (" …" if len(bad) > SHOWN else "")
    error = f"{plural(len(bad), 'damaged file')} on '{label}' could not be repaired: {names}"
    text = (f"{names}. " + (f"{plural(fixed, 'other file')} repaired. " if fixed else "")
            + "The history lists the snapshots affected; the drive may be failing.")
    return Report(RunStatus.FAILED, log, error, f"{job.name}: damage found on '{label}'", text, "failed", fixed)


def _what(m) -> str:
    """A damaged item in a few words: its file and how many snapshots hold it."""
    held = m.holders
    name = held.paths[0] if held.paths else m.damage.entry.path if m.damage.entry else m.damage.where
    return f"{name} (in {plural(len(held.snapshots), 'snapshot')})" if held.snapshots else name


def _mend(job: Job, bset, damaged, clock) -> list:
    from core.engine.mend import Holders, Mended, mend

    try:
        return mend(bset, damaged, list(job.sources), clock=clock)
    except PlugbackError as err:   # a backup holds the set's lock, or the drive went
        note = f"not repaired now ({err.message}); the next pass finds it again"
        return [Mended(d, False, note, Holders(snapshots=[d.snapshot] if d.snapshot else [])) for d in damaged]
