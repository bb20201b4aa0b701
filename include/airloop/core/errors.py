"""Errors raised by airloop, each saying which file, field, row or column is at fault."""

from __future__ import annotations


class AirloopError(Exception):
    """Base class of airloop's errors."""


class ConfigError(AirloopError):
    """A settings file or model spec is missing or invalid."""


class SourceError(AirloopError):
    """A source partition cannot be read."""
