"""The one owner of a process's background tasks: an aiojobs `Scheduler`, closed within a bound.

    jobs = open_jobs()                       held by the composition root (`Service.tasks`)
    await jobs.spawn(coro, name="...")       every loop that lives as long as the process
    await close_jobs(jobs)                   cancels them all, waits `close_timeout` at most

Nothing is swallowed: a task that ends with an error (while running, or on its way out when cancelled)
is logged when it ends, each part of an exception group with its own traceback, and a task still running
at the close deadline is named. Closing cancels at once rather than `wait_and_close(timeout)`: these
tasks are loops that never end by themselves, so waiting for them would only spend the timeout.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiojobs import Scheduler

from service.sync.loops import log_failure

log = logging.getLogger("service.tasks")

# Seconds the cancelled loops get to finish: a cancelled loop ends at its next await (milliseconds), and
# `run`'s shutdown budget (see commands/run.py) leaves about five seconds for the loops and the database.
CLOSE_TIMEOUT: Final = 3.0


def open_jobs(close_timeout: float = CLOSE_TIMEOUT) -> Scheduler:
    """A scheduler without a job limit whose failures and overrun closes are logged."""
    return Scheduler(close_timeout=close_timeout, limit=None, exception_handler=_log_job)


async def close_jobs(jobs: Scheduler) -> None:
    """Cancel every job and wait for them, `jobs.close_timeout` at most; name any still running then."""
    names = sorted(job.get_name() or "?" for job in jobs if not job.closed)
    if names:  # DEBUG: every shutdown does this; a command's last line must stay its own summary
        log.debug("stopping background tasks", extra={"event": "tasks.stopping", "tasks": names})
    await jobs.close()


def _log_job(jobs: Scheduler, context: dict[str, Any]) -> None:
    """The scheduler's exception handler: a job that failed, or one still running at the close deadline."""
    job = context.get("job")
    name = (job.get_name() if job is not None else None) or "?"
    exc = context.get("exception")
    if context.get("message") == "Job closing timed out":
        log.error(
            "background task did not stop within the close timeout after it was cancelled",
            extra={"event": "tasks.close_timeout", "task": name, "timeout": jobs.close_timeout},
        )
    elif isinstance(exc, BaseException):
        log_failure(log, "background task ended with an error", exc, {"event": "tasks.failed", "task": name})
    else:  # aiojobs has no other message today; say what it said rather than drop it
        log.error("background task trouble", extra={"event": "tasks.failed", "task": name})
