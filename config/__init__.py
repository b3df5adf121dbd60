"""Typed settings of the daemon: one pydantic-settings object, built once at the edge and passed down."""

from config.settings import (
    AuthSettings,
    DatabaseSettings,
    LoggingSettings,
    ServerSettings,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = [
    "AuthSettings",
    "DatabaseSettings",
    "LoggingSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]
