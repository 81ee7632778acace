"""Which manifests this computer wrote: the proof a journal backup needs to splice a parent's lines.

A drive is untrusted: its manifests are checked entry by entry whenever they are
read. A journal backup (issue #12) would spend most of its time doing that for
the parent snapshot's records it only copies into the new manifest. It may skip
those checks when the parent's bytes are ones this computer wrote itself: this
record keeps, per backup set, the trailer SHA-256 (the hash of every line before
the trailer, ``docs/format.md``) of the manifests it committed. The reader
recomputes that hash over the bytes it actually read and trusts them only when
the two are equal (core/engine/splice.py); anything else (no record, another
hash, an unreadable record) takes the validating path, which is correct, only slower.

Only manifests this computer *wrote* are recorded, not ones it merely validated:
their lines are this version's writer's canonical bytes, so a spliced line is the
very line a re-encoded entry would be (an older writer's valid line may differ
byte for byte: a splice of it would still be correct, but not provably identical
to what a full scan writes).

The record lives on this computer (``BackupOptions.cache``: the CLI and the agent
give a folder under their data folder), never on the drive: one small JSON file
per set, ``<cache>/manifests/<set id>.json``, the newest :data:`KEEP` snapshots.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from core.engine.atomic import replace_file
from core.engine.local_copy import LocalRecord
from core.engine.manifest import is_hex64, is_snapshot_id
from core.engine.sums_base import SumsState

KEEP = 8                 # snapshots remembered per set: the parent is almost always the newest
MAX_RECORD = 16 << 20    # bytes; a few hundred, and the newest manifest's pieces (~100 bytes per 256 KB of text)


class TrustRecord:
    """The trailer hashes of the manifests this computer committed to one set (``folder`` None:
    nothing is remembered and nothing is trusted)."""

    def __init__(self, folder: Path | None, set_id: str):
        self.path: Path | None = None
        if folder is not None:
            try:
                name = str(uuid.UUID(set_id))   # (the drive's set id: a file name only once it parses)
            except ValueError:
                return
            self.path = Path(folder) / "manifests" / f"{name}.json"

    def _load(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read(MAX_RECORD))
        except (OSError, ValueError, RecursionError):
            return {}   # no record, or one this version cannot use: the validating path
        snaps = data.get("snapshots") if isinstance(data, dict) else None
        if not isinstance(snaps, dict):
            return {}
        return {sid: {k: v for k, v in hashes.items() if (k == "manifest" and is_hex64(v)) or k in ("sums", "local")}
                for sid, hashes in snaps.items() if is_snapshot_id(sid) and isinstance(hashes, dict)}

    def hash_of(self, snapshot_id: str) -> str | None:
        """The SHA-256 this computer wrote for ``snapshot_id``'s manifest (of its lines before the
        trailer), or None."""
        return self._load().get(snapshot_id, {}).get("manifest")

    def sums_of(self, snapshot_id: str) -> SumsState | None:
        """What this computer left in ``Latest.sha256`` with ``snapshot_id`` (core/engine/sums_base.py;
        kept for the newest snapshot recorded only), or None."""
        return SumsState.parse(self._load().get(snapshot_id, {}).get("sums"))

    def local_of(self, snapshot_id: str) -> LocalRecord | None:
        """What the record says of the local copy of ``snapshot_id``'s manifest (core/engine/local_copy.py;
        the newest snapshot's only), or None."""
        return LocalRecord.parse(self._load().get(snapshot_id, {}).get("local"))

    @property
    def local_path(self) -> Path | None:
        """Where the local copy of the newest recorded manifest is (``<set id>.gz``)."""
        return self.path.with_suffix(".gz") if self.path is not None else None

    def record(self, snapshot_id: str, manifest: str, sums: SumsState | None, local: LocalRecord | None = None
               ) -> None:
        """Remember a snapshot this computer just committed (a failure only costs the next run time)."""
        if self.path is None:
            return
        known = {sid: {"manifest": v["manifest"]} for sid, v in self._load().items() if "manifest" in v}
        known[snapshot_id] = {"manifest": manifest, **({"sums": sums.to_json()} if sums else {}),
                              **({"local": local.to_json()} if local else {})}
        keep = dict(sorted(known.items())[-KEEP:])
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            replace_file(self.path, json.dumps({"version": 1, "snapshots": keep}).encode(), mode=0o600,
                         durable=False)
        except OSError:
            pass
