"""Plugback ui package."""
