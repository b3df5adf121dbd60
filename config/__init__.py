"""Typed settings of the daemon: one pydantic-settings object, built once at the edge and passed down."""

from config.settings import (
    AudienceSettings,
    AuthSettings,
    DatabaseSettings,
    LoggingSettings,
    ServerSettings,
    Settings,
    SettingsError,
    TelephonySettings,
    load_settings,
)

__all__ = [
    "AudienceSettings",
    "AuthSettings",
    "DatabaseSettings",
    "LoggingSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "TelephonySettings",
    "load_settings",
]
