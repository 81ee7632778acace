"""Plugback tray package."""
