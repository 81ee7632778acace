"""The checks every part of config.json goes through: a ConfigError that names the bad field."""

from __future__ import annotations

from core.errors import ConfigError


def _bad(field_name: str, reason: str) -> ConfigError:
    """A validation error; ``err.details['field']`` names the bad field."""
    return ConfigError(field=field_name, reason=reason, path="config.json")


def _check_type(value, types, field_name: str, what: str):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _bad(field_name, f"must be {what}, not {value!r}")
    if not isinstance(value, types):
        raise _bad(field_name, f"must be {what}" + ("" if value is None else f", not {value!r}"))
    return value


def _check_keys(data: dict, allowed: set, field_name: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _bad(f"{field_name}.{unknown[0]}" if field_name else unknown[0],
                   "is not a known setting (misspelt?)")
