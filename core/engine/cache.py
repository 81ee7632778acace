"""Where the engine keeps what it remembers between runs on this computer.

``BackupOptions.cache``: the record of the manifests this computer wrote and the local copy of
the newest (core/engine/trust.py, core/engine/local_copy.py), which let a later backup splice its
parent. Here, not in the agent, so ``plugback backup`` finds it without loading the agent's job
runner (its drive watcher, history database and platform modules: ~0.05 s of a no-change run).
"""

from __future__ import annotations

from pathlib import Path


def engine_cache(paths) -> Path:
    """The engine's folder under the data folder of ``paths`` (core.agent.config.Paths)."""
    return paths.data_dir / "cache"
