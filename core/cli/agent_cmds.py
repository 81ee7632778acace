"""Commands of the `plugback` CLI (placeholder until its owner fills it)."""


def register(subparsers) -> None:
    """Add this module's commands to the parser."""
