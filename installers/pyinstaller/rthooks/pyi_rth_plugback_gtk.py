"""Point GTK at the bundle only when the bundle carries GTK (see ../rthooks.dat).

With the system's GTK these variables would hide its input methods and themes.
"""
import os
import sys

if os.path.isfile(os.path.join(sys._MEIPASS, "gi_typelibs", "Gtk-3.0.typelib")):
    os.environ["GTK_DATA_PREFIX"] = sys._MEIPASS
    os.environ["GTK_EXE_PREFIX"] = sys._MEIPASS
    os.environ["GTK_PATH"] = sys._MEIPASS
    os.environ["PANGO_LIBDIR"] = sys._MEIPASS
    os.environ["PANGO_SYSCONFDIR"] = os.path.join(sys._MEIPASS, "etc")
