"""Regenerates stream-v1.json and stream-v2.json. Run only when a format version is added (the
vectors pin formats 1 and 2; a change in them for an existing version is a bug, not an update).

    .venv/bin/python tests/core/engine/vectors/make_vectors.py
"""

import hashlib
import io
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.engine import crypto

HERE = Path(__file__).parent
MASTER = bytes(range(32))
FILE_NONCE = bytes(range(0x40, 0x40 + 24))
PASSPHRASE = "correct horse battery staple"


def stream_case(label, plaintext, chunk_size, version=1):
    keys = crypto.SetKeys.from_master(MASTER, version)
    blob = crypto.encrypt_bytes(keys, plaintext, file_nonce=FILE_NONCE, chunk_size=chunk_size)
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=FILE_NONCE[:16],
                    info=crypto.INFO_FILE).derive(keys.content)
    case = {"label": label, "chunk_size": chunk_size, "file_nonce": FILE_NONCE.hex(),
            "file_key": file_key.hex(),
            "plaintext": plaintext.hex(), "ciphertext": blob.hex(),
            "sha256": hashlib.sha256(plaintext).hexdigest(),
            "object_name": keys.object_name(hashlib.sha256(plaintext).hexdigest())}
    if version >= 2:
        # The payload (what the chunks encrypt): the plaintext, or its zstd frame (coding 1).
        payload = crypto.DecryptingReader(io.BytesIO(blob), keys)._next_payload
        case["coding"] = blob[9]
        case["payload"] = b"".join(iter(payload, None)).hex()
    return case


def main():
    keys = crypto.SetKeys.from_master(MASTER)
    os.environ[crypto.WEAKEN_ENV] = "1"  # the vector's wrapped key uses n = 2**10
    _, enc = crypto.create_encryption(PASSPHRASE, master_key=MASTER, version=1)
    vectors = {
        "format": "plugback encryption test vectors, stream version 1",
        "master_key": MASTER.hex(),
        "content_key": keys.content.hex(),
        "naming_key": keys.naming.hex(),
        "key_check": keys.key_check,
        "recovery_key": crypto.recovery_key(keys),
        "passphrase": PASSPHRASE,
        "encryption": enc,
        "streams": [
            stream_case("empty", b"", 16),
            stream_case("three chunks of 16, last one short",
                        b"Plugback known-answer vector: 3 chunks.", 16),
            stream_case("exactly two chunks", bytes(range(32)), 16),
            stream_case("default chunk size, one short chunk", b"hello, plugback\n", crypto.CHUNK_SIZE),
        ],
    }
    (HERE / "stream-v1.json").write_text(json.dumps(vectors, indent=2) + "\n")
    _, enc2 = crypto.create_encryption(PASSPHRASE, master_key=MASTER, version=2)
    text = b"Plugback zstd vector: " + b"compress me, " * 8
    vectors2 = {
        "format": "plugback encryption test vectors, stream version 2 (format-2 sets: zstd)",
        "master_key": MASTER.hex(),
        "passphrase": PASSPHRASE,
        "encryption": enc2,
        "streams": [
            stream_case("empty: stored as is", b"", 16, 2),
            stream_case("does not compress: stored as is, 3 chunks", bytes(range(0, 240, 7)), 16, 2),
            stream_case("compresses: one zstd frame in chunks of 16", text, 16, 2),
            stream_case("compresses, default chunk size", text, crypto.CHUNK_SIZE, 2),
        ],
    }
    (HERE / "stream-v2.json").write_text(json.dumps(vectors2, indent=2) + "\n")


if __name__ == "__main__":
    main()
