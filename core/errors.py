"""Every expected failure as a type with a stable code and a human message.

The code is stable (the UI, the IPC replies and scripts match on it); the
message says what happened and what to do. Exit codes of the CLI come from
``exit_code``. Per-file problems during a run are *not* raised: they are
collected as :class:`core.engine.progress.RunWarning` on the run.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_WARNINGS = 3
EXIT_DAMAGE = 4

# What an open with O_NOFOLLOW raises when the name is a symbolic link: ELOOP (Linux, macOS),
# EMLINK (FreeBSD). Every opener that refuses links asks `refused_symlink`, so the pair lives here.
_REFUSED_LINK = frozenset({errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)})


def refused_symlink(err: OSError) -> bool:
    """True when ``err`` is an ``O_NOFOLLOW`` open refusing a symbolic link."""
    return err.errno in _REFUSED_LINK


class PlugbackError(Exception):
    """Base of every expected error. ``str(err)`` is the human message."""

    code = "error"
    exit_code = EXIT_FAILURE

    def __init__(self, message: str | None = None, **details):
        self.details = details
        super().__init__(message or self.default_message(**details))

    def default_message(self, **details) -> str:
        return "Something went wrong."

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict:
        """The error as an IPC / JSON reply; ``field`` names the setting it is about, when it is about one
        (the window shows the message by that field)."""
        field = self.details.get("field")
        return {"ok": False, "code": self.code, "message": self.message,
                **({"field": field} if isinstance(field, str) else {})}


class UsageError(PlugbackError):
    """Bad input from the user: a wrong argument, a missing folder."""

    code = "bad_input"
    exit_code = EXIT_USAGE


class BadRequest(UsageError):
    """An IPC request whose arguments are missing or of the wrong type (a client bug, or a stale window)."""

    code = "bad_request"

    def default_message(self, reason="", **_):
        return f"The request's arguments are wrong: {reason}. Update or restart the program that sent it."


class SourceMissing(UsageError):
    code = "source_missing"

    def default_message(self, path="", **_):
        return f"The folder to back up does not exist: {path}. Check the path, or remove it from the job."


class NotASet(UsageError):
    code = "not_a_set"

    def default_message(self, path="", **_):
        return (f"{path} is not a Plugback backup set (no plugback.json). "
                "Check the path; a new set is only created by 'plugback backup'.")


class NewerFormat(PlugbackError):
    code = "newer_format"

    def default_message(self, path="", version="?", **_):
        return (f"The backup set at {path} uses format version {version}, which is newer than this "
                "Plugback understands. Update Plugback to read it; nothing was changed.")


class SnapshotNotFound(UsageError):
    code = "snapshot_not_found"

    def default_message(self, snapshot="", **_):
        return f"There is no snapshot '{snapshot}' in this set. 'plugback snapshots SET' lists them."


class SetLocked(PlugbackError):
    code = "set_locked"

    def default_message(self, holder="", **_):
        return (f"Another backup is writing to this set right now ({holder}). "
                "Wait for it to finish, or stop it, then try again.")


class DriveGone(PlugbackError):
    code = "drive_removed"

    def default_message(self, path="", **_):
        return ("The backup drive was removed during the backup. Nothing already saved is damaged; "
                "plug it in again to finish.")


def _size_words(n) -> str:
    """Decimal units, like file managers (the same rule as core.agent.words.size)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _intact_words(intact) -> str:
    """Only true words: 'intact' when a complete backup exists, 'none yet' when none does."""
    if intact is True:
        return "The last complete backup is intact and can be restored."
    if intact is False:
        return "There is no complete backup on it yet."
    return "Nothing already saved was damaged."


_RELEASED = "What it had copied was removed again, so the drive is not left full."
_SPACE_ADVICE = "Free up space on the drive, leave some files out of this backup, or use a bigger drive."


class DiskFull(PlugbackError):
    """The destination ran out of space during a run (ENOSPC). ``intact``: whether a complete
    backup exists (True / False; unknown when the file system layer raises it); ``released``:
    the run's copies were taken back; ``hint``: what the caller adds (the CLI names the real set
    and its flag; the window shows buttons)."""

    code = "disk_full"

    def default_message(self, path="", intact=None, released=False, hint="", **_):
        return " ".join(filter(None, ["The backup drive is full; the backup stopped before it was complete.",
                                      _RELEASED if released else "", _intact_words(intact), _SPACE_ADVICE, hint]))


