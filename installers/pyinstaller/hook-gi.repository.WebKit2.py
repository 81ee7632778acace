"""Collect the WebKit2 4.1 typelib (PyInstaller has no hook for it); used when GTK is bundled."""
from PyInstaller.utils.hooks.gi import GiModuleInfo

module_info = GiModuleInfo("WebKit2", "4.1")
if module_info.available:
    binaries, datas, hiddenimports = module_info.collect_typelib_data()
