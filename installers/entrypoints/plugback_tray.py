"""Frozen entry point of ``plugback-tray`` (pyinstaller.spec builds it): the launcher.

The frozen app is one executable for both processes, so this launcher (neither
``tray`` nor ``ui``, which never import each other) decides: with
``--settings`` it runs the settings window process (``ui.window.main``, the
``plugback-settings`` gui script of pyproject.toml), otherwise the agent
(``tray.__main__.main``, the ``plugback-tray`` gui script).
"""
import multiprocessing
import sys

if __name__ == "__main__":
    # A frozen app that (directly or through a library) starts a multiprocessing
    # child must call this first, or the child re-runs the whole agent.
    multiprocessing.freeze_support()
    if "--settings" in sys.argv[1:]:
        from ui.window import main as settings_main

        sys.exit(settings_main(sys.argv[1:]))   # it accepts and ignores --settings
    from tray.__main__ import main

    sys.exit(main())
