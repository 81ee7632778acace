"""The autouse isolation fixture really isolates: in-process, in subprocesses, and run_cli."""

import os
import subprocess
import sys
from pathlib import Path

import keyring

from tests.support import MemoryKeyring, run_cli


def test_state_and_xdg_folders_point_into_the_test_temp_folder(plugback_env):
    root = plugback_env.root
    for name in ("PLUGBACK_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                 "XDG_RUNTIME_DIR"):
        assert Path(os.environ[name]).is_relative_to(root), name
    assert os.environ["PLUGBACK_TESTONLY_WEAKEN_KDF"] == "1"
    assert not plugback_env.home.exists(), "PLUGBACK_HOME is left for the app to create"
    # Room for "<home>/<sub>/agent.sock" under the ~107-byte AF_UNIX limit.
    assert len(str(plugback_env.home)) < 70


def test_in_process_keyring_is_a_fresh_memory_backend():
    backend = keyring.get_keyring()
    assert isinstance(backend, MemoryKeyring)
    assert keyring.get_password("plugback", "job") is None
    keyring.set_password("plugback", "job", "correct horse")
    assert backend.passwords == {("plugback", "job"): "correct horse"}
    keyring.delete_password("plugback", "job")
    assert keyring.get_password("plugback", "job") is None


def test_subprocess_keyring_is_a_file_inside_the_temp_folder(plugback_env):
    code = ("import keyring; keyring.set_password('plugbacktest', 'job', 'p4ss'); "
            "print(type(keyring.get_keyring()).__name__, keyring.get_password('plugbacktest', 'job'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["PlaintextKeyring", "p4ss"]
    assert plugback_env.keyring_file.is_relative_to(plugback_env.root)
    assert "plugbacktest" in plugback_env.keyring_file.read_text()
    # ...and nothing of it reached the in-process keyring.
    assert keyring.get_password("plugbacktest", "job") is None


def test_run_cli_runs_the_venv_plugback_as_a_subprocess():
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("plugback ")


def test_run_cli_passes_the_isolated_env_and_extra_vars(plugback_env):
    assert run_cli("no-such-command").returncode == 2
    # A subprocess sees the same PLUGBACK_HOME (checked through python, which run_cli's env reaches too).
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.environ['PLUGBACK_HOME'])"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == str(plugback_env.home)
