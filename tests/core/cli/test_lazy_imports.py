"""Each ``plugback`` command loads only what it needs (issue #11: ~0.1-0.3 s of imports per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.cli import remote_cmds
from core.engine.storage import rclone

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import atexit, json, sys
from core.cli import main
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
main(sys.argv[1:])
"""
# What no command on a set in a folder needs: the storage package (http.client, ssl) is for remote sets.
REMOTE_ONLY = {"http.client", "ssl", "core.engine.storage", "core.engine.storage.rclone", "core.engine.remote"}


def loaded(*argv, home: Path) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLUGBACK_HOME": str(home)}
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], env=env, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.strip().splitlines()[-1]))


def test_the_remote_prefix_is_the_storage_packages():
    assert remote_cmds.REMOTE_PREFIX == rclone.PREFIX
    assert remote_cmds.is_remote(rclone.PREFIX + "r:path") and not remote_cmds.is_remote("/media/drive/set")


def test_commands_on_a_folder_set_load_only_their_own_engine(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    s, home = tmp_path / "set", tmp_path / "home"
    backup = loaded("backup", tmp_path / "src", "--to", s, home=home)
    assert "core.engine.backup" in backup and not backup & (REMOTE_ONLY | {"core.engine.restore"})
    # The agent's job runner (drive watcher, history database, platform modules) is not the CLI's.
    assert not backup & {"core.agent.jobs", "core.agent.drives", "core.agent.history", "pathspec"}   # (no --exclude)
    snapshots = loaded("snapshots", s, home=home)
    assert "core.engine.repo" in snapshots
    assert not snapshots & (REMOTE_ONLY | {"core.engine.backup", "core.engine.restore", "core.engine.verify",
                                          "core.agent.config_file", "core.agent.history", "pathspec"})
    restore = loaded("restore", s, tmp_path / "out", home=home)
    assert "core.engine.restore" in restore and not restore & (REMOTE_ONLY | {"core.engine.backup"})
    verify = loaded("verify", s, home=home)
    assert "core.engine.verify" in verify and not verify & (REMOTE_ONLY | {"core.engine.backup", "core.engine.restore"})
    assert (tmp_path / "out" / "src" / "a.txt").read_text() == "a"


def test_a_day_of_changes_loads_no_database_socket_subprocess_or_verify_engine(tmp_path):
    """Each is a few ms of a cold start that a day of changes' backup (~0.7 s) waited for."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    s, home = tmp_path / "set", tmp_path / "home"
    loaded("backup", tmp_path / "src", "--to", s, home=home)
    (tmp_path / "src" / "a.txt").write_text("changed")
    (tmp_path / "src" / "b.txt").write_text("new")
    day = loaded("backup", tmp_path / "src", "--to", s, home=home)
    assert "core.engine.backup" in day
    assert not day & {"sqlite3", "socket", "subprocess", "core.engine.verify"}


def test_a_bad_on_conflict_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core.cli", "restore", str(tmp_path / "s"), str(tmp_path / "t"),
                        "--on-conflict", "merge"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "invalid choice: 'merge' (choose from skip, overwrite, keep-both)" in r.stderr


def test_every_command_is_registered_by_the_module_the_dispatcher_imports_for_it():
    """``plugback CMD`` imports only COMMAND_MODULE[CMD]: every command in the whole parser must be
    there, each parsed by its own module's parser alone, and nothing else imported for it."""
    import argparse

    from core.cli import COMMAND_MODULE, build_parser

    def commands(parser) -> set[str]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(action.choices)

    assert commands(build_parser()) == set(COMMAND_MODULE)
    for command in COMMAND_MODULE:
        assert commands(build_parser(command)) >= {command}
    assert commands(build_parser("no-such-command")) == set(COMMAND_MODULE)   # its error lists them all
    loaded = subprocess.run([sys.executable, "-c", "import sys; from core.cli import build_parser; "
                             "build_parser('backup'); print(sorted(m for m in sys.modules if m.startswith('core.')))"],
                            capture_output=True, text=True, check=True).stdout
    assert "core.cli.backup_cmds" in loaded and "core.cli.agent_cmds" not in loaded and "core.agent.config" not in loaded
