"""Plugback core: the engine and everything the tray, the window and the CLI share."""

__version__ = "0.1.0"