class DriveFull(DiskFull):
    """Checked before writing: this run cannot fit on the drive, even after removing old backups
    (``thinned``: whether there were any to remove). Nothing was written, unless ``partial``: a
    run that hit ENOSPC first (``released``: its copies were taken back)."""

    code = "drive_full"

    def default_message(self, needed=0, free=0, free_after=None, thinned=False, intact=None, partial=False,
                        released=False, hint="", **_):
        if free_after is not None and thinned:
            room = f"the drive has {_size_words(free_after)} free even after removing old backups"
        else:
            room = f"the drive has {_size_words(free)} free"
        return " ".join(filter(None, [f"Not backed up: this backup needs about {_size_words(needed)}, but {room}.",
                                      (_RELEASED if released else "") if partial else "Nothing was written.",
                                      _intact_words(intact), _SPACE_ADVICE, hint]))


class ReadOnlyDestination(PlugbackError):
    code = "read_only"

    def default_message(self, path="", **_):
        return (f"The backup destination is read-only ({path}). Check the drive's write-protect "
                "switch, or that it is mounted read-write.")


class DestinationUnwritable(PlugbackError):
    code = "destination_unwritable"

    def default_message(self, path="", reason="", **_):
        return (f"Plugback cannot write to {path}: {reason}. Check that you may write there "
                "and that the drive works.")


class IOFailure(PlugbackError):
    code = "io_error"

    def default_message(self, path="", reason="", **_):
        return (f"The drive reported an input/output error at {path} ({reason}). The drive may be "
                "failing: run 'plugback verify SET --read-all', and copy your backups to another drive.")


class DamagedSet(PlugbackError):
    """Verification or restore found content that does not match its manifest."""

    code = "damaged"
    exit_code = EXIT_DAMAGE

    def default_message(self, what="", **_):
        return (f"The backup is damaged: {what}. Run 'plugback verify SET --read-all' to list every "
                "damaged file.")


class ManifestDamaged(DamagedSet):
    code = "manifest_damaged"

    def default_message(self, path="", reason="", **_):
        return (f"The snapshot list {path} is damaged ({reason}). Other snapshots are not affected; "
                "run 'plugback verify SET' for details.")


class UnsafePath(DamagedSet):
    code = "unsafe_path"

    def default_message(self, path="", **_):
        return (f"The snapshot contains a path that would write outside the restore folder: {path!r}. "
                "It was refused; the manifest may have been tampered with.")


class UnsafeSet(DamagedSet):
    """Writing in a set would leave it: a symlink on the way to the set or inside it, a path
    from a manifest that reaches outside ``Latest/``, or a set that is not where its drive is."""

    code = "unsafe_set"

    def default_message(self, path="", reason="", **_):
        return (f"Plugback refused to write to the backup set: {path} {reason}. Nothing outside the set "
                "was changed. If you did not put it there, the drive may have been tampered with: look "
                "at it, remove it, and run the backup again (or back up to a new folder).")


class Cancelled(PlugbackError):
    code = "cancelled"

    def default_message(self, **_):
        return "The run was stopped. What was saved so far will be reused by the next run."


class WrongPassphrase(UsageError):
    code = "wrong_passphrase"

    def default_message(self, **_):
        return "Wrong passphrase: this backup set could not be opened with it. Try again, or use the recovery key."


class PassphraseNeeded(UsageError):
    code = "passphrase_needed"

    def default_message(self, **_):
        return ("This backup set is encrypted and no passphrase was found (keyring, "
                "PLUGBACK_PASSPHRASE, or a prompt). Give the passphrase or the recovery key.")


class KeyringUnavailable(PlugbackError):
    code = "no_keyring"

    def default_message(self, reason="", **_):
        return (f"No system keyring is available ({reason}). Plugback will ask for the passphrase "
                "instead; set PLUGBACK_PASSPHRASE for unattended backups.")


class ConfigError(UsageError):
    code = "bad_config"

    def default_message(self, field="", reason="", path="", **_):
        return (f"The settings file {path} has a problem in '{field}': {reason}. "
                "Fix it, or move the file away to start fresh.")


class AgentUnavailable(PlugbackError):
    code = "agent_unavailable"

    def default_message(self, **_):
        return "The Plugback agent is not running. Start it with 'plugback-tray'."


