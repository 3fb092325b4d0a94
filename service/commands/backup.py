"""`wiseflow-sync backup PATH`: a consistent copy of SYNC_DATABASE, safe while `run` is writing.

Restore (docs/operations.md, "Backup and restore"): stop the service, put the copy in place of
SYNC_DATABASE (and remove any `-wal`/`-shm` files beside it), start the service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.adapters.store import StoreError
from service.adapters.store.backup import backup_database
from service.commands import existing_database
from service.settings import load_settings


def register(subparsers: Any) -> None:
    """Add the `backup` command."""
    p = subparsers.add_parser("backup", help="copy the database consistently while the service runs")
    p.add_argument("path", type=Path, help="the new file to write (never overwritten)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Back up SYNC_DATABASE to PATH; one line on success, one line and exit 1 on failure."""
    database = existing_database(load_settings(env))
    try:
        result = backup_database(database, args.path)
    except StoreError as exc:
        print(f"wiseflow-sync backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup written: {result.path} ({result.size} bytes, schema version {result.schema_version})")
    return 0
