"""Mending damaged chunks of a format-2 set (core/engine/chunks.py), for core/engine/mend.py.

A damaged chunk is named by no manifest: the chunk lists that name it say which contents it is
a piece of, and so which files and snapshots are affected. It is repaired by cutting the file
on this computer again (the same FastCDC parameters give the same chunks while the content is
unchanged) and writing the chunk whose SHA-256 is its name, through ``tmp/``, then reading it
back. A damaged chunk list is repaired in mend.py: the whole content is copied in as a plain
object (which readers prefer), and the list is removed.
"""

from __future__ import annotations

from pathlib import Path

from core.engine import chunks
from core.engine.chunkstore import ChunkWriter
from core.engine.repo import BackupSet
from core.errors import PlugbackError


def owners(bset: BackupSet, names: set[str]) -> dict[str, str]:
    """For each chunk in ``names`` that a valid chunk list names: the content of one such list."""
    found: dict[str, str] = {}
    for name, path in bset.layout.iter_object_files():
        if not path.name.endswith(chunks.LIST_SUFFIX):
            continue
        try:
            cl = chunks.load(bset, name, path)
        except PlugbackError:
            continue   # a damaged list is reported on its own
        for c, _ in cl.chunks if cl else ():
            if c in names:
                found.setdefault(c, name)
    return found


def rewrite_chunk(bset: BackupSet, writer: ChunkWriter, chunk: str, source: str) -> str | None:
    """Write ``chunk`` again from the file ``source`` on this computer; None when it reads back right,
    else why not."""
    try:
        for c, data in chunks.cut(chunks.file_blocks([Path(source)], None)):
            if c == chunk:
                writer.write_chunk(bset.layout.object(c), data)
                bset.fs.flush_volume(bset.layout.root)
                return None if writer.reads_back(c) else "copied again from this computer, but it still reads back wrong"
    except FileNotFoundError:
        return "the file is no longer on this computer"
    except OSError as err:
        return f"the file on this computer cannot be read ({err.strerror or err})"
    except PlugbackError as err:
        return str(err)
    return "the file on this computer has changed since"
