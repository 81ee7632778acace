"""Fixtures for the window tests: a real agent process, the settings server, a Chromium page."""

from tests.ui.helpers import agent, open_page, settings  # noqa: F401 - fixtures, used by name
