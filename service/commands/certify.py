"""`wiseflow-sync certify [--format md|json]`: the certification review's answers, from config and figures."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from service.adapters.store import Store
from service.certify import Figures, answers, gather_figures, render_markdown
from service.settings import Settings, load_settings


def register(subparsers: Any) -> None:
    """Add the `certify` command."""
    p = subparsers.add_parser("certify", help="print the certification review's answers (config + figures)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the answers; figures are included when the database exists."""
    settings = load_settings(env)
    # Never create a database just to report that it is empty.
    figures = asyncio.run(_figures(settings)) if Path(settings.database).is_file() else None
    sections = answers(settings, figures)
    if args.format == "json":
        print(orjson.dumps({"sections": sections}, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_markdown(sections))
    return 0


async def _figures(settings: Settings) -> Figures:
    store = await Store.open(settings.database)
    try:
        return await gather_figures(store)
    finally:
        await store.close()
