"""Frozen entry point of ``plugback-tray`` (pyinstaller.spec builds it).

Same as the ``plugback-tray = tray.__main__:main`` gui script of pyproject.toml.
The settings window is this same executable started with ``--settings``.
"""
import multiprocessing
import sys

from tray.__main__ import main

if __name__ == "__main__":
    # A frozen app that (directly or through a library) starts a multiprocessing
    # child must call this first, or the child re-runs the whole agent.
    multiprocessing.freeze_support()
    sys.exit(main())
