"""Plugback core package."""
