"""Frozen entry point of the ``plugback`` command line (pyinstaller.spec builds it).

Same as the ``plugback = core.cli:main`` console script of pyproject.toml.
"""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
