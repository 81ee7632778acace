"""The GUI-free agent: config, history, schedules, drives, jobs, runners, watcher, IPC.

The tray process (``tray/``) shows it; the CLI (``core/cli``) edits the same
config and talks to it over IPC. It imports the engine, never a GUI library.
"""
