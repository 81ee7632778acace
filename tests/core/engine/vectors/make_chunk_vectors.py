"""Regenerates chunks-v2.json, the known answers of format 2's chunking (docs/format.md, "Format 2").
Run only when the format version changes (the vectors pin the cutting of format 2; a change in
them is a bug, not an update).

    PYTHONPATH=. .venv/bin/python tests/core/engine/vectors/make_chunk_vectors.py
"""

import hashlib
import json
from pathlib import Path

from core.engine import chunks

HERE = Path(__file__).parent
SEED = b"plugback chunk vector"
SIZE = 5 * 1024 * 1024 + 12345


def vector_data(seed: bytes = SEED, size: int = SIZE) -> bytes:
    """SHA-256 in counter mode: block i is SHA-256(seed || i as 8 bytes big-endian), cut at ``size``."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


def main():
    data = vector_data()
    offset, cut = 0, []
    for c, piece in chunks.cut([data]):
        cut.append({"offset": offset, "size": len(piece), "sha256": c})
        offset += len(piece)
    cl = chunks.ChunkList(hashlib.sha256(data).hexdigest(), len(data),
                          tuple((c["sha256"], c["size"]) for c in cut), "Documents/big file.bin",
                          frozenset({cut[1]["sha256"]}))
    vectors = {
        "format": "plugback chunking test vectors, set format 2",
        "cdc": chunks.CDC,
        "data": {"generator": "SHA-256(seed || counter as 8 bytes big-endian), concatenated, cut to size",
                 "seed": SEED.decode(), "size": SIZE, "sha256": cl.sha256},
        "chunks": cut,
        "chunk_list": chunks.encode(cl).decode(),
    }
    (HERE / "chunks-v2.json").write_text(json.dumps(vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
