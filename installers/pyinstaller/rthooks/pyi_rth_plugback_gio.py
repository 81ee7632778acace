"""Use the bundle's GIO modules when it has them, else the system's (see ../rthooks.dat)."""
import os
import sys

if os.path.isdir(os.path.join(sys._MEIPASS, "gio_modules")):
    os.environ["GIO_MODULE_DIR"] = os.path.join(sys._MEIPASS, "gio_modules")
