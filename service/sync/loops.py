"""The service's background loops, each given the narrow parts it uses (started by the composition root).

poll_loop       sync runs every SYNC_POLL_INTERVAL (jittered), resumed after pauses (`sync_until_done`)
catchup_loop    blind-gap detection at startup, then every minute
every           a periodic action (the journal flush; while a pause is held, a look at the saved one)
guarded         runs a loop forever: a crash is logged (`core.failures`) and the loop restarted
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

from service.core import planner
from service.core.failures import Verdict, classify, describe, retry_after
from service.sync.catchup import CatchUp
from service.sync.until_done import Sleep, SyncRunner, sync_until_done

log = logging.getLogger("service.loops")

# After a failed run or a crashed loop, wait this long before trying again.
MIN_RETRY_DELAY: Final = 30.0


async def guarded(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a loop forever: a crash is logged and the loop restarted after a pause, never silently lost."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            context = {"event": "loop.crashed", "loop": name, "error": describe(exc)}
            if classify(exc) is Verdict.BLAME_ITEM:  # a bug: its traceback is what a reader needs
                log.exception("background loop crashed; restarting", extra=context)
            else:  # WISEflow or the database said wait: one line, and wait at least what was asked
                log.warning("background loop stopped; restarting", extra=context)
            await asyncio.sleep(max(MIN_RETRY_DELAY, retry_after(exc) or 0.0))
        else:
            return


async def poll_loop(
    runner: SyncRunner, blocked_for: Callable[[], float], interval: float, pause_sleep: Sleep = asyncio.sleep
) -> None:
    """Sync runs every `interval` (jittered); pauses WISEflow asks for are waited out within one interval.

    `blocked_for()` is how long the breaker stays open: while it is, the loop skips its runs (nothing
    could be sent, and one probe, this loop's next run or the inbox worker's, decides when WISEflow is back).
    Every wait for a pause is `pause_sleep`, which returns early when an operator clears the pause.
    """
    rng = random.Random()  # noqa: S311 - jitter, not cryptography
    while True:
        blocked = blocked_for()
        if blocked > 0:
            await pause_sleep(min(interval, blocked))
            continue
        result = await sync_until_done(runner.run, max_wait=interval, sleep=pause_sleep)
        if result.outcome == "paused":
            await pause_sleep(min(interval, result.pause))
            continue
        delay = planner.jittered(interval, 0.1, rng)
        if result.outcome == "failed":  # refused credentials, a malformed listing: an operator may fix it
            delay = min(interval, MIN_RETRY_DELAY)
        await asyncio.sleep(delay)


async def catchup_loop(catchup: CatchUp) -> None:
    """Detect a blind gap at startup, then keep checking."""
    await catchup.start()
    await catchup.run()


async def every(interval: float, *actions: Callable[[], Awaitable[object]]) -> None:
    """Run `actions` in turn every `interval` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        for action in actions:
            await action()
