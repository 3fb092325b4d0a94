"""One module per `wiseflow-sync` command; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from service.adapters.store import Store
from service.errors import ConfigError
from service.settings import Settings, load_settings

N = TypeVar("N", int, float)
R = TypeVar("R")
P = TypeVar("P")
# EX_TEMPFAIL (sysexits.h): WISEflow asked to wait longer than the command may; try again later.
EXIT_PAUSED: Final = 75
# Set by the Dockerfile's runtime stage: this process runs from the production image.
IMAGE_VARIABLE: Final = "WISEFLOW_SYNC_IMAGE"
ALLOW_IN_IMAGE: Final = "--allow-in-image"


def add_allow_in_image(parser: Any) -> None:
    """The flag that lets a simulator-backed command run inside the production image all the same."""
    parser.add_argument(
        ALLOW_IN_IMAGE,
        action="store_true",
        help=f"run even in the production image (${IMAGE_VARIABLE}=1), e.g. for a smoke test",
    )


def refused_in_image(command: str, args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """True (after one line on stderr) when the simulator would start in the production image unasked.

    The simulator accepts its own well-known demo credentials and serves made-up data: started by mistake
    next to the service (same image, same Secret), it would answer anyone who reaches it.
    """
    if env.get(IMAGE_VARIABLE, "").strip() in ("", "0") or args.allow_in_image:
        return False
    print(
        f"wiseflow-sync {command}: error: refusing to start the simulator in the production image "
        f"({IMAGE_VARIABLE} is set); pass {ALLOW_IN_IMAGE} to run it anyway",
        file=sys.stderr,
    )
    return True


def existing_database(settings: Settings) -> str:
    """SYNC_DATABASE for a command that only reads it; `ConfigError` when there is no file (none is created)."""
    if not Path(settings.database).is_file():
        raise ConfigError("SYNC_DATABASE", "no database file there yet (has the service run?)")
    return settings.database


def with_store(env: Mapping[str, str], make: Callable[[Store], P], action: Callable[[P], Awaitable[R]]) -> R:
    """`action` on the repository `make` builds over the existing SYNC_DATABASE, then close it.

    For the commands that read or repair the database beside the service; a missing file is `ConfigError`
    and an unusable one `StoreError`, each the CLI's one line and exit 2.
    """
    database = existing_database(load_settings(env))

    async def run() -> R:
        store = await Store.open(database)
        try:
            return await action(make(store))
        finally:
            await store.close()

    return asyncio.run(run())


def iso(at: float) -> str:
    """Unix seconds as an ISO 8601 UTC time, to the second (the commands' one time format)."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")


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
