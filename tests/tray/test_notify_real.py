"""The real freedesktop notifier, delivered to a real notification daemon (dunst) on a private D-Bus."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.env import subprocess_env

SCRIPT = """
import time
from core.platform.notify import LinuxNotifier
n = LinuxNotifier.available()
assert n is not None, "neither notify-send nor gdbus is installed"
n.notify("'Blue' is safe to unplug", "Everything is saved to the drive.", "safe_to_unplug")
time.sleep(2)   # the notifier sends from a thread
print("tool:", n.tool)
"""


def test_notification_reaches_the_desktop(xvfb_display):
    for tool in ("dbus-run-session", "dunst", "dunstctl"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (Debian: apt-get install dbus dunst)")
    # Shown notifications reach dunst's history once closed.
    shell = (f"dunst & D=$!; sleep 1; {sys.executable} -c \"$PB_SCRIPT\" && dunstctl close-all && sleep 0.5 "
             "&& dunstctl history; R=$?; kill $D; exit $R")
    proc = subprocess.run(["dbus-run-session", "--", "sh", "-c", shell], capture_output=True, text=True, timeout=60,
                          env=subprocess_env({"PB_SCRIPT": SCRIPT, "DISPLAY": xvfb_display.name}))
    assert proc.returncode == 0, proc.stderr
    tool_line, history = proc.stdout.split("\n", 1)
    summaries = [n["summary"]["data"] for group in json.loads(history)["data"] for n in group]
    assert summaries == ["'Blue' is safe to unplug"], (tool_line, summaries)
