"""Use the bundle's pixbuf loaders when it has them, else the system's (see ../rthooks.dat).

PyInstaller's own hook sets GDK_PIXBUF_MODULE_FILE even when the bundle has no
loaders, which leaves GTK unable to read a PNG; this one leaves the variable alone then.
"""
import atexit
import os
import sys
import tempfile

_cache = os.path.join(sys._MEIPASS, "lib", "gdk-pixbuf", "loaders.cache")
if os.path.isfile(_cache):
    # The cache names the loaders by a placeholder prefix; write a copy with the real one.
    with open(_cache, "rb") as _src:
        _contents = _src.read()
    _fd, _path = tempfile.mkstemp(prefix="plugback-pixbuf-")
    with os.fdopen(_fd, "wb") as _dst:
        _dst.write(_contents.replace(b"@executable_path/lib", os.path.join(sys._MEIPASS, "lib").encode()))
    atexit.register(os.unlink, _path)
    os.environ["GDK_PIXBUF_MODULE_FILE"] = _path