class BadRecoveryKey(UsageError):
    """The recovery key text is malformed or fails its checksum (a typo)."""

    code = "bad_recovery_key"

    def default_message(self, reason="", **_):
        return (f"This recovery key is not valid: {reason}. Check it character by character against "
                "the printed copy (spaces, dashes and upper/lower case do not matter).")


class WrongRecoveryKey(WrongPassphrase):
    """A well-formed recovery key that belongs to another backup set."""

    code = "wrong_recovery_key"

    def default_message(self, **_):
        return ("This recovery key is valid but belongs to another backup set. Use the recovery key "
                "printed for this set, or its passphrase.")


class EncryptedDataDamaged(DamagedSet):
    """Encrypted content failed authentication: flipped bits, truncation, reordering, splicing."""

    code = "encrypted_damaged"

    def default_message(self, name="", reason="", **_):
        return (f"The encrypted backup data '{name}' is damaged or was tampered with ({reason}). "
                "Its content cannot be trusted and was not used. Run 'plugback verify SET --read-all' "
                "to list every damaged file.")


class ObjectNameMismatch(DamagedSet):
    """An object decrypted fine but its content does not match its name (copied or renamed)."""

    code = "object_mismatch"

    def default_message(self, name="", **_):
        return (f"The backup object '{name}' does not hold the content its name says: it was copied "
                "or renamed on the drive. It was not used. Run 'plugback verify SET --read-all'.")


class NotEnrollable(UsageError):
    """A volume that cannot become a backup drive (system volume, read-only, not a mount point)."""

    code = "not_enrollable"

    def default_message(self, mount="", reason="", **_):
        return f"{mount} cannot be used as a backup drive: {reason}"


class NotFound(UsageError):
    """A job, drive or run named by the user does not exist."""

    code = "not_found"

    def default_message(self, what="", name="", hint="", **_):
        return f"There is no {what} '{name}'. {hint}".strip()


class DriveNotConnected(PlugbackError):
    """A job's destination drive is not plugged in."""

    code = "drive_absent"

    def default_message(self, label="", **_):
        return (f"The backup drive '{label}' is not connected. Plug it in; the backup then starts by "
                "itself if the job runs on connect, or run it again.")


class SetNeedsConfirmation(PlugbackError):
    """A job found a backup set it did not make (or another one than it is bound to) at its
    destination: it is used only after the user confirms (core.agent.adopt)."""

    code = "set_needs_confirmation"

    def default_message(self, job="", path="", facts="", **_):
        return (f"The destination of '{job}' already holds a backup that this job did not make "
                f"({facts}; at {path}). Plugback did not back up into it. If it is yours, confirm it: "
                f"“Use this backup” in the settings window, or 'plugback job adopt \"{job}\"'. "
                "Otherwise remove that drive, or give the job another name or destination.")


class AgentBusy(PlugbackError):
    """The agent refused an action that conflicts with a running one."""

    code = "busy"

    def default_message(self, reason="", **_):
        return f"Plugback is busy: {reason}. Try again when it has finished."


class EjectFailed(PlugbackError):
    """The OS refused to eject a drive."""

    code = "eject_failed"

    def default_message(self, mount="", reason="", **_):
        return (f"The drive at {mount} could not be ejected: {reason}. Close any window or program "
                "using it, then try again.")


class DriveFileDamaged(DamagedSet):
    """A file Plugback reads from a drive (drive.json, plugback.json, a lock...) cannot be used:
    not a regular file, reached through a symlink, too big, or not what its format says."""

    code = "drive_file_damaged"

    def default_message(self, path="", reason="", **_):
        return (f"The file {path} on the backup drive cannot be used ({reason}). Plugback read nothing "
                "from it and changed nothing. If you did not put it there, the drive is damaged or was "
                "tampered with: check it, or restore that file from another copy of the drive.")


class UnsafeManifestPath(ManifestDamaged, UnsafePath):
    """A manifest entry whose path or mirror name would reach outside the set or the restore folder.

    Both a damaged manifest (verify lists it, backup sets it aside) and an unsafe
    path (restore refuses it): it is caught as either.
    """

    code = "unsafe_path"

    def default_message(self, path="", entry="", **_):
        return (f"The snapshot list {path} contains the path {entry!r}, which would reach outside the "
                "restore folder or the backup set. The snapshot was refused; the manifest may have been "
                "tampered with. Other snapshots are not affected.")


