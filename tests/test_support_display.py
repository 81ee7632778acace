"""Xvfb starts on a free display, X clients can use it, and screenshots land in test-artifacts/."""

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.gui


def test_xvfb_display_is_set_and_answers(xvfb_display):
    assert os.environ["DISPLAY"] == xvfb_display.name
    assert xvfb_display.process.poll() is None
    if shutil.which("xdpyinfo") is None:
        # xauth ships no client that queries a server; xset comes with x11-xserver-utils.
        proc = subprocess.run(["/usr/bin/import", "-window", "root", "-format", "%w %h", "info:"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["1280", "800"]


def test_screenshot_writes_a_png(screenshot):
    path = screenshot("empty-screen")
    assert path.parent.name == "test-artifacts"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
