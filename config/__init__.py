"""Settings schema and loading (`load_settings`), plus shipped defaults as data."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
