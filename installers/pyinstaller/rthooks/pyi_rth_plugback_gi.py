"""Use the bundle's GObject typelibs when it has them, else the system's (see ../rthooks.dat)."""
import os
import sys

if os.path.isdir(os.path.join(sys._MEIPASS, "gi_typelibs")):
    os.environ["GI_TYPELIB_PATH"] = os.path.join(sys._MEIPASS, "gi_typelibs")