class VolumesNotListed(PlugbackError):
    """Listing the mounted volumes did not finish in time (a hung mount; see core.agent.drives)."""

    code = "volumes_not_listed"

    def default_message(self, seconds=0, **_):
        return (f"The list of mounted volumes did not come within {seconds:g} s: a drive or share "
                "does not answer. Unplug it or check the network, then try again.")


# --- storage backends (issue #13: core.engine.storage) -------------------------------------

class StorageError(PlugbackError):
    """A backend (a local folder, an rclone remote) could not do what was asked. ``transient``
    says whether trying again later can help (the ``Retrying`` wrapper retries only those)."""

    code = "storage_error"
    transient = False

    def default_message(self, where="", reason="", **_):
        return (f"The backup location {where} refused the operation: {reason}. Nothing already saved "
                "was changed; check the location (rclone config, the server) and try again.")


class RemoteUnavailable(StorageError):
    """Transient: the connection was refused, reset or timed out; the server said 5xx or 429."""

    code = "remote_unavailable"
    transient = True

    def default_message(self, where="", reason="", **_):
        return (f"The backup location {where} could not be reached ({reason}). Nothing already saved "
                "was damaged; check the network connection and that the server is up, then try again.")


class BlobNotFound(StorageError):
    code = "blob_not_found"

    def default_message(self, where="", name="", **_):
        return (f"'{name}' is missing from the backup location {where}. If it was not deleted on "
                "purpose, run 'plugback verify SET' to see what is affected.")


class RemoteFull(StorageError):
    code = "remote_full"

    def default_message(self, where="", reason="", **_):
        return (f"The backup location {where} is full or over its quota ({reason}). The backup stopped "
                "before it was complete; the last complete backup is intact. Free up space there, raise "
                "the quota, or remove old snapshots with 'plugback forget SET --prune'.")


class RemoteAuthFailed(StorageError):
    code = "remote_auth_failed"

    def default_message(self, where="", reason="", **_):
        return (f"The backup location {where} refused the login ({reason}). Plugback uses your rclone "
                "configuration as it is: fix the user name, password or token with 'rclone config' "
                "(or 'rclone config reconnect REMOTE:'), then try again.")


class UnknownRemote(StorageError):
    code = "unknown_remote"
    exit_code = EXIT_USAGE

    def default_message(self, remote="", config="", **_):
        where = f" ({config})" if config else ""
        return (f"There is no rclone remote called '{remote}' in your rclone configuration{where}. "
                "'rclone listremotes' lists them; 'rclone config' adds one. If it is in another "
                "configuration file, point RCLONE_CONFIG at it.")


class BadRemoteSpec(UsageError):
    code = "bad_remote_spec"

    def default_message(self, spec="", reason="", **_):
        return (f"'{spec}' is not a remote backup location: {reason}. Write it as "
                "rclone:REMOTE:PATH, e.g. rclone:mycloud:backups/laptop, with REMOTE from 'rclone listremotes'.")


class RcloneMissing(PlugbackError):
    code = "rclone_missing"

    def default_message(self, **_):
        return ("Backups to cloud and network locations need rclone, which was not found. Install it: "
                "on Debian or Ubuntu 'sudo apt install rclone'; on Windows and macOS the Plugback "
                "installer includes it, or get it from https://rclone.org/downloads/ and put it on the "
                "PATH. Then try again.")


class RcloneTooOld(PlugbackError):
    code = "rclone_too_old"

    def default_message(self, found="", needed="", **_):
        return (f"The installed rclone is version {found}, but Plugback needs {needed} or newer. Update "
                "rclone (your system's package manager, or https://rclone.org/downloads/), then try again.")


class RcloneFailed(StorageError):
    """rclone itself did not start or stopped answering (not the remote behind it)."""

    code = "rclone_failed"
    transient = True

    def default_message(self, reason="", **_):
        return (f"rclone stopped working ({reason}). Nothing already saved was damaged; try again. If it "
                "keeps happening, run 'rclone version' and check your rclone configuration.")


class BadBlobName(UnsafeSet):
    """A blob name that could leave the backend's root (``..``, an absolute path) or is not one
    of the names Plugback writes. Raised before anything is touched."""

    code = "bad_blob_name"

    def default_message(self, name="", **_):
        return (f"Plugback refused the storage name {name!r}: it could reach outside the backup set. "
                "Nothing was read or written. This is a bug or a tampered set; please report it.")
