"""Drives that are not Plugback's yet: "Use ‘LABEL’ for backups?" (issue #14, "Unknown drive").

When a writable, external, non-system volume is mounted and it is not an
enrolled drive, the agent offers it — once per plug-in, as a notification, and
for as long as it stays mounted in the tray menu, the Overview and ``plugback
status``. A drive that already carries a ``Plugback`` folder (another
computer's backups, or this computer's from before the drive was forgotten)
says so and offers restore. "Not this drive" is remembered in config.json
(``declined_drives``) by the file system's UUID (or the device serial), never
by its label or mount point, so it holds after a re-plug elsewhere.

The watcher calls :meth:`Offers.volume_added` / :meth:`Offers.volume_removed`
(through the agent's hooks of the same name). Looking at a volume runs blkid or
udevadm, so it happens on a short-lived thread, never on the watcher's.
Everything read from the drive (its label, ``drive.json``, folder names) is
untrusted: cleaned for display, folders listed without following symlinks.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.engine.layout import DRIVE_DIR
from core.platform.volume_label import VolumeIdentity, clean, describe, identify

log = logging.getLogger("plugback.offers")

#: Offer kinds: an empty or foreign-content drive, and one that holds Plugback backups.
NEW, PLUGBACK = "new", "plugback"
MAX_COMPUTERS = 50   # computer folders looked at under Plugback/ (the drive is untrusted)


@dataclass
class Offer:
    """A mounted drive Plugback could use (the IPC ``Offer`` shape, docs/ipc.md)."""

    mount: str
    kind: str                      # NEW or PLUGBACK
    name: str                      # how to call it: ‘LABEL’ or "the 32 GB exFAT drive"
    label: str | None              # the file system's label (None: it has none)
    drive_key: str | None          # what "Not this drive" remembers (fs UUID or serial); None: cannot
    filesystem: str
    total: int
    drive_label: str | None = None   # a Plugback drive's own name (drive.json)
    computers: list[str] = field(default_factory=list)   # whose backups are on it
    this_computer: bool = False      # one of them is this computer

    def to_dict(self) -> dict:
        """The IPC shape, with the words every place shows (``title``, ``message``)."""
        return {**asdict(self), "title": self.title(), "message": self.message()}

    def title(self) -> str:
        """The notification's title (and the menu's line)."""
        if self.kind == PLUGBACK:
            return f"{_cap(self.name)} has Plugback backups"
        return f"Use {self.name} for backups?"

    def message(self) -> str:
        """The notification's text: what the drive holds and where to answer."""
        if self.kind == PLUGBACK:
            whose = ", ".join(self.computers) or "an unknown computer"
            mine = "this computer" if self.this_computer else None
            text = (f"It holds backups of {mine}." if mine and len(self.computers) <= 1
                    else f"It holds backups made on {whose}.")
            return f"{text} Restore files from it, or use it for backups here: see Plugback's menu."
        return "Set it up as a backup drive from Plugback's menu, or choose “Not this drive”."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def decide(*, removable: bool, writable: bool, system_reason: str | None, drive_id: str | None,
           has_plugback_folder: bool, enrolled: set[str] | frozenset, drive_key: str | None,
           declined: set[str] | frozenset) -> str | None:
    """Whether (and how) to offer a volume: NEW, PLUGBACK or None. Pure, for table tests.

    Only writable, external (removable), non-system volumes are offered; an enrolled
    drive never is (the watcher connects it), nor one the user declined.
    """
    if not removable or not writable or system_reason:
        return None
    if drive_id is not None and drive_id in enrolled:
        return None
    if drive_key is not None and drive_key in declined:
        return None
    return PLUGBACK if drive_id is not None or has_plugback_folder else NEW


def computers_on(mount: Path) -> list[str]:
    """The computer folders under ``<mount>/Plugback`` (real folders only; no symlink followed)."""
    top = Path(mount) / DRIVE_DIR
    try:
        if top.is_symlink() or not top.is_dir():
            return []
        names = []
        with os.scandir(top) as it:
            for i, entry in enumerate(it):
                if i >= MAX_COMPUTERS:
                    break
                if entry.is_dir(follow_symlinks=False):
                    name = clean(entry.name)
                    if name:
                        names.append(name)
        return sorted(names, key=str.casefold)
    except OSError:
        return []


def examine(mount: str, *, enrolled: set[str] | frozenset, declined: set[str] | frozenset,
            host: str | None = None, identify_fn=identify) -> Offer | None:
    """The offer for the volume mounted at ``mount`` now, or None (see :func:`decide`)."""
    from core.agent.drives import list_volumes, read_drive_file, system_volume_reason

    volume = next((v for v in list_volumes() if v.mount == mount), None)
    if volume is None:
        return None   # gone already, or not a file system that can hold backups
    info = read_drive_file(Path(mount))
    computers = computers_on(Path(mount))
    judge = functools.partial(decide, removable=volume.removable, writable=os.access(mount, os.W_OK),
                              system_reason=system_volume_reason(Path(mount)),
                              drive_id=info.drive_id if info else None, has_plugback_folder=bool(computers),
                              enrolled=enrolled, declined=declined)
    if judge(drive_key=None) is None:
        return None   # decided without asking the OS for the label and identity
    ident: VolumeIdentity = identify_fn(volume.device, mount)
    kind = judge(drive_key=ident.uuid)
    if kind is None:
        return None
    host = host or socket.gethostname()
    drive_label = clean(info.label) if info else None
    name = describe(ident.label, volume.total, volume.filesystem)
    if not ident.label and drive_label:
        name = f"the drive ‘{drive_label}’"
    return Offer(mount=mount, kind=kind, name=name, label=ident.label, drive_key=ident.uuid,
                 filesystem=volume.filesystem, total=volume.total, drive_label=drive_label,
                 computers=computers, this_computer=any(c.casefold() == host.casefold() for c in computers))


