"""The service's background loops, each given the narrow parts it uses (started by the composition root).

poll_loop       sync runs every SYNC_POLL_INTERVAL (jittered), resumed after pauses (`sync_until_done`)
catchup_loop    blind-gap detection at startup, then every minute
every           a periodic action (the journal flush; while a pause is held, a look at the saved one)
guarded         runs a loop forever: a crash is logged (`log_failure`) and the loop restarted
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
            if classify(exc) is Verdict.BLAME_ITEM:  # a bug (or a group of failures): the tracebacks matter
                message = "background loop crashed; restarting"
            else:  # WISEflow or the database said wait: one line, and wait at least what was asked
                message = "background loop stopped; restarting"
            log_failure(log, message, exc, {"event": "loop.crashed", "loop": name})
            await asyncio.sleep(max(MIN_RETRY_DELAY, retry_after(exc) or 0.0))
        else:
            return


def log_failure(logger: logging.Logger, message: str, exc: BaseException, context: dict[str, object]) -> None:
    """Log `exc` with its verdict (`core.failures.classify`); an exception group as one record per part.

    Each part of a group (a TaskGroup's "unhandled errors (4 sub-exceptions)") gets its own record with its
    own traceback, verdict and description. A lone exception that only says wait (STOP_AND_WAIT,
    RETRY_ITEM_LATER) is one WARNING line without a traceback: an expected state, not a bug.
    """
    parts = leaves(exc)
    # The group's own message is set by code (asyncio's "unhandled errors in a TaskGroup"), never by data.
    group = f"{type(exc).__name__}: {exc.message}" if isinstance(exc, BaseExceptionGroup) else None
    for number, part in enumerate(parts, 1):
        verdict = classify(part)
        fields = {**context, "error": describe(part), "verdict": verdict.value}
        if group is not None:
            fields |= {"group": group, "part": number, "parts": len(parts)}
        if verdict is Verdict.BLAME_ITEM:
            logger.error(message, exc_info=part, extra=fields)
        else:
            logger.warning(message, exc_info=part if group is not None else None, extra=fields)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, nested groups flattened, in order; `[exc]` when it is not a group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for part in exc.exceptions for leaf in leaves(part)]
    return [exc]


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
