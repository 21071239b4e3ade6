"""Configuration: the TOML schema, loading, validation and the shipped example."""

from config.loader import (
    DEFAULT_CONFIG,
    ConfigError,
    is_host_name,
    load_settings,
    parse_host_port,
    redacted_url,
    sqlite_path,
)
from config.schema import Settings

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "Settings",
    "is_host_name",
    "load_settings",
    "parse_host_port",
    "redacted_url",
    "sqlite_path",
]
