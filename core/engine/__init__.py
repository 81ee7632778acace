"""The backup engine: the on-drive format, storage, backup, restore, verify, retention, crypto.

It imports nothing from the agent, the CLI, the platform layer or any GUI
(tests/test_dependencies.py), talks to nobody (progress and warnings leave
through callbacks) and reads time only through its clock.
"""
