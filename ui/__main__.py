"""``python -m ui`` / ``plugback-settings``: the settings window process (see ``ui.window``)."""

import sys

from ui.window import main

if __name__ == "__main__":
    sys.exit(main())
