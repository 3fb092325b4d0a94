"""One module per `wiseflow-sync` command; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.errors import ConfigError
from service.settings import Settings

N = TypeVar("N", int, float)


def existing_database(settings: Settings) -> str:
    """SYNC_DATABASE for a command that only reads it; `ConfigError` when there is no file (none is created)."""
    if not Path(settings.database).is_file():
        raise ConfigError("SYNC_DATABASE", "no database file there yet (has the service run?)")
    return settings.database


def number_arg(
    kind: Callable[[str], N], what: str, low: float, high: float = math.inf, *, above: bool = False
) -> Callable[[str], N]:
    """An argparse `type=` for a finite number in [low, high] (or (low, high] with `above`): one-line errors."""

    def parse(raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {raw!r}") from None
        too_low = value <= low if above else value < low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"above {low:g}" if above else f"at least {low:g}"
            limit = "" if high == math.inf else f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"{what} {raw} must be {bound}{limit}")
        return value

    return parse
