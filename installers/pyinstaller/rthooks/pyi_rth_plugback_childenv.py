"""Give programs the frozen app starts the library path the user had (Linux).

PyInstaller's bootloader points LD_LIBRARY_PATH at the bundle's ``_internal``
folder and keeps the user's value in LD_LIBRARY_PATH_ORIG. The app itself no
longer needs it once running (the loader read it at start-up), but every child
inherits it: the file manager ``xdg-open`` starts, ``notify-send``,
``udisksctl``, WebKit's helper processes. A file manager with Python plugins
would then load the bundle's libpython instead of the system's. Restoring the
user's value here (as PyInstaller's documentation advises for spawning system
programs) fixes that for all of them; a frozen Plugback child (the settings
window) gets its own path from its own bootloader.
"""
import os
import sys

if sys.platform.startswith("linux") and getattr(sys, "frozen", False):
    _orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if _orig is not None:
        os.environ["LD_LIBRARY_PATH"] = _orig
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
