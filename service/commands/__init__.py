"""One module per `wiseflow-sync` command; each exposes `register(subparsers)`."""

from __future__ import annotations

from pathlib import Path

from service.errors import ConfigError
from service.settings import Settings


def existing_database(settings: Settings) -> str:
    """SYNC_DATABASE for a command that only reads it; `ConfigError` when there is no file (none is created)."""
    if not Path(settings.database).is_file():
        raise ConfigError("SYNC_DATABASE", "no database file there yet (has the service run?)")
    return settings.database
