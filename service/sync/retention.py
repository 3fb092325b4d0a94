"""The retention loop of `run`: prunes what is older than SYNC_RETAIN_DAYS, a small batch at a time.

It reaches the store as the other loops do, through the unit of work: `unit.retention`, whose rules of
what goes and what stays are in `service.adapters.store.retention`, one short transaction per table.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from service.adapters.store.retention import BATCH, Pruned
from service.adapters.store.unit import SqliteUnitOfWork
from service.core.clock import Clock

log = logging.getLogger(__name__)

DAY: Final = 86400.0
# Hourly: retention is measured in days, and a pass over an already pruned database costs four queries.
RETENTION_INTERVAL: Final = 3600.0
# The first pass waits for the startup work (the catch-up, the first sync run) to be done.
RETENTION_DELAY: Final = 600.0
# Between batches the writer is free for webhook commits: the pruning never holds it for long.
BATCH_PAUSE: Final = 0.05


async def prune_step(uow: SqliteUnitOfWork, cutoff: float, limit: int = BATCH) -> Pruned:
    """One batch of each table older than `cutoff` (unix seconds), each in its own short transaction."""
    async with uow.transaction() as unit:
        inbox = await unit.retention.prune_inbox(cutoff, limit)
    async with uow.transaction() as unit:
        outbox = await unit.retention.strip_outbox(cutoff, limit)
    async with uow.transaction() as unit:
        journal = await unit.retention.prune_journal(cutoff, limit)
    async with uow.transaction() as unit:
        runs = await unit.retention.prune_runs(cutoff, limit)
    return Pruned(inbox, outbox, journal, runs)


async def prune_all(
    uow: SqliteUnitOfWork, cutoff: float, *, limit: int = BATCH, pause: float = BATCH_PAUSE
) -> int:
    """Prune in batches until nothing older than `cutoff` is left; returns the rows touched."""
    total = 0
    while (pruned := await prune_step(uow, cutoff, limit)).total:
        total += pruned.total
        await asyncio.sleep(pause)
    return total


async def retention_loop(
    uow: SqliteUnitOfWork,
    retain_days: int,
    clock: Clock,
    *,
    delay: float = RETENTION_DELAY,
    interval: float = RETENTION_INTERVAL,
    limit: int = BATCH,
) -> None:
    """After `delay`, then every `interval` seconds, prune what is older than `retain_days`; 0 keeps all."""
    if retain_days <= 0:
        return
    await asyncio.sleep(delay)
    while True:
        touched = await prune_all(uow, clock.wall() - retain_days * DAY, limit=limit)
        if touched:
            log.info("retention pruned old rows", extra={"event": "retention.pruned", "rows": touched})
        await asyncio.sleep(interval)
