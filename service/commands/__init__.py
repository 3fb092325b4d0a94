"""One module per `wiseflow-sync` command; each exposes `register(subparsers)`."""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from service.adapters.store import Store
from service.adapters.store.migrations import LATEST_VERSION
from service.errors import ConfigError, DatabaseBusy, StoreError
from service.settings import Settings, load_settings

N = TypeVar("N", int, float)
# SQLite's largest INTEGER: an id or sequence beyond it names no row (and cannot even be bound).
MAX_ROW_ID: Final = 2**63 - 1
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


def with_store(
    env: Mapping[str, str],
    make: Callable[[Store], P],
    action: Callable[[P], Awaitable[R]],
    *,
    read_only: bool = False,
) -> R:
    """`action` on the repository `make` builds over the existing SYNC_DATABASE, then close it.

    For the commands that read or repair the database beside the service; a missing file is `ConfigError`
    and an unusable one `StoreError`, each the CLI's one line and exit 2 (75 when another process keeps it
    locked). `read_only`: opened read-only and never migrated (see `opened`).
    """
    database = existing_database(load_settings(env))

    async def run() -> R:
        async with opened(database, read_only=read_only) as store:
            return await action(make(store))

    return asyncio.run(run())


@asynccontextmanager
async def opened(database: str, *, read_only: bool) -> AsyncIterator[Store]:
    """The store over `database`, closed after the block; SQLite's errors inside become `StoreError`.

    `read_only` opens it with `mode=ro` and never migrates: pointed at a backup, the command leaves the
    file's bytes as they were, and a schema older than this program is read as it is or refused in one
    line, never upgraded behind the operator's back.
    """
    store = await (Store.open_readonly(database) if read_only else Store.open(database))
    try:
        yield store
    except DatabaseBusy:
        raise
    except (sqlite3.Error, StoreError) as exc:  # the store raises StoreError from the driver's error
        if store.schema < LATEST_VERSION:
            raise StoreError(
                f"database {database} has schema version {store.schema}, older than this program's "
                f"({LATEST_VERSION}), and read-only commands never migrate: run a writing command (e.g. "
                f"`wiseflow-sync run`) on it first, or read it with the release that wrote it"
            ) from exc
        raise StoreError(f"database {database} cannot be used: {exc}") from exc
    finally:
        await store.close()


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
        # isfinite only for floats: a 400-digit int is simply too high (and float() of it would overflow).
        if (isinstance(value, float) and not math.isfinite(value)) or too_low or value > high:
            bound = f"above {low:g}" if above else f"at least {low:g}"
            # An int bound as written (2**63 - 1), a float one short (1e+06).
            limit = "" if high == math.inf else f" and at most {high if isinstance(high, int) else f'{high:g}'}"
            raise argparse.ArgumentTypeError(f"{what} {raw} must be {bound}{limit}")
        return value

    return parse