def declinable(mount: str, identify_fn=identify) -> tuple[str, str, str]:
    """(identity, name to keep, words for people) of the drive at ``mount``: "Not this drive" from the CLI.

    UsageError when nothing is mounted there or the drive has no identity to be remembered by.
    """
    from core.agent.drives import list_volumes
    from core.errors import UsageError

    real = os.path.realpath(mount)
    volume = next((v for v in list_volumes() if os.path.realpath(v.mount) == real), None)
    if volume is None:
        raise UsageError(f"No drive is mounted at {mount} ('plugback drives' lists them).")
    ident = identify_fn(volume.device, volume.mount)
    if not ident.uuid:
        raise UsageError(f"The drive at {mount} has no file-system id or serial number to be recognised by; "
                         "it cannot be remembered. Ignore the offer until it is unplugged.")
    words = describe(ident.label, volume.total, volume.filesystem)
    return ident.uuid, ident.label or words, words


class Offers:
    """The agent's current offers, one per mounted, un-enrolled, undeclined drive."""

    def __init__(self, agent, *, identify_fn=identify):
        self.agent = agent
        self.identify_fn = identify_fn
        self._offers: dict[str, Offer] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def volume_added(self, mount: str, plugged: bool = True) -> threading.Thread | None:
        """A volume appeared at ``mount`` (``plugged`` False: it was there when the agent started,
        so it is offered in the menu but not announced). Looked at on its own thread."""
        from core.agent.drives import SYSTEM_MOUNTS

        if mount in SYSTEM_MOUNTS:
            return None   # "/", "/home"…: never offered, no need to look
        thread = threading.Thread(target=self._look, args=(mount, plugged), name="offer", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def wait(self, timeout: float = 30) -> None:
        """Wait until every look started so far is done (tests, shutdown)."""
        for t in list(self._threads):
            t.join(timeout)

    def _look(self, mount: str, plugged: bool) -> None:
        cfg = self.agent.config
        try:
            offer = examine(mount, enrolled={d["drive_id"] for d in cfg.drives}, declined=cfg.declined_keys(),
                            identify_fn=self.identify_fn)
        except Exception:   # noqa: BLE001 - a strange drive must not stop the agent
            log.exception("looking at %s failed", mount)
            return
        if offer is None or mount in self.agent.present.values():
            return
        with self._lock:
            if mount in self._offers:
                return
            self._offers[mount] = offer
        log.info("offering %s (%s, %s)", mount, offer.kind, offer.name)
        self.agent.changed()
        if plugged:
            self.agent.notifier.notify(offer.title(), offer.message(), "offer", self._buttons(offer))

    def _buttons(self, offer: Offer) -> list:
        """The notification's buttons: the tray menu's and the Overview's choices (the first is a click)."""
        from core.platform.notify import Action

        setup = "drives" if self.agent.config.jobs else "welcome"
        buttons = [Action("Set it up…", lambda: self.agent.open_settings(setup)),
                   Action("Not this drive", lambda: self.decline(offer.mount))]
        if offer.kind == PLUGBACK:
            buttons.insert(0, Action("Restore files…", lambda: self.agent.open_settings("restore")))
        return buttons

    def volume_removed(self, mount: str) -> None:
        """The volume at ``mount`` is gone: so is its offer."""
        with self._lock:
            gone = self._offers.pop(mount, None)
        if gone is not None:
            self.agent.changed()

    def current(self) -> list[Offer]:
        """The offers to show now: not for drives enrolled (or declined) since they were made."""
        enrolled_at = set(self.agent.present.values())
        declined = self.agent.config.declined_keys()
        with self._lock:
            return [o for m, o in sorted(self._offers.items())
                    if m not in enrolled_at and not (o.drive_key and o.drive_key in declined)]

    def decline(self, mount: str) -> Offer:
        """'Not this drive': remember the drive's identity in config.json and drop the offer.

        A drive without a file-system UUID or serial cannot be recognised again: its offer
        goes away until it is plugged in next time.
        """
        from core.errors import NotFound

        with self._lock:
            offer = self._offers.pop(mount, None)
        if offer is None:
            raise NotFound(what="drive offer", name=mount, hint="The drive may have been unplugged.")
        if offer.drive_key:
            self.agent.edit_config(lambda cfg: cfg.decline_drive(offer.drive_key, offer.label or offer.name))
        else:
            self.agent.changed()
        return offer
